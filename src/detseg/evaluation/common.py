"""Small helpers shared by the evaluators: tensors to numpy, box IoU, metric tables, the base class.

Boxes everywhere here are ``float64 [N, 4]`` xyxy in absolute pixels with x2/y2 exclusive (the
convention of :mod:`detseg.structures`), so a box's width is ``x2 - x1`` with no ``+1``.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np
import torch
from torch import Tensor

from detseg.tables import format_table


def to_numpy(x: Any, dtype: Any = None) -> np.ndarray:
    """A tensor (any device), array, list or scalar as a numpy array on the CPU."""
    if isinstance(x, Tensor):
        x = x.detach().cpu()
        if x.dtype == torch.bfloat16 or x.dtype == torch.float16:
            x = x.float()
        x = x.numpy()
    arr = np.asarray(x)
    return arr.astype(dtype, copy=False) if dtype is not None else arr


def boxes_of(d: dict[str, Any], key: str = "boxes") -> np.ndarray:
    """``d[key]`` as ``float64 [N, 4]`` (an absent key gives ``[0, 4]``)."""
    if key not in d or d[key] is None:
        return np.zeros((0, 4), dtype=np.float64)
    return to_numpy(d[key], np.float64).reshape(-1, 4)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU between ``a [N, 4]`` and ``b [M, 4]`` xyxy (exclusive) -> ``[N, M]``; empty boxes give 0."""
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def metrics_table(metrics: dict[str, float], keys: Sequence[str]) -> str:
    """The summary ``key  value`` lines for the metric keys that are present."""
    rows = [(k, float(metrics[k])) for k in keys if k in metrics]
    return format_table(("metric", "value"), rows)


class Evaluator:
    """The shape every detseg evaluator has.

    ``reset()``; ``update(predictions, targets)`` once per batch (cheap: copies what it needs to
    the CPU); ``compute() -> dict[str, float]`` with flat keys; ``table() -> str`` for the CLI.
    ``state()`` is a picklable snapshot of what ``update`` kept and ``merge(states)`` adds other
    processes' snapshots, so results gathered from several ranks (``all_gather_object``) can be
    evaluated in one place. detseg's engine itself evaluates on rank 0 only and never needs it.

    A subclass implements :meth:`_clear` and :meth:`_add_image` (one image's prediction and target)
    and inherits ``reset`` and ``update``, or overrides those two itself.
    """

    task: str = ""

    def __init__(self, classes: Sequence[str]):
        self.classes = list(classes)
        self._metrics: dict[str, float] = {}
        self.reset()

    def reset(self) -> None:
        """Forget every update."""
        self._metrics = {}
        self._clear()

    def update(self, predictions: list[dict[str, Any]], targets: list[dict[str, Any]]) -> None:
        """Add one batch: ``predictions[i]`` is the model's output for ``targets[i]``'s image."""
        self._check_lengths(predictions, targets)
        self._metrics = {}  # a table() after more updates must recompute
        for p, t in zip(predictions, targets):
            self._add_image(p, t)

    def _clear(self) -> None:  # pragma: no cover - abstract
        """Empty what :meth:`_add_image` fills."""
        raise NotImplementedError

    def _add_image(self, prediction: dict[str, Any], target: dict[str, Any]) -> None:
        """Keep what :meth:`compute` needs of one image (on the CPU)."""
        raise NotImplementedError  # pragma: no cover - abstract

    def compute(self) -> dict[str, float]:  # pragma: no cover - abstract
        raise NotImplementedError

    def state(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def merge(self, states: Iterable[Any]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def table(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def _check_lengths(self, predictions: list, targets: list) -> None:
        if len(predictions) != len(targets):
            raise ValueError(f"{type(self).__name__}.update: {len(predictions)} predictions for "
                             f"{len(targets)} targets; give one prediction dict per image")
