"""The dataset base every reader and the shapes world build on.

A dataset is a ``torch.utils.data.Dataset`` of ``(image, target)`` pairs in the convention of
:mod:`detseg.structures`. It exposes ``classes``, ``seg_classes``, ``keypoint_names``,
``flip_pairs``, and ``problems`` (every :class:`~detseg.structures.Problem` found while reading).
Readers index their files once at construction (cheap: annotations, not pixels) and decode images
lazily in ``load(i)``; ``transforms`` (a callable on ``(image, target)``) is applied after loading.
"""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from detseg.structures import Problem

Transform = Callable[[Tensor, dict[str, Any]], tuple[Tensor, dict[str, Any]]]


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

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def load(self, index: int) -> tuple[Tensor, dict[str, Any]]:  # pragma: no cover - abstract
        """The untransformed ``(image, target)`` of sample ``index``."""
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Any]]:
        image, target = self.load(index)
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target

    # -- helpers for subclasses -------------------------------------------------------------
    def problem(self, file: str | Path, field: str, message: str) -> None:
        self.problems.append(Problem(str(file), field, message))

    def warn_problems(self) -> None:
        """One counted warning summarising the problems (the trainer calls this)."""
        if self.problems:
            counts = Counter(p.field for p in self.problems)
            summary = ", ".join(f"{n} x {f}" for f, n in counts.most_common())
            warnings.warn(
                f"{self.name}: {len(self.problems)} data problem(s) repaired or skipped ({summary}); "
                f"first: {self.problems[0]}. Run `detseg data check {self.root}` for all.",
                stacklevel=2,
            )

    def stats(self) -> dict[str, Any]:
        """Counts for ``detseg data check``: may be overridden with a cheaper version."""
        raise NotImplementedError


def read_image(path: str | Path) -> Tensor:
    """Read an image file as ``Tensor[3, H, W]`` float in [0, 1] (grayscale/RGBA -> RGB).

    Raises ``ValueError`` naming the file when it is missing or cannot be decoded.
    """
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            arr = np.asarray(im, dtype=np.uint8).copy()
    except FileNotFoundError:
        raise ValueError(f"{path}: image: file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"{path}: image: cannot decode ({e})") from None
    return torch.from_numpy(arr).permute(2, 0, 1).float().div_(255.0)


def image_size(path: str | Path) -> tuple[int, int]:
    """``(H, W)`` from the file header only (no decode). Raises ``ValueError`` like read_image."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            im.verify()
    except FileNotFoundError:
        raise ValueError(f"{path}: image: file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"{path}: image: cannot decode ({e})") from None
    return h, w


def collate(batch: list[tuple[Tensor, dict]]) -> tuple[list[Tensor], list[dict]]:
    """Batches stay lists: images of different sizes, targets of different lengths."""
    images, targets = zip(*batch) if batch else ((), ())
    return list(images), list(targets)
