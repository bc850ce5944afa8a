"""``samples.png``: predictions beside ground truth for a few validation images, titled.

The images are spread evenly over the whole validation split (CamVid's val is consecutive video,
so the first ``n`` frames would show one scene ``n`` times). Each pair of pictures is titled
``prediction  <score>`` / ``ground truth  <file name>``; the score is one number of *that image*,
cheap to compute and named in the title:

| task | score in the title |
| --- | --- |
| ``semantic`` | ``mIoU`` of the image (classes present in its truth or prediction) |
| ``detection``, ``instance``, ``keypoints`` | ``matched@0.5 k/n``: ground-truth boxes matched at IoU 0.5 by a drawn prediction of the same class (VOC matching), ``+m extra`` unmatched drawn predictions |
| ``pose`` | ``PCK@0.2`` of the person |
| ``cls_loc`` | ``IoU`` of the box with the truth and ``class right``/``class wrong`` |

Pictures come from :mod:`detseg.visualize` (``Task.draw``, ``draw_target``, ``make_grid``), which
keeps the class legend of semantic pictures.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

SCORE_THRESH = 0.3  # the same threshold draw_prediction draws with: the title counts what is drawn
MATCH_IOU = 0.5


def sample_indices(length: int, n: int) -> list[int]:
    """``min(n, length)`` distinct indices spread evenly over ``range(length)``, sorted; the first
    and the last index are included when ``n >= 2`` (``numpy.linspace`` rounded)."""
    n = min(n, length)
    if n <= 0:
        return []
    return sorted({int(i) for i in np.linspace(0, length - 1, n).round()})


def image_name(dataset: Any, index: int, target: dict[str, Any]) -> str:
    """The image's file name (``dataset.files[index]``'s basename), else ``id <image_id>``."""
    files = getattr(dataset, "files", None)
    if files is not None and 0 <= index < len(files):
        return Path(str(files[index])).name
    return f"id {target.get('image_id', index)}"


def image_score(task: str, prediction: dict[str, Any], target: dict[str, Any],
                classes: Sequence[str]) -> str:
    """One image's score as ``"<what> <value>"`` (see the module's table); ``<what> -`` when it is
    undefined for this image (e.g. a prediction without the needed field)."""
    what = {"semantic": "mIoU", "pose": "PCK@0.2", "cls_loc": "IoU"}.get(task, "matched@0.5")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if task == "semantic":
                return _semantic(prediction, target, classes)
            if task == "pose":
                return _pose(prediction, target)
            if task == "cls_loc":
                return _cls_loc(prediction, target, classes)
            if task in ("detection", "instance", "keypoints"):
                return _matched(prediction, target)
    except (ValueError, RuntimeError, ZeroDivisionError, KeyError, IndexError, TypeError):
        pass
    return f"{what} -"


def pair_titles(name: str, score: str) -> tuple[str, str]:
    """The titles of one pair: ``("prediction  <score>", "ground truth  <name>")``."""
    return f"prediction  {score}", f"ground truth  {_short(name)}"


def draw_samples(model, dataset, task, n: int = 8, cols: int = 4) -> np.ndarray:
    """Predictions beside ground truth for ``n`` images spread over ``dataset`` ->
    ``uint8 [H, W, 3]``; ``cols`` pairs per row, each pair titled by :func:`pair_titles`."""
    import torch

    from detseg.visualize import draw_target, make_grid

    picked = sample_indices(len(dataset), n)
    items = [dataset[i] for i in picked]
    for _, tgt in items:
        tgt.pop("problems", None)  # recorded on the dataset already
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = model([im.to(model.device) for im, _ in items])
    model.train(was_training)
    classes = model.classes
    panels, titles = [], []
    for i, (im, tgt), pred in zip(picked, items, out.predictions or []):
        pred = {k: (v.cpu() if hasattr(v, "cpu") else v) for k, v in pred.items()}
        panels.append(task.draw(im, pred, classes))
        panels.append(draw_target(im, tgt, task.name, classes))
        score = image_score(task.name, pred, tgt, classes)
        titles += pair_titles(image_name(dataset, i, tgt), score)
    # Pairs side by side: prediction | truth.
    rows = [panels[i: i + 2 * cols] for i in range(0, len(panels), 2 * cols)]
    row_titles = [titles[i: i + 2 * cols] for i in range(0, len(titles), 2 * cols)]
    return make_grid(rows, titles=row_titles)


# -- per-task scores --------------------------------------------------------------------------------
def _semantic(p: dict[str, Any], t: dict[str, Any], classes: Sequence[str]) -> str:
    from detseg.evaluation import SemanticEvaluator

    ev = SemanticEvaluator(classes)
    ev.update([p], [t])
    return f"mIoU {_fmt(ev.compute()['mIoU'])}"


def _pose(p: dict[str, Any], t: dict[str, Any]) -> str:
    from detseg.evaluation.common import boxes_of, to_numpy
    from detseg.evaluation.keypoints import pck_correct

    gt = to_numpy(t["keypoints"], np.float64)
    dt = to_numpy(p["keypoints"], np.float64)
    gt, dt = gt.reshape(-1, *gt.shape[-2:])[:1], dt.reshape(-1, *dt.shape[-2:])[:1]
    box = boxes_of(t)[:1]
    box = box if len(box) else np.full((1, 4), np.nan)  # no box: the tight box of the joints
    correct, counted = pck_correct(dt, gt, box, 0.2)
    return f"PCK@0.2 {_fmt(correct.sum() / counted.sum() if counted.sum() else math.nan)}"


def _cls_loc(p: dict[str, Any], t: dict[str, Any], classes: Sequence[str]) -> str:
    from detseg.evaluation import ClsLocEvaluator

    ev = ClsLocEvaluator(classes)
    ev.update([p], [t])
    if not ev.rows:  # no ground-truth object
        return "IoU -"
    _, right, _, iou = ev.rows[0]
    return f"IoU {_fmt(iou)}, class {'right' if right else 'wrong'}"


def _matched(p: dict[str, Any], t: dict[str, Any]) -> str:
    """VOC matching of the drawn predictions (score >= :data:`SCORE_THRESH`) with the truth."""
    from detseg.evaluation.common import boxes_of, to_numpy
    from detseg.evaluation.voc import match_detections

    gt_boxes = boxes_of(t)
    gt_labels = to_numpy(t.get("labels", np.ones(len(gt_boxes))), np.int64).reshape(-1)
    dt_boxes = boxes_of(p)
    dt_labels = to_numpy(p.get("labels", np.ones(len(dt_boxes))), np.int64).reshape(-1)
    dt_scores = (to_numpy(p["scores"], np.float64).reshape(-1) if p.get("scores") is not None
                 else np.ones(len(dt_boxes)))
    keep = dt_scores >= SCORE_THRESH
    dt_boxes, dt_labels, dt_scores = dt_boxes[keep], dt_labels[keep], dt_scores[keep]
    tp, _ = match_detections(np.zeros(len(gt_boxes), np.int64), gt_boxes, gt_labels,
                             np.zeros(len(gt_boxes), bool), np.zeros(len(dt_boxes), np.int64),
                             dt_boxes, dt_labels, dt_scores, MATCH_IOU)
    k = int(tp.sum())
    extra = len(dt_boxes) - k
    return f"matched@0.5 {k}/{len(gt_boxes)}" + (f" +{extra} extra" if extra else "")


def _fmt(v: Any) -> str:
    v = float(v)
    return f"{v:.3f}" if math.isfinite(v) else "-"


def _short(name: str, limit: int = 28) -> str:
    return name if len(name) <= limit else "..." + name[-(limit - 3):]
