"""LSP-style joints arrays in any file they ship as: ``.mat``, ``.npy``, ``.json`` or ``.csv``.

The array holds 14 joints (the order of :data:`detseg.structures.LSP_KEYPOINTS`) with ``x, y`` and
a flag per joint, for N images, in one of three layouts told apart by its shape:

- ``(3, 14, N)``: the original LSP (Johnson & Everingham, BMVC 2010): the flag is an *occlusion*
  flag (0 = visible, 1 = occluded, every joint clicked) -> ``v = 2`` / ``v = 1``.
- ``(14, 3, N)``: LSPET (CVPR 2011): the flag is a *visibility* flag (1 = visible, 0 = invisible
  with a placeholder position) -> ``v = 2`` / ``v = 0``.
- ``(N, 14, 3)``: the row-per-image layout of converted copies (numpy, json, csv): a visibility
  flag as LSPET's; where a flag reaches 2 it is read as COCO's ``v`` (0 / 1 occluded / 2 visible).

``.mat``: the variable ``joints``, else the only variable of such a shape. ``.npy``: the array.
``.json``: the nested list, or an object with a ``joints`` list (and optionally ``images``, the
image file names in the same order). ``.csv``: one row per image, 42 numbers ``x1, y1, v1, ...,
x14, y14, v14`` (N, 14, 3), optionally after a first column of image file names and a header row.

Sniffing (:func:`find_joints`) only reads what it must: a ``.mat``'s variable list, a ``.npy``
header, a csv's first lines, and only parses a json whose first bytes look like an array.
"""

from __future__ import annotations

import csv
import json
import tokenize
from pathlib import Path

import numpy as np

from detseg.structures import LSP_KEYPOINTS

JOINT_SUFFIXES = (".mat", ".npy", ".json", ".csv")
K = len(LSP_KEYPOINTS)
MAX_SNIFF_BYTES = 64 * 2**20  # a larger json/csv is no joints file worth parsing to find out
SHAPES_HINT = "(3, 14, N) (LSP), (14, 3, N) (LSPET) or (N, 14, 3)"


def layout_of(shape: tuple[int, ...]) -> str | None:
    """``"lsp"``, ``"lspet"``, ``"rows"`` for the three joints layouts, else None."""
    if len(shape) == 2 and shape == (3, K):
        return "lsp"  # MATLAB drops a trailing singleton: one image
    if len(shape) == 2 and shape == (K, 3):
        return "lspet"
    if len(shape) != 3:
        return None
    if shape[:2] == (3, K):
        return "lsp"
    if shape[:2] == (K, 3):
        return "lspet"
    if shape[1:] == (K, 3):
        return "rows"
    return None


def to_keypoints(j: np.ndarray) -> tuple[np.ndarray, str]:
    """A joints array of a known layout -> ``(float32 [N, 14, 3] with v in {0, 1, 2}, layout)``."""
    j = np.asarray(j, dtype=np.float64)
    layout = layout_of(j.shape)
    if j.ndim == 2:
        j = j[..., None]
    if layout == "lsp":
        xy, occluded = j[:2].transpose(2, 1, 0), j[2].T  # [N, 14, 2], [N, 14]
        v = np.where(occluded > 0.5, 1.0, 2.0)
    elif layout == "lspet":
        xy, visible = j[:, :2].transpose(2, 0, 1), j[:, 2].T
        v = np.where(visible > 0.5, 2.0, 0.0)
    elif layout == "rows":
        xy, flag = j[..., :2], j[..., 2]
        v = np.clip(np.round(flag), 0, 2) if flag.max(initial=0) > 1.5 else np.where(flag > 0.5, 2.0, 0.0)
    else:
        raise ValueError(f"shape {j.shape}, expected {SHAPES_HINT}")
    return np.concatenate([xy, v[..., None]], axis=-1).astype(np.float32), layout


