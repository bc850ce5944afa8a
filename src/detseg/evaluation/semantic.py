"""Semantic segmentation metrics from a confusion matrix: mIoU, pixel accuracy, mean class accuracy.

The metrics of Long, Shelhamer & Darrell, "Fully Convolutional Networks for Semantic
Segmentation", CVPR 2015 (section 5): with ``n_ij`` the pixels of class i predicted as j and
``t_i = sum_j n_ij``, pixel accuracy is ``sum_i n_ii / sum_i t_i``, mean accuracy is
``mean_i n_ii / t_i`` and mean IU is ``mean_i n_ii / (t_i + sum_j n_ji - n_ii)``.

- Pixels labelled ``IGNORE_INDEX`` (255) in the target are not counted at all.
- A predicted value outside ``0..C-1`` on a labelled pixel counts as wrong (an extra "invalid"
  column of the matrix), never silently dropped.
- A class absent from both the ground truth and the predictions has no IoU: its ``IoU/<class>``
  is NaN and it is left out of ``mIoU``. Mean accuracy averages over classes present in the
  ground truth. With no labelled pixel at all every metric is NaN.

The whole state is the ``C x (C+1)`` matrix, built with one ``torch.bincount`` per image, so
``update`` is cheap and ``state()``/``merge`` just add matrices.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np
import torch
from torch import Tensor

from detseg.evaluation.common import Evaluator
from detseg.tables import format_table
from detseg.structures import IGNORE_INDEX


class SemanticEvaluator(Evaluator):
    """Task ``semantic``. ``classes`` are the segmentation class names (``sem_seg`` values, 0-based).

    Predictions carry ``sem_seg`` ``[H, W]`` int64 (or ``sem_seg_logits`` ``[C, H, W]``, argmaxed);
    targets carry ``sem_seg`` ``[H, W]`` with 255 = ignore.
    """

    task = "semantic"

    def __init__(self, classes: Sequence[str], ignore_index: int = IGNORE_INDEX):
        if not classes:
            raise ValueError("semantic evaluation needs the segmentation class names (got none)")
        self.ignore_index = ignore_index
        super().__init__(classes)

    def _clear(self) -> None:
        c = len(self.classes)
        # Row: ground-truth class; column: predicted class, column C = invalid prediction.
        self.confusion = torch.zeros((c, c + 1), dtype=torch.int64)

    def _add_image(self, p: dict[str, Any], t: dict[str, Any]) -> None:
        c = len(self.classes)
        image_id = t.get("image_id", "?")
        if t.get("sem_seg") is None:
            raise ValueError(f"target of image {image_id}: field 'sem_seg' is missing")
        gt = torch.as_tensor(t["sem_seg"]).cpu().long().reshape(t["sem_seg"].shape[-2:])
        pred = _predicted_map(p, image_id)
        if pred.shape != gt.shape:
            raise ValueError(f"prediction of image {image_id}: field 'sem_seg' has shape "
                             f"{tuple(pred.shape)}, target {tuple(gt.shape)}")
        keep = gt != self.ignore_index
        g, q = gt[keep], pred[keep]
        if (g < 0).any() or (g >= c).any():
            bad = g[(g < 0) | (g >= c)].unique()[:5].tolist()
            raise ValueError(f"target of image {image_id}: field 'sem_seg' holds {bad}, "
                             f"outside 0..{c - 1} and not the ignore value {self.ignore_index}")
        q = torch.where((q < 0) | (q >= c), torch.full_like(q, c), q)
        self.confusion += torch.bincount(g * (c + 1) + q, minlength=c * (c + 1)).reshape(c, c + 1)

    def state(self) -> Tensor:
        return self.confusion

    def merge(self, states: Iterable[Tensor]) -> None:
        for s in states:
            self.confusion += torch.as_tensor(s).cpu()

    def compute(self) -> dict[str, float]:
        cm = self.confusion.double().numpy()
        c = len(self.classes)
        tp = np.diag(cm[:, :c])
        gt_px = cm.sum(1)
        pred_px = cm[:, :c].sum(0)
        union = gt_px + pred_px - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = np.where(union > 0, tp / union, np.nan)
            acc = np.where(gt_px > 0, tp / gt_px, np.nan)
        total = gt_px.sum()
        metrics = {
            "mIoU": _nanmean(iou),
            "pixel_acc": float(tp.sum() / total) if total else float("nan"),
            "mean_acc": _nanmean(acc),
        }
        for name, v in zip(self.classes, iou.tolist()):
            metrics[f"IoU/{name}"] = float(v)
        self._acc = acc
        self._metrics = metrics
        return dict(metrics)

    def table(self) -> str:
        if not self._metrics:
            self.compute()
        cm = self.confusion.numpy()
        rows = [(name, int(cm[i].sum()), self._metrics[f"IoU/{name}"], float(self._acc[i]))
                for i, name in enumerate(self.classes)]
        rows.append(("mean", int(cm.sum()), self._metrics["mIoU"], self._metrics["mean_acc"]))
        return (format_table(("class", "pixels", "IoU", "acc"), rows,
                             title="semantic: per class (- = class absent)")
                + f"\n\npixel_acc {self._metrics['pixel_acc']:.4f}")


def _predicted_map(p: dict[str, Any], image_id: Any) -> Tensor:
    if p.get("sem_seg") is not None:
        pred = torch.as_tensor(p["sem_seg"]).cpu()
        return pred.reshape(pred.shape[-2:]).long()
    if p.get("sem_seg_logits") is not None:
        return torch.as_tensor(p["sem_seg_logits"]).cpu().argmax(0)
    raise ValueError(f"prediction of image {image_id}: field 'sem_seg' is missing")


def _nanmean(x: np.ndarray) -> float:
    x = x[~np.isnan(x)]
    return float(x.mean()) if len(x) else float("nan")
