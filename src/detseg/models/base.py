"""The model protocol shared by every detseg model.

``out = model(images, targets=None)`` with ``images: list[Tensor[3, H, W]]`` float in [0, 1] of any
sizes returns a :class:`~detseg.structures.ModelOutput` in both modes: losses whenever targets are
given, predictions in eval mode (or when ``with_predictions=True``). Unlike torchvision's detection
models the return type never depends on ``self.training``, so validation loss needs no code edit.

Each model records the zoo builder that made it and that builder's keyword arguments
(``builder_name``, ``builder_args``); checkpoints store them so ``detseg.load(path)`` rebuilds the
model from the checkpoint alone.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from detseg.structures import ModelOutput


_PER_INSTANCE = ("boxes", "labels", "scores", "masks", "keypoints")


class DetsegModel(nn.Module):
    """Base class: subclasses set ``task`` and implement ``forward``."""

    task: str = ""

    def __init__(self, classes: list[str] | tuple[str, ...]):
        super().__init__()
        self.classes = list(classes)
        self.builder_name: str = ""
        self.builder_args: dict[str, Any] = {}
        # Names from the training data (seg_classes, keypoint_names, flip_pairs); checkpoints keep it.
        self.dataset_info: dict[str, Any] = {}

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(  # pragma: no cover - abstract
        self,
        images: list[Tensor],
        targets: list[dict[str, Tensor]] | None = None,
        with_predictions: bool = False,
    ) -> ModelOutput:
        raise NotImplementedError

    @torch.no_grad()
    def predict(self, images, conf: float = 0.0):
        """Predict on images (tensors, PIL images, numpy arrays or paths) -> ``list[Results]``."""
        from detseg.results import Results, load_image

        was_training = self.training
        self.eval()
        if not isinstance(images, (list, tuple)):
            images = [images]
        tensors, names = [], []
        for i, im in enumerate(images):
            t, name = load_image(im)
            tensors.append(t.to(self.device))
            names.append(name or f"image{i}")
        out = self(tensors)
        self.train(was_training)
        results = []
        for t, p, name in zip(tensors, out.predictions or [], names):
            p = {k: (v.cpu() if isinstance(v, Tensor) else v) for k, v in p.items()}
            if conf > 0 and "scores" in p and "box" not in p and "sem_seg" not in p:
                keep = p["scores"] >= conf
                p = {k: (v[keep] if k in _PER_INSTANCE else v) for k, v in p.items()}
            results.append(Results(t.cpu(), p, self.task, self.classes, name=name))
        return results
