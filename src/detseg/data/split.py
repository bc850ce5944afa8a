"""Splits: the dataset's own lists where it has them, else a stable hash split; the reader base.

A dataset's own split always wins (VOC ``ImageSets/Main/*.txt``, CamVid-style ``train/`` +
``val/`` folders, COCO ``instances_train*.json`` / ``instances_val*.json``, LSP's first/last
1000 images). Where the data has no split, or has ``train`` (or ``trainval``) but no ``val``,
validation is carved out by a hash of each sample's file name: a sample is in ``val`` when
``sha1(name)`` mapped to ``[0, 1)`` is below ``val_fraction``. The split therefore does not depend
on the listing order of the file system, on which other files exist, or on the training seed; a
non-zero ``seed`` salts the hash to draw a different (still deterministic) split.

Split names: ``train``, ``val``, ``test`` (only where the data has one) and ``all``, a list file
(``.txt``: one name per line; ``.csv``: names in the first column, a header row allowed) naming the
samples by image file name or stem -- e.g. the raccoon author's ``data/test_labels.csv`` --, or an
index range ``"A:B"``: samples ``A .. B-1`` of ``all`` in file order (the order the reader lists the data:
LSP/LSPET by image number, VOC by XML name, COCO by json order, folders by folder then name), e.g.
LSPET's ``"0:900"`` (im00001-im00900) and ``"900:1000"``. Positions count every sample found on
disk, before unusable ones are dropped (they are reported as problems), so a broken image never
shifts the other images between ranges. A range is resolved in :meth:`SplitReader.select`, the one
place every reader picks its keys. The shapes world has no ``all`` list (each split is its own seed
stream) and refuses ranges; its ``n``/``n_val`` options size the splits instead.
"""

from __future__ import annotations

import csv
import hashlib
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from detseg.data.base import DetsegDataset, Transform
from detseg.io import IMAGE_EXTS

SPLITS = ("train", "val", "test", "all")
# Names data sets use for the same split (folder names, list files).
SPLIT_ALIASES = {"training": "train", "valid": "val", "validation": "val", "testing": "test"}
RANGE_HINT = ("a split name (train, val, test, all), a list file (.txt or .csv of image names) or an "
              "index range START:STOP such as 0:900")
LIST_SUFFIXES = (".txt", ".csv")
# Suffixes dropped when matching list entries to samples ("raccoon-5.jpg" names sample "raccoon-5").
NAME_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".xml",
                 ".json", ".txt", ".mat"}


class SplitError(ValueError):
    """A split that is malformed, unknown, or out of range for the data."""


def split_range(split: str, field: str = "split") -> tuple[int, int] | None:
    """``(A, B)`` for an index-range split ``"A:B"``, None for a split name.

    Raises :class:`SplitError` (a ``ValueError``) naming ``field`` for anything else (``"0:"``,
    ``"9:3"``, ``"a:b"``, ``"trian"``), so a typo is caught before any file is read.
    """
    text = str(split).strip()
    if text in SPLITS or is_list_split(text):
        return None
    lo, sep, hi = text.partition(":")
    if not sep:
        raise SplitError(f"{field}: unknown split {split!r}; expected {RANGE_HINT}")
    try:
        a, b = int(lo), int(hi)
    except ValueError:
        raise SplitError(f"{field}: {split!r} is not an index range START:STOP of integers "
                         f"(expected {RANGE_HINT})") from None
    if not 0 <= a < b:
        raise SplitError(f"{field}: index range {split!r} needs 0 <= START < STOP")
    return a, b


def check_split(split: str, field: str = "split") -> str:
    """``split`` itself when it is a split name, an existing list file or a well-formed range;
    :class:`SplitError` (a ``ValueError``) naming ``field`` otherwise."""
    split_range(split, field)
    if is_list_split(split) and not Path(split).is_file():
        raise SplitError(f"{field}: split list file {split!r} does not exist")
    return split


def is_list_split(split: str) -> bool:
    """Whether ``split`` names a list file (``.txt`` / ``.csv``) rather than a split or a range."""
    return str(split).strip().lower().endswith(LIST_SUFFIXES)


def sample_name(text: str) -> str:
    """The name a list entry or a sample key is matched by: its base name, image suffix dropped."""
    name = text.strip().replace("\\", "/").rsplit("/", 1)[-1]
    stem, dot, suffix = name.rpartition(".")
    return stem if dot and f".{suffix.lower()}" in NAME_SUFFIXES else name