def load_joints(path: Path) -> tuple[np.ndarray, str, list[str] | None]:
    """A joints file -> ``(float32 [N, 14, 3], layout, image names or None)``.

    Raises ``ValueError`` naming the file (and the variable or field) when it holds no joints.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    names: list[str] | None = None
    try:
        if suffix == ".mat":
            array = _mat_joints(path)
        elif suffix == ".npy":
            array = np.load(path, allow_pickle=False)
        elif suffix == ".json":
            array, names = _json_joints(path)
        elif suffix == ".csv":
            array, names = _csv_joints(path)
        else:
            raise ValueError(f"not a joints file (expected {', '.join(JOINT_SUFFIXES)})")
        keypoints, layout = to_keypoints(array)
    except (OSError, ValueError, TypeError, NotImplementedError, json.JSONDecodeError, KeyError, IndexError,
            AttributeError, EOFError, SyntaxError, RecursionError, OverflowError, tokenize.TokenError) as e:
        # numpy's header parser and scipy's MAT reader raise all of these on a damaged file
        msg = str(e) if isinstance(e, (OSError, ValueError)) else f"cannot read ({type(e).__name__}: {e})"
        raise ValueError(msg if msg.startswith(str(path)) else f"{path}: joints: {msg}") from None
    if names is not None and len(names) != len(keypoints):
        raise ValueError(f"{path}: images: {len(names)} names for {len(keypoints)} joint sets")
    return keypoints, layout, names


# scipy's MAT reader "is not hardened for untrusted input" (its loadmat docstring since 1.17; a
# damaged file can crash the process: the readers' fuzzing found a byte-flipped joints.mat that
# segfaults scipy 1.17.1 in read_var_array, cf. scipy PR 25349). So it runs in a child process
# that hands back only plain numeric arrays (npz, no pickle); a crash there is a clear error here.
# On POSIX the child is a fork (milliseconds: scipy is already imported), elsewhere a new
# interpreter.
_MAT_CHILD = "import sys; from detseg.data.joints import _numeric_mat; _numeric_mat(*sys.argv[1:3])"


def _numeric_mat(src: str, dst: str) -> None:
    import scipy.io

    arrays = {}
    for k, v in scipy.io.loadmat(src).items():
        if not k.startswith("__") and np.asarray(v).dtype.kind in "biuf":
            arrays[k] = np.asarray(v)
    np.savez(dst, **arrays)


MAT_MEMORY = 2 << 30  # bytes a MAT child may allocate: a header may claim any size (a zlib bomb)


def _limit_memory(extra: int) -> None:
    """Cap this process's address space at its current size plus ``extra`` bytes, so an absurd
    allocation is a MemoryError here instead of the kernel's OOM killer taking another process."""
    import resource

    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[0])
    limit = pages * resource.getpagesize() + extra
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _forked(src: str, dst: str, timeout: float) -> tuple[int, str]:
    """``_numeric_mat`` in a forked child: ``(status, error text)``; status < 0 = killed by a signal."""
    import os
    import time

    import scipy.io  # noqa: F401 - imported before the fork, so the child starts warm

    err = dst + ".err"
    pid = os.fork()
    if pid == 0:  # the child: never returns into the caller's code
        code = 0
        try:
            _limit_memory(MAT_MEMORY)
            _numeric_mat(src, dst)
        except BaseException as e:  # noqa: BLE001 - reported to the parent as text
            with open(err, "w", encoding="utf-8") as f:
                f.write(f"{type(e).__name__}: {e}")
            code = 1
        os._exit(code)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            return 124, f"took over {timeout:.0f} s"
        time.sleep(0.002)
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status), ""
    text = Path(err).read_text(encoding="utf-8") if os.path.exists(err) else ""
    return os.WEXITSTATUS(status), text


def load_mat_arrays(path: Path, timeout: float = 60.0) -> dict[str, np.ndarray]:
    """The numeric variables of a MAT file, read by scipy in a child process (see above)."""
    import os
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "arrays.npz")
        if hasattr(os, "fork"):
            status, text = _forked(str(path), out, timeout)
        else:
            try:
                proc = subprocess.run([sys.executable, "-c", _MAT_CHILD, str(path), out],
                                      capture_output=True, text=True, timeout=timeout)
                status, text = proc.returncode, (proc.stderr.strip().splitlines() or [""])[-1]
            except subprocess.TimeoutExpired:
                status, text = 124, f"took over {timeout:.0f} s"
        if status < 0:
            raise ValueError(f"{path}: joints: the MAT reader crashed on this file (signal "
                             f"{-status}): a damaged or crafted .mat file")
        if status:
            raise ValueError(f"{path}: joints: cannot read the MAT file ({text[:200] or status})")
        with np.load(out, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}


