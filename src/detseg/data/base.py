"""The dataset base every reader and the shapes world build on.

A dataset is a ``torch.utils.data.Dataset`` of ``(image, target)`` pairs in the convention of
:mod:`detseg.structures`. It exposes ``classes``, ``seg_classes``, ``keypoint_names``,
``flip_pairs``, and ``problems`` (every :class:`~detseg.structures.Problem` found while reading).
Readers index their files once at construction (cheap: annotations, not pixels) and decode images
lazily in ``load(i)``; ``transforms`` (a callable on ``(image, target)``) is applied after loading.

Images as they come: an image that fails to decode when a sample is loaded is skipped for the
next readable sample (a Problem names it, once), so one broken file never ends a run; a truncated
image's decodable part is read, with a Problem (``strict_images`` skips it instead). A reader's
``load`` may raise :class:`SampleSkipped` for a sample whose annotation cannot fit its pixels
(a COCO image of another size than its json says): skipped the same way.

Pixels as stored: every mode becomes 8-bit RGB (grayscale repeated, palette looked up, CMYK
converted, alpha dropped, 16-bit scaled by 1/257 — PIL alone would clip it to 255). EXIF
orientation is ignored, as by ``torchvision.io.decode_image`` by default and PIL without
``ImageOps.exif_transpose``: the annotation tools of VOC/COCO/labelImg give boxes in the stored
pixel grid, so boxes, masks and predictions stay in that grid. An image of more pixels than PIL's
decompression-bomb guard allows (``2 * PIL.Image.MAX_IMAGE_PIXELS``, about 179 MP) is refused
before decoding, a Problem like an undecodable one.
"""

from __future__ import annotations

import threading
import warnings
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image, ImageFile, UnidentifiedImageError
from torch import Tensor

from detseg.structures import Problem

Transform = Callable[[Tensor, dict[str, Any]], tuple[Tensor, dict[str, Any]]]


class SampleSkipped(ValueError):
    """Raised by a reader's ``load`` for a sample that cannot be served as annotated (the
    problem names the file and field); ``__getitem__`` skips it like an undecodable image."""

    def __init__(self, problem: Problem):
        super().__init__(str(problem))
        self.problem = problem