def read_split_list(path: str | Path) -> list[str]:
    """The entries of a split list: ``.txt`` the first token of each non-empty, non-``#`` line;
    ``.csv`` the first cell of each row (a header row is dropped by :func:`take_list`)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise SplitError(f"{path}: cannot read the split list: {e}") from None
    if path.suffix.lower() == ".csv":
        return [row[0].strip() for row in csv.reader(text.splitlines()) if row and row[0].strip()]
    return [line.split()[0] for line in text.splitlines() if line.strip() and not line.startswith("#")]


def take_list(keys: list[str], split: str, where: str = "data", field: str = "split") -> list[str]:
    """The keys (in ``keys``' order) the list file ``split`` names; :class:`SplitError` naming the
    file and the entries that match no sample (a first row matching nothing is a CSV header)."""
    entries = [sample_name(e) for e in read_split_list(split)]
    have = {sample_name(k) for k in keys}
    if entries and entries[0] not in have and Path(split).suffix.lower() == ".csv":
        entries = entries[1:]  # the header row ("filename,width,...")
    return take_names(keys, entries, split, where, field)


def take_names(keys: list[str], names: list[str], split: str = "list", where: str = "data",
               field: str = "split") -> list[str]:
    """The keys (in ``keys``' order) named by ``names`` (file names or stems, e.g. a dataset
    yaml's split list); :class:`SplitError` naming those that match no sample."""
    entries = [sample_name(e) for e in names]
    have = {sample_name(k) for k in keys}
    missing = [e for e in dict.fromkeys(entries) if e not in have]
    if missing:
        raise SplitError(f"{where}: {field} {split}: {len(missing)} listed name(s) match no sample of "
                         f"the data, e.g. {', '.join(missing[:5])}")
    if not entries:
        raise SplitError(f"{where}: {field} {split}: the list names no samples")
    wanted = set(entries)
    return [k for k in keys if sample_name(k) in wanted]


def take_range(keys: list[str], split: str, where: str = "data", field: str = "split") -> list[str]:
    """``keys[A:B]`` for the range ``split``; :class:`SplitError` when it runs past the end of ``keys``."""
    rng = split_range(split, field)
    assert rng is not None, split
    a, b = rng
    if b > len(keys):
        raise SplitError(f"{where}: {field} {split!r} is out of range: the data has {len(keys)} "
                         f"samples (positions 0..{len(keys) - 1}, ranges up to 0:{len(keys)})")
    return keys[a:b]


def hash_fraction(key: str, seed: int = 0) -> float:
    """A stable number in ``[0, 1)`` for ``key`` (same on every machine and Python version)."""
    text = key if seed == 0 else f"{seed}:{key}"
    digest = hashlib.sha1(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def hash_split(keys: list[str], val_fraction: float, seed: int = 0) -> tuple[list[str], list[str]]:
    """``(train, val)``: ``keys`` divided by :func:`hash_fraction`, order kept."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    val = [k for k in keys if hash_fraction(k, seed) < val_fraction]
    chosen = set(val)
    return [k for k in keys if k not in chosen], val


def resolve_splits(keys: list[str], own: dict[str, list[str]] | None, val_fraction: float,
                   seed: int = 0) -> tuple[dict[str, list[str]], str]:
    """Every split of the data as ``{name: keys}`` (``all`` included) and where the split came from.

    Args:
        keys: every sample found on disk, in a fixed order.
        own: the dataset's own split lists (``train``, ``val``, ``trainval``, ``test``); keys not
            on disk are ignored (readers report them).
        val_fraction: share of ``train`` (or of everything) hashed into ``val`` where the data has
            no ``val`` of its own.
    """
    present = set(keys)
    own = {SPLIT_ALIASES.get(k, k): [x for x in v if x in present] for k, v in (own or {}).items()}
    own = {k: v for k, v in own.items() if v}
    splits: dict[str, list[str]] = {"all": list(keys)}
    if "test" in own:
        splits["test"] = own["test"]
    if "train" in own and "val" in own:
        splits["train"], splits["val"] = own["train"], own["val"]
        source = "the dataset's own train/val lists"
    elif "val" in own:  # a val list alone: train is everything else
        held = set(own["val"]) | set(splits.get("test", []))
        splits["train"], splits["val"] = [k for k in keys if k not in held], own["val"]
        source = "the dataset's own val list, train = the rest"
    else:
        base = own.get("train") or own.get("trainval")
        if base is not None:
            source = f"the dataset's own {'train' if 'train' in own else 'trainval'} list, " \
                     f"val hashed out of it (val_fraction={val_fraction})"
        else:
            held = set(splits.get("test", []))
            base = [k for k in keys if k not in held]
            source = f"no split in the data: hashed by file name (val_fraction={val_fraction})"
        splits["train"], splits["val"] = hash_split(base, val_fraction, seed)
    return splits, source


class SplitReader(DetsegDataset):
    """Base of the file readers: one split of the samples, each named by its image file.

    Subclasses fill ``self.files`` (image paths of the chosen split, one per sample),
    ``self.sizes`` (``(H, W)`` per sample) and implement :meth:`annotation` and ``load``.
    ``split_keys`` holds every split's sample keys, so ``detseg data check`` can count them.
    """

    task: str = "detection"  # the native task of the data; readers override
    target_keys: tuple[str, ...] = ("boxes", "labels")

    def __init__(self, root: str | Path, split: str | list[str] = "train", val_fraction: float = 0.2,
                 seed: int = 0, transforms: Transform | None = None):
        super().__init__(transforms)
        # A dataset yaml may list a split's image names inline: the split is that list.
        self.names = [str(n) for n in split] if isinstance(split, (list, tuple)) else None
        if self.names is not None:
            split = "list"
        self.range = None if self.names is not None else split_range(split)  # (A, B) or None
        self.list_file = str(split) if self.names is None and is_list_split(split) else None
        self.root = str(root)
        self.name = Path(root).name if Path(root).is_dir() else Path(root).stem
        self.split = split
        self.val_fraction = val_fraction
        self.seed = seed
        self.files: list[str] = []
        self.keys: list[str] = []  # the split key of each usable sample (parallel to files)
        self.sizes: list[tuple[int, int]] = []
        self.split_keys: dict[str, list[str]] = {}
        self.split_source = ""
        self.headers_checked = True  # False where only the annotation's sizes were read

    @property
    def base_split(self) -> str:
        """The named split the reader must load: ``all`` for a range or a list, else ``split``."""
        return "all" if self.range is not None or self.list_file or self.names is not None else self.split

    def __len__(self) -> int:
        return len(self.files)

    def select(self, keys: list[str], own: dict[str, list[str]] | None = None) -> list[str]:
        """The keys of ``self.split`` (raises ``ValueError`` naming the splits the data has).

        An index range ``"A:B"`` takes ``keys[A:B]``: ``keys`` is ``all`` in the reader's order; a
        list file takes the keys it names.
        """
        self.split_keys, self.split_source = resolve_splits(keys, own, self.val_fraction, self.seed)
        if self.names is not None:
            return take_names(self.split_keys["all"], self.names, "list", self.root)
        if self.list_file:
            return take_list(self.split_keys["all"], self.list_file, self.root)
        if self.range is not None:
            return take_range(self.split_keys["all"], self.split, self.root)
        if self.split not in self.split_keys:
            have = ", ".join(s for s in SPLITS if s in self.split_keys)
            raise SplitError(f"{self.root}: no {self.split!r} split in this data (it has: {have})")
        return self.split_keys[self.split]

    def index_samples(self, keys: list[str], add: Callable[[str], None]) -> None:
        """Call ``add(key)`` for each key; ``add`` appends to ``files`` or records why not."""
        for key in keys:
            before = len(self.files)
            add(key)
            if len(self.files) > before:
                self.keys.append(key)

    def annotation(self, index: int) -> dict[str, Any]:
        """Sample ``index``'s annotation without pixels: numpy ``boxes`` [N, 4] xyxy, ``labels``
        [N] (and ``keypoints`` [N, K, 3] where present); used by ``check`` and ``cls_loc`` crops."""
        raise NotImplementedError

    def verify_images(self) -> None:
        """Open every image's header (readers that trusted annotation sizes do it on request)."""
        if self.headers_checked:
            return
        from detseg.data.base import image_size

        for i, path in enumerate(self.files):
            try:
                hw = image_size(path)
            except ValueError as e:
                self.problem(path, "image", header_error(e))
                continue
            if hw != tuple(self.sizes[i]):
                self.problem(path, "size", f"image is {hw[1]}x{hw[0]} but the annotation says "
                             f"{self.sizes[i][1]}x{self.sizes[i][0]}")
        self.headers_checked = True


def empty_boxes() -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((0, 4), np.float32), np.zeros((0,), np.int64)


# -- small file-system helpers shared by the readers -------------------------------------------


def subdirs(folder: Path) -> dict[str, Path]:
    """``{lower-case name: path}`` of the folders in ``folder``, sorted by name (no per-file stat:
    a sniffed folder may hold 100k images)."""
    try:
        with os.scandir(folder) as it:
            found = sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))
    except OSError:
        return {}
    return {name.lower(): folder / name for name in found}


def child(folder: Path, *names: str) -> Path | None:
    """The sub-folder of ``folder`` named like the first of ``names`` present (any case), else None."""
    for name in names:  # the exact spelling first: no listing needed
        if (folder / name).is_dir():
            return folder / name
    entries = subdirs(folder)
    return next((entries[n.lower()] for n in names if n.lower() in entries), None)


def list_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)


def is_file(path: Path) -> bool:
    """``path.is_file()``, False where the name itself is impossible (longer than the file system
    allows, a NUL byte): ``Path.is_file`` raises ``OSError``/``ValueError`` for those, and such
    names come from annotation files."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def find_image(folder: Path, stem: str) -> Path | None:
    """``folder/stem.<ext>`` for the first image extension that exists (any case)."""
    for ext in IMAGE_EXTS:
        for e in (ext, ext.upper()):
            p = folder / f"{stem}{e}"
            if is_file(p):
                return p
    return None


def header_error(e: ValueError) -> str:
    """The message of a ``read_image``/``image_size`` error without the repeated path."""
    return str(e).split(": image: ", 1)[-1]


def read_classes_file(root: Path) -> list[str] | None:
    """Class names from ``classes.txt`` / ``labels.txt`` (one per line) in ``root``, if present."""
    for name in ("classes.txt", "labels.txt", "class_names.txt"):
        p = root / name
        if p.is_file():
            names = [line.strip() for line in p.read_text(encoding="utf-8").splitlines()]
            return [n for n in names if n and not n.startswith("#")]
    return None
