"""Evaluation pass: one loop over a dataset gives the task's metrics and the validation losses.

Every detseg model returns losses whenever targets are given, also in eval mode, so the same
forward pass yields predictions for the evaluator and the validation loss.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader


def to_device(images: list[Tensor], targets: list[dict[str, Any]] | None, device: torch.device):
    images = [im.to(device, non_blocking=True) for im in images]
    if targets is not None:
        targets = [{k: (v.to(device) if isinstance(v, Tensor) else v) for k, v in t.items()}
                   for t in targets]
    return images, targets


@torch.no_grad()
def evaluate(model, dataset, task, batch: int = 8, device: torch.device | str | None = None,
             workers: int = 0, quiet: bool = False, desc: str = "eval",
             evaluator=None) -> tuple[dict[str, float], dict[str, float]]:
    """Run ``model`` over ``dataset``; return ``(metrics, mean losses)``.

    Args:
        model: a DetsegModel (not DDP-wrapped).
        dataset: yields ``(image, target)`` in the detseg convention (no augmentation).
        task: the :class:`~detseg.tasks.Task` of the model.
        evaluator: optional, to read per-class tables afterwards (``evaluator.table()``).
    """
    from tqdm import tqdm

    from detseg.data.base import collate, take_problems

    device = torch.device(device) if device is not None else model.device
    if evaluator is None:
        evaluator = build_task_evaluator(model, task)
    evaluator.reset()
    loader = DataLoader(dataset, batch_size=batch, shuffle=False, num_workers=workers,
                        collate_fn=collate)
    was_training = model.training
    model.eval()
    sums: dict[str, float] = {}
    n = 0
    for images, targets in tqdm(loader, desc=desc, leave=False, disable=quiet, dynamic_ncols=True,
                                mininterval=1.0):
        take_problems(targets, dataset)  # unreadable images skipped (in a worker, maybe)
        images_d, targets_d = to_device(images, targets, device)
        out = model(images_d, targets_d)
        preds = [{k: (v.cpu() if isinstance(v, Tensor) else v) for k, v in p.items()}
                 for p in out.predictions or []]
        evaluator.update(preds, targets)
        if out.losses:
            n += 1
            total = 0.0
            for k, v in out.losses.items():
                sums[k] = sums.get(k, 0.0) + float(v)
                total += float(v)
            sums["loss"] = sums.get("loss", 0.0) + total
    model.train(was_training)
    metrics = {k: float(v) for k, v in evaluator.compute().items()}
    losses = {k: v / max(n, 1) for k, v in sums.items()}
    return metrics, losses


def build_task_evaluator(model, task):
    """The task's evaluator for ``model``'s classes (and keypoint names from its training data)."""
    info = getattr(model, "dataset_info", None) or {}
    kwargs: dict[str, Any] = {}
    if task.name in ("pose", "keypoints") and info.get("keypoint_names"):
        kwargs["keypoint_names"] = info["keypoint_names"]
    return task.evaluator(model.classes, **kwargs)
