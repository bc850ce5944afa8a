"""One evaluator per task, all with the same small interface.

    from detseg.evaluation import build_evaluator
    ev = build_evaluator("detection", classes=["circle", "rectangle"])
    ev.reset(); ev.update(predictions, targets)   # per batch, detseg convention, any device
    metrics = ev.compute()                         # flat dict[str, float]
    print(ev.table())                              # per-class rows for the CLI

| task | evaluator | metric keys |
| --- | --- | --- |
| ``semantic`` | :class:`SemanticEvaluator` | ``mIoU``, ``pixel_acc``, ``mean_acc``, ``IoU/<class>`` |
| ``cls_loc`` | :class:`ClsLocEvaluator` | ``top1``, ``loc_acc``, ``mean_iou`` |
| ``pose`` | :class:`PoseEvaluator` | ``PCK@0.2``, ``PCK@0.2/<joint>``, ``kp_mAP`` (with boxes) |
| ``detection`` | :class:`CocoEvaluator` | 12 COCO box stats, ``AP50/<class>``, ``VOC_mAP50`` |
| ``instance`` | :class:`CocoEvaluator` | the above plus 12 ``mask_`` stats |
| ``keypoints`` | :class:`CocoEvaluator` | box stats, 10 ``kp_`` OKS stats, ``PCK@0.2`` |

Distributed runs: every evaluator has ``state()`` (picklable) and ``merge(states)``, so gathered
states can be evaluated in one process; detseg's own engine evaluates on rank 0 only.
"""

from __future__ import annotations

from typing import Any, Sequence

from detseg.evaluation.cls_loc import ClsLocEvaluator
from detseg.evaluation.coco import BOX_STATS, KP_STATS, MASK_STATS, CocoEvaluator
from detseg.evaluation.common import Evaluator
from detseg.evaluation.keypoints import PoseEvaluator
from detseg.evaluation.semantic import SemanticEvaluator

TASK_EVALUATORS = ("semantic", "cls_loc", "pose", "detection", "instance", "keypoints")


def build_evaluator(task: str, classes: Sequence[str], **kwargs: Any) -> Evaluator:
    """A fresh evaluator for ``task``.

    Args:
        task: one of ``semantic``, ``cls_loc``, ``pose``, ``detection``, ``instance``,
            ``keypoints``.
        classes: class names (``seg_classes`` for semantic, foreground ``classes`` otherwise).
        kwargs: evaluator options, e.g. ``keypoint_names``, ``sigmas``, ``pck_alpha`` (pose and
            keypoints), ``ignore_index`` (semantic), ``iou_threshold`` (cls_loc).
    """
    if task == "semantic":
        return SemanticEvaluator(classes, **kwargs)
    if task == "cls_loc":
        return ClsLocEvaluator(classes, **kwargs)
    if task == "pose":
        return PoseEvaluator(classes, **kwargs)
    if task in ("detection", "instance", "keypoints"):
        return CocoEvaluator(classes, task=task, **kwargs)
    raise ValueError(f"no evaluator for task {task!r}; known: {', '.join(TASK_EVALUATORS)}")


__all__ = [
    "BOX_STATS", "KP_STATS", "MASK_STATS", "ClsLocEvaluator", "CocoEvaluator", "Evaluator",
    "PoseEvaluator", "SemanticEvaluator", "TASK_EVALUATORS", "build_evaluator",
]
