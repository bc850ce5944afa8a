"""Tasks tie the parts together: one small record per task, in one place.

The engine, the CLI, the demo and the report look the task up from ``model.task`` and never branch
on model names. A task says which target keys a dataset must provide, which evaluator measures it,
which metric picks ``best.pt``, and which flat metric keys it reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Task:
    name: str
    target_keys: tuple[str, ...]
    main_metric: str
    metric_keys: tuple[str, ...]
    description: str
    higher_is_better: bool = True

    def evaluator(self, classes: list[str], **kwargs: Any):
        """A fresh evaluator for this task (``update(preds, targets)`` then ``compute()``)."""
        from detseg.evaluation import build_evaluator

        return build_evaluator(self.name, classes, **kwargs)

    def draw(self, image, prediction: dict, classes: list[str], **kwargs: Any):
        """The prediction drawn on the image, as ``uint8 [H, W, 3]`` numpy array."""
        from detseg.visualize import draw_prediction

        return draw_prediction(image, prediction, self.name, classes, **kwargs)


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task("semantic", ("sem_seg",), "mIoU", ("mIoU", "pixel_acc"),
             "label every pixel with a class"),
        Task("cls_loc", ("boxes", "labels"), "loc_acc", ("top1", "loc_acc", "mean_iou"),
             "one object: its class and its box"),
        Task("pose", ("keypoints",), "PCK@0.2", ("PCK@0.2",),
             "one person: regress its joints"),
        Task("detection", ("boxes", "labels"), "mAP", ("mAP", "mAP50", "mAP75"),
             "every object: class, box and score"),
        Task("instance", ("boxes", "labels", "masks"), "mask_mAP", ("mAP", "mAP50", "mask_mAP"),
             "every object: class, box, score and mask"),
        Task("keypoints", ("boxes", "labels", "keypoints"), "kp_mAP", ("mAP", "kp_mAP"),
             "every person: box and keypoints"),
    )
}


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; known: {', '.join(TASKS)}") from None


Drawer = Callable[..., Any]
