"""Files in and out: atomic writes, safe output names, and the image (and video) files an input
list names.

Every file detseg writes goes to a temporary name first, then is renamed: a run killed at any
moment leaves either the old file or the new one, never half of one. Output names derived from
outside input (file names, a client's upload, a checkpoint) go through :func:`safe_output_name`,
so they cannot leave the output folder.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")


def expand_inputs(inputs: list[str], exts: tuple[str, ...] = IMAGE_EXTS) -> list[Path]:
    """Files, folders (searched recursively for ``exts``) and glob patterns -> a list of paths.

    A pattern (``photos/*.jpg``, ``data/**/*.png``; quoted on the shell so that detseg expands it)
    keeps the matching files with one of ``exts`` and searches the matching folders. A file named
    explicitly is kept whatever its extension. Duplicates are dropped, the first occurrence kept.
    A path that does not exist, or a pattern that matches nothing, is a ``FileNotFoundError``
    naming it; no file at all, a ``ValueError``.
    """
    files: list[Path] = []

    def folder(d: Path) -> list[Path]:
        return sorted(f for f in d.rglob("*") if f.is_file() and f.suffix.lower() in exts)

    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files += folder(p)
        elif p.is_file():
            files.append(p)
        elif any(c in item for c in "*?["):  # a pattern the shell did not expand
            matches = [Path(m) for m in sorted(glob.glob(item, recursive=True))]
            if not matches:
                raise FileNotFoundError(f"{item}: input: no file or folder matches this pattern")
            for m in matches:
                files += folder(m) if m.is_dir() else ([m] if m.suffix.lower() in exts else [])
        else:
            raise FileNotFoundError(f"{p}: input: no such file or folder")
    if not files:
        raise ValueError(f"no images found in {' '.join(inputs)}")
    return list(dict.fromkeys(files))


def safe_output_name(out_dir: str | Path, name: str) -> Path:
    """``out_dir / name`` for a file name that came from outside (an input file, a client, a
    checkpoint), kept inside ``out_dir``.

    Only the last component of ``name`` is used (``/`` and ``\\`` both separate), so
    ``../../etc/x.png``, ``/etc/x.png`` and ``..\\x.png`` all become ``out_dir/x.png``. A symlink
    of that name in ``out_dir`` pointing elsewhere is refused, so no writer is led out through it.

    Raises:
        ValueError: naming ``name``, when nothing usable is left (empty, ``.``, ``..``), it holds
            a NUL or another control character, or the path would resolve outside ``out_dir``.
    """
    base = str(name).replace("\\", "/").rsplit("/", 1)[-1].strip()
    if any(ord(c) < 32 or ord(c) == 127 for c in str(name)):
        raise ValueError(f"{name!r}: output name: holds a control character")
    if base in ("", ".", ".."):
        raise ValueError(f"{name!r}: output name: no file name left once folders are dropped")
    root = Path(out_dir)
    path = root / base
    # The joined path must resolve to a direct child of out_dir (catches a planted symlink).
    if path.resolve(strict=False).parent != root.resolve(strict=False):
        raise ValueError(f"{name!r}: output name: would leave the output folder {root}")
    return path


@contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    ``suffix`` ends the temporary name (a writer that picks its container by the extension, like
    ``cv2.VideoWriter``, needs e.g. ``.tmp.mp4``). The file gets the mode a plain ``open`` would
    give it (``0o666`` less the umask), not ``mkstemp``'s private ``0o600``: run folders are
    shared with teammates, web servers and containers running as another user.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _umask() -> int:
    global _UMASK
    if _UMASK is None:  # read once (the only portable read sets it): not racing other threads later
        _UMASK = os.umask(0o022)
        os.umask(_UMASK)
    return _UMASK


_UMASK: int | None = None


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def json_safe(obj: Any) -> Any:
    """Non-finite floats (NaN: e.g. the IoU of a class seen nowhere) become ``null``: strict JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def dumps(obj: Any, indent: int | None = None) -> str:
    return json.dumps(json_safe(obj), indent=indent, default=_json_default, allow_nan=False)


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, dumps(obj, indent=2) + "\n")


def write_csv(path: str | Path, rows: list[dict[str, Any]]) -> None:
    """Rows as CSV with a header (the union of their keys, in first-seen order), atomically.

    A key a row lacks, ``None`` and non-finite floats are empty cells (what spreadsheets read as
    missing).
    """
    keys = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, restval="", lineterminator="\n")
    w.writeheader()
    w.writerows({k: ("" if v is None or (isinstance(v, float) and not math.isfinite(v)) else v)
                 for k, v in r.items()} for r in rows)
    write_text(path, buf.getvalue())


def save_png(path: str | Path, array) -> None:
    """Save a ``uint8 [H, W, 3]`` (or ``[H, W]``) numpy array as PNG, atomically."""
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


def save_figure(path: str | Path, fig) -> None:
    """Save a matplotlib figure as PNG, atomically."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")


def _json_default(o: Any) -> Any:
    try:
        import numpy as np
        import torch

        if isinstance(o, torch.Tensor):
            return o.tolist()
        if isinstance(o, (np.generic,)):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