class DetsegDataset(torch.utils.data.Dataset):
    """Base class. Subclasses fill the attributes below and implement ``__len__`` and ``load``."""

    name: str = "dataset"

    def __init__(self, transforms: Transform | None = None):
        self.transforms = transforms
        self.classes: list[str] = []
        self.seg_classes: list[str] = []
        self.keypoint_names: list[str] = []
        self.flip_pairs: list[tuple[int, int]] = []
        self.problems: list[Problem] = []
        self.root: str = ""
        self.strict_images = False  # a truncated image is skipped, not read (data option strict_images)
        self._unreadable: set[int] = set()  # indices whose image failed to decode (skipped from then on)
        self._recorded: set[tuple[str, str]] = set()  # (file, field) of problems found while loading

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def load(self, index: int) -> tuple[Tensor, dict[str, Any]]:  # pragma: no cover - abstract
        """The untransformed ``(image, target)`` of sample ``index``."""
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Any]]:
        """Sample ``index``; an image that cannot be decoded is skipped for the next one in order.

        One broken file never ends a run: the failure is recorded as a Problem (once per file),
        the sample is replaced by the next readable index (deterministic, the same every epoch),
        and the returned target carries the new problems under ``"problems"`` so that a
        DataLoader worker's findings reach the main process (:func:`take_problems`). A truncated
        image whose decodable part is usable is read, with a Problem; with ``strict_images`` it
        is skipped like an undecodable one.
        """
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"{self.name}: index {index} out of range for {n} samples")
        index %= n
        found: list[Problem] = []
        for step in range(n):
            i = (index + step) % n
            if i in self._unreadable:
                continue
            _reading.strict, _reading.notes = self.strict_images, []
            try:
                image, target = self.load(i)
            except ValueError as e:
                problem = (e.problem if isinstance(e, SampleSkipped)
                           else _image_error(e, "skipped in training/evaluation"))
                if problem is None:
                    raise  # not an unreadable image: a bug or bad data that must not pass silently
                self._unreadable.add(i)
                found.append(problem)
                continue
            finally:
                notes, _reading.notes = _reading.notes or [], None
            found += [Problem(f, "image.truncated", m) for f, m in notes]
            if self.transforms is not None:
                image, target = self.transforms(image, target)
            new = [p for p in found if self._record(p) is not None]
            if new:
                target = {**target, "problems": new}
            return image, target
        raise ValueError(f"{self.name} ({self.root}): no sample can be read: every image failed to decode "
                         f"(first: {found[0] if found else 'none'})")

    def _record(self, problem: Problem) -> Problem | None:
        """Add ``problem`` unless this file already has one of its field; the new one or None."""
        key = (problem.file, problem.field)
        if key in self._recorded:
            return None
        self._recorded.add(key)
        self.problems.append(problem)
        return problem

    # -- helpers for subclasses -------------------------------------------------------------
    def problem(self, file: str | Path, field: str, message: str) -> None:
        self.problems.append(Problem(str(file), field, message))

    def warn_problems(self) -> None:
        """One counted warning summarising the problems (the trainer calls this)."""
        if self.problems:
            counts = Counter(p.field for p in self.problems)
            summary = ", ".join(f"{n} x {f}" for f, n in counts.most_common())
            skipped, truncated = skipped_images(self)
            named = "".join(f"; {what} {len(files)} image(s): {', '.join(Path(f).name for f in files[:5])}"
                            + (", ..." if len(files) > 5 else "")
                            for what, files in (("skipped", skipped), ("read truncated", truncated)) if files)
            warnings.warn(
                f"{self.name}: {len(self.problems)} data problem(s) repaired or skipped ({summary}){named}; "
                f"first: {self.problems[0]}. Run `detseg data check {self.root}` for all.",
                stacklevel=2,
            )

    def stats(self) -> dict[str, Any]:
        """Counts for ``detseg data check``: may be overridden with a cheaper version."""
        raise NotImplementedError


class _Reading(threading.local):
    """How :func:`read_image` treats a truncated file in this thread (set by ``__getitem__``)."""

    strict: bool = False
    notes: list[tuple[str, str]] | None = None  # (file, message) of images read truncated


_reading = _Reading()
_truncated_lock = threading.Lock()


def read_image(path: str | Path, strict: bool | None = None) -> Tensor:
    """Read an image file as ``Tensor[3, H, W]`` float in [0, 1] (grayscale/RGBA -> RGB).

    Raises ``ValueError`` naming the file when it is missing or cannot be decoded. A truncated
    file whose decodable part loads is returned (the missing rows as the decoder leaves them) and
    noted for the dataset reading it (else warned), unless ``strict`` (default: the dataset's
    ``strict_images``) makes it an error.
    """
    strict = _reading.strict if strict is None else strict
    try:
        arr = _decode(path)
    except FileNotFoundError:
        raise ValueError(f"{path}: image: file not found") from None
    except Image.DecompressionBombError as e:
        raise ValueError(f"{path}: image: {_too_many_pixels(e)}") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        if strict or "truncated" not in str(e):
            raise ValueError(f"{path}: image: {why_unreadable(path, e)}") from None
        try:
            arr = _decode(path, truncated=True)
        except (UnidentifiedImageError, OSError, SyntaxError) as e2:
            raise ValueError(f"{path}: image: {why_unreadable(path, e2)}") from None
        message = f"truncated ({e}): the decodable part was read"
        if _reading.notes is not None:
            _reading.notes.append((str(path), message))
        else:
            warnings.warn(f"{path}: image: {message}", stacklevel=2)
    return torch.from_numpy(arr).permute(2, 0, 1).float().div_(255.0)


