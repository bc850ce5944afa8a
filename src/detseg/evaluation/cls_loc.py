"""Classification + localization metrics (the ImageNet localization task, ILSVRC; lecture 11 part 2).

Per image, one predicted class and one box are scored against the target's objects:

- ``top1``: the predicted class is a label of the image (for one object: equals its label);
- ``loc_acc``: ILSVRC's localization accuracy with one guess -- the class is right AND the box has
  IoU >= 0.5 with a ground-truth box of that class;
- ``mean_iou``: the mean over images of the best IoU between the predicted box and any
  ground-truth box (whatever the class: it measures the box regressor alone).

The prediction gives ``class`` (int, 1-based) and ``box`` ``Tensor[4]`` xyxy, or ``labels`` /
``boxes`` whose first entry is used (highest score first when ``scores`` are given). A target
without objects is skipped (nothing to classify). Boxes are x2/y2 exclusive.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np

from detseg.evaluation.common import Evaluator, box_iou, boxes_of, to_numpy
from detseg.tables import format_table


class ClsLocEvaluator(Evaluator):
    """Task ``cls_loc``. ``classes`` are the foreground names (``labels`` index them 1-based)."""

    task = "cls_loc"

    def __init__(self, classes: Sequence[str], iou_threshold: float = 0.5):
        self.iou_threshold = iou_threshold
        super().__init__(classes)

    def _clear(self) -> None:
        # One row per image: (first ground-truth label, class right, localized, best IoU).
        self.rows: list[tuple[int, bool, bool, float]] = []

    def _add_image(self, p: dict[str, Any], t: dict[str, Any]) -> None:
        image_id = t.get("image_id", "?")
        gt_boxes = boxes_of(t)
        if len(gt_boxes) == 0:
            return
        if t.get("labels") is None:
            raise ValueError(f"target of image {image_id}: field 'labels' is missing")
        gt_labels = to_numpy(t["labels"], np.int64).reshape(-1)
        label, box = _guess(p, image_id)
        ious = box_iou(box[None], gt_boxes)[0]
        same = gt_labels == label
        self.rows.append((int(gt_labels[0]), bool(same.any()),
                          bool((ious[same] >= self.iou_threshold).any()), float(ious.max())))

    def state(self) -> list[tuple[int, bool, bool, float]]:
        return self.rows

    def merge(self, states: Iterable[list[tuple[int, bool, bool, float]]]) -> None:
        for s in states:
            self.rows.extend(s)

    def compute(self) -> dict[str, float]:
        if not self.rows:
            self._metrics = {"top1": 0.0, "loc_acc": 0.0, "mean_iou": 0.0}
            return dict(self._metrics)
        arr = np.asarray(self.rows, dtype=np.float64)
        self._metrics = {"top1": float(arr[:, 1].mean()), "loc_acc": float(arr[:, 2].mean()),
                         "mean_iou": float(arr[:, 3].mean())}
        return dict(self._metrics)

    def table(self) -> str:
        if not self._metrics:
            self.compute()
        arr = np.asarray(self.rows, dtype=np.float64).reshape(-1, 4)
        rows = []
        for label, name in enumerate(self.classes, 1):
            sel = arr[arr[:, 0] == label]
            n = len(sel)
            rows.append((name, n, *(float(sel[:, i].mean()) if n else float("nan") for i in (1, 2, 3))))
        rows.append(("all", len(arr), self._metrics["top1"], self._metrics["loc_acc"],
                     self._metrics["mean_iou"]))
        return format_table(("class", "images", "top1", "loc_acc", "mean_iou"), rows,
                            title="cls_loc: per ground-truth class")


def _guess(p: dict[str, Any], image_id: Any) -> tuple[int, np.ndarray]:
    """The prediction's ``(class, box [4])``."""
    if p.get("class") is not None and p.get("box") is not None:
        return int(to_numpy(p["class"]).reshape(-1)[0]), to_numpy(p["box"], np.float64).reshape(4)
    if p.get("labels") is not None and p.get("boxes") is not None:
        labels = to_numpy(p["labels"], np.int64).reshape(-1)
        boxes = boxes_of(p)
        if len(labels) and len(boxes):
            i = int(to_numpy(p["scores"]).argmax()) if p.get("scores") is not None else 0
            return int(labels[i]), boxes[i]
    raise ValueError(f"prediction of image {image_id}: needs fields 'class' and 'box' "
                     f"(or non-empty 'labels' and 'boxes')")