def _mat_joints(path: Path) -> np.ndarray:
    mat = load_mat_arrays(path)
    if "joints" in mat:
        return np.asarray(mat["joints"])
    fitting = [k for k, v in mat.items() if not k.startswith("__") and layout_of(np.shape(v))]
    if len(fitting) == 1:
        return np.asarray(mat[fitting[0]])
    have = ", ".join(k for k in mat if not k.startswith("__"))
    raise ValueError(f"{path}: joints: no variable 'joints' (found: {have or 'nothing'})")


def _json_joints(path: Path) -> tuple[np.ndarray, list[str] | None]:
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    names = None
    if isinstance(data, dict):
        if "joints" not in data:
            raise ValueError(f"{path}: joints: no 'joints' key (keys: {', '.join(map(str, data))})")
        names = data.get("images")
        if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
            raise ValueError(f"{path}: images: expected a list of file names")
        data = data["joints"]
    return np.asarray(data, dtype=np.float64), names


def _csv_joints(path: Path) -> tuple[np.ndarray, list[str] | None]:
    rows = [r for r in csv.reader(path.read_text(encoding="utf-8-sig").splitlines()) if r]
    if rows and not _is_number(rows[0][-1]):
        rows = rows[1:]  # a header row
    named = bool(rows) and not _is_number(rows[0][0])
    names = [r[0].strip() for r in rows] if named else None
    values = [r[1:] if named else r for r in rows]
    bad = next((i for i, r in enumerate(values) if len(r) != 3 * K), None)
    if bad is not None:
        raise ValueError(f"{path}: row {bad + 1}: {len(values[bad])} values, expected {3 * K} "
                         f"(x, y, v for each of the {K} joints)")
    try:
        array = np.asarray(values, dtype=np.float64).reshape(-1, K, 3)
    except ValueError as e:
        raise ValueError(f"{path}: joints: {e}") from None
    return array, names


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def looks_like_joints(path: Path) -> bool:
    """Whether ``path`` holds a joints array, reading as little as possible."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".mat":  # in a child process, as loading (the header parser is scipy's too)
            return any(layout_of(np.shape(v)) for v in load_mat_arrays(path).values())
        if suffix == ".npy":
            return layout_of(np.load(path, mmap_mode="r", allow_pickle=False).shape) is not None
        if suffix not in (".json", ".csv") or path.stat().st_size > MAX_SNIFF_BYTES:
            return False
        with open(path, "rb") as f:
            head = f.read(4096).lstrip()
        if suffix == ".json":
            if not (head.startswith(b"[") or (head.startswith(b"{") and b'"joints"' in head)):
                return False  # e.g. a COCO json: never parsed here
        elif not any(c.isdigit() for c in head[:200].decode("utf-8", "replace")):
            return False
        load_joints(path)
        return True
    except Exception:  # noqa: BLE001 - sniffing: a file that cannot be read is no joints file here
        return False


def why_not_joints(path: Path) -> str | None:
    """Why a file named like a joints file (``.npy``/``.mat``/``.json``/``.csv``, not too big) holds
    no joints (its shape, say), for the error when no dataset is found; None when it does hold
    them or is no candidate."""
    try:
        if path.suffix.lower() not in JOINT_SUFFIXES or path.stat().st_size > MAX_SNIFF_BYTES:
            return None
        load_joints(path)
    except ValueError as e:
        return str(e)
    except OSError:
        return None
    return None


def find_joints(folder: Path) -> Path | None:
    """The joints file directly in ``folder`` (names with 'joint' first), else None."""
    try:
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in JOINT_SUFFIXES and p.is_file())
    except OSError:
        return None
    files.sort(key=lambda p: "joint" not in p.name.lower())
    return next((p for p in files if looks_like_joints(p)), None)