def _decode(path: str | Path, truncated: bool = False) -> np.ndarray:
    """``uint8 [H, W, 3]``; ``truncated`` lets PIL stop at the end of a cut-off file (a global
    switch of PIL's, so it is set under a lock and only for this one file)."""
    if not truncated:
        with Image.open(path) as im:
            return to_rgb8(im)
    with _truncated_lock:
        ImageFile.LOAD_TRUNCATED_IMAGES = True
        try:
            with Image.open(path) as im:
                return to_rgb8(im)
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = False


SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")  # 16-bit grey PNG/TIFF ("I": as 16-bit)


def to_rgb8(im: Image.Image) -> np.ndarray:
    """An open image -> ``uint8 [H, W, 3]``. PIL's ``convert("RGB")`` clips 16-bit grey to 255
    (a 16-bit scan would turn white), so those modes are scaled to 8 bits first (v / 257, as PIL
    itself does for 16-bit RGB PNGs)."""
    if im.mode in SIXTEEN_BIT_MODES:
        grey = np.asarray(im).astype(np.float64)
        grey = np.clip(np.rint(grey / 257.0), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


def _too_many_pixels(e: Exception) -> str:
    return (f"cannot decode: too many pixels for PIL's decompression-bomb guard ({e}; the limit is "
            "2 x PIL.Image.MAX_IMAGE_PIXELS; raise it only for files you trust)")


def _image_error(e: ValueError, action: str) -> Problem | None:
    """:func:`read_image`'s ``"PATH: image: message"`` error -> a Problem; None for other errors."""
    file, sep, rest = str(e).partition(": image: ")
    return Problem(file, "image", f"{rest}: {action}") if sep else None


def take_problems(targets: list[dict[str, Any]], dataset: DetsegDataset | None = None) -> list[Problem]:
    """Pop the ``"problems"`` that ``__getitem__`` put in a batch's targets (found in a
    DataLoader worker, whose dataset copy the main process never sees) and record them in
    ``dataset`` (once per file and field); returns the popped ones."""
    found = [p for t in targets for p in t.pop("problems", ()) or ()]
    if dataset is not None:
        for p in found:
            dataset._record(p)
    return found


def skipped_images(dataset: DetsegDataset) -> tuple[list[str], list[str]]:
    """``(files skipped as unreadable, files read truncated)`` among ``dataset.problems``."""
    skipped = sorted({p.file for p in dataset.problems if p.field == "image"})
    truncated = sorted({p.file for p in dataset.problems if p.field == "image.truncated"})
    return skipped, truncated


def image_size(path: str | Path) -> tuple[int, int]:
    """``(H, W)`` from the file header only (no decode). Raises ``ValueError`` like read_image."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            im.verify()
    except FileNotFoundError:
        raise ValueError(f"{path}: image: file not found") from None
    except Image.DecompressionBombError as e:
        raise ValueError(f"{path}: image: {_too_many_pixels(e)}") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"{path}: image: {why_unreadable(path, e)}") from None
    return h, w


def why_unreadable(path: str | Path, e: Exception) -> str:
    """What is wrong with an image file PIL failed on: empty, not an image, truncated, corrupt."""
    try:
        size = Path(path).stat().st_size
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        size, head = -1, b""
    if size == 0:
        return "cannot decode: empty file (0 bytes)"
    if isinstance(e, UnidentifiedImageError):
        kind = "text" if head and all(32 <= c < 127 or c in b"\t\r\n" for c in head) else "data"
        return f"cannot decode: not an image ({kind} of no known image format, starts {head[:12]!r})"
    if "truncated" in str(e).lower():
        return f"cannot decode: truncated ({e})"
    return f"cannot decode: corrupt ({e})"


def collate(batch: list[tuple[Tensor, dict]]) -> tuple[list[Tensor], list[dict]]:
    """Batches stay lists: images of different sizes, targets of different lengths."""
    images, targets = zip(*batch) if batch else ((), ())
    return list(images), list(targets)
