"""What every semantic-segmentation model shares: pre/post-processing and the per-pixel loss.

A semantic model is a *network* — any ``nn.Module`` mapping a normalised, padded batch
``Tensor[B, 3, H, W]`` (H, W multiples of ``network.stride``) to class scores ``Tensor[B, C, h, w]``
(any ``h, w``: they are resized) — wrapped by :class:`SemanticModel`, which owns the rest:

- preprocessing (:func:`~detseg.models.transform.preprocess`: normalise, resize the longer side
  to ``img_size``, pad to the network's stride);
- the loss (:class:`SemanticLoss`): per-pixel cross-entropy against each image's
  **original-resolution** ``sem_seg`` (logits cropped to the image and bilinearly resized),
  averaged over the labelled pixels of the whole mini-batch (Long et al. 2015's "per-pixel
  multinomial logistic loss") or summed, ``IGNORE_INDEX`` excluded, optionally class-weighted —
  median-frequency balancing as SegNet used on CamVid (Eigen & Fergus 2015; Badrinarayanan et al.
  2017): ``w_c = median_freq / freq_c``;
- predictions at the original size: ``sem_seg`` (argmax), ``scores`` (0-dim: mean per-pixel max
  probability) and ``sem_seg_logits`` on request.

Each paper is then a builder that makes a network: the FCN encoder-decoder, FCN-8s, SegNet, ...
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detseg.models.base import DetsegModel
from detseg.models.transform import maps_to_original, preprocess
from detseg.structures import IGNORE_INDEX, ModelOutput


class SemanticLoss(nn.Module):
    """Cross-entropy over labelled pixels: ``mean`` over the batch's labelled pixels, or ``sum``.

    With ``class_weights`` and ``mean``, the sum is divided by the summed weights of the labelled
    pixels (``F.cross_entropy``'s weighted mean), so the loss scale does not depend on the weights.
    """

    def __init__(self, num_classes: int, reduction: str = "mean",
                 class_weights: Sequence[float] | None = None, who: str = "semantic"):
        super().__init__()
        if reduction not in ("mean", "sum"):
            raise ValueError(f"{who}: loss_reduction must be 'mean' or 'sum', got {reduction!r}")
        if class_weights is not None and len(class_weights) != num_classes:
            raise ValueError(f"{who}: class_weights has {len(class_weights)} values for "
                             f"{num_classes} classes")
        self.reduction = reduction
        self.num_classes = num_classes
        self.who = who
        weights = torch.as_tensor(class_weights, dtype=torch.float32) if class_weights else None
        self.register_buffer("weight", weights, persistent=False)

    def forward(self, logits: list[Tensor], targets: list[dict[str, Tensor]]) -> Tensor:
        if len(targets) != len(logits):
            raise ValueError(f"{self.who}: got {len(logits)} images but {len(targets)} targets")
        segs = [self._check(i, t, lg) for i, (lg, t) in enumerate(zip(logits, targets))]
        # One cross-entropy call when the sizes agree (the usual batch), else one per image.
        if len({tuple(s.shape) for s in segs}) == 1:
            pairs = [(torch.stack(logits), torch.stack(segs))]
        else:
            pairs = [(lg[None], s[None]) for lg, s in zip(logits, segs)]
        w = self.weight.to(logits[0].dtype) if self.weight is not None else None
        total = sum(F.cross_entropy(lg.float(), s, weight=w, ignore_index=IGNORE_INDEX,
                                    reduction="sum") for lg, s in pairs)
        if self.reduction == "sum":
            return total
        if w is None:
            count = sum((s != IGNORE_INDEX).sum() for s in segs)
        else:
            count = sum(w[s[s != IGNORE_INDEX]].sum() for s in segs)
        # A batch with no labelled pixel gives 0 (still attached to the graph), not NaN.
        return total / torch.as_tensor(count, dtype=total.dtype).clamp(min=1e-12 if w is not None else 1)

    def _check(self, i: int, target: dict[str, Tensor], logits: Tensor) -> Tensor:
        size = tuple(logits.shape[-2:])
        if "sem_seg" not in target:
            raise ValueError(f"{self.who}: targets[{i}]: no 'sem_seg' (semantic segmentation needs it)")
        seg = target["sem_seg"]
        if tuple(seg.shape) != size:
            raise ValueError(f"{self.who}: targets[{i}]['sem_seg']: shape {tuple(seg.shape)} differs "
                             f"from the image's {size}")
        seg = seg.to(device=logits.device, dtype=torch.int64)
        bad = (seg != IGNORE_INDEX) & ((seg < 0) | (seg >= self.num_classes))
        if bad.any():
            raise ValueError(f"{self.who}: targets[{i}]['sem_seg']: value {int(seg[bad][0])} is "
                             f"neither a class index 0..{self.num_classes - 1} nor {IGNORE_INDEX} (ignore)")
        return seg


class SemanticModel(DetsegModel):
    """A semantic-segmentation network with detseg's pre/post-processing and loss.

    Args:
        classes: ``sem_seg`` class names, 0-based (e.g. ``["background", "circle", ...]``).
        network: normalised batch ``[B, 3, H, W]`` -> logits ``[B, C, h, w]``; its ``stride``
            attribute (default 1) is the multiple the padded input must have.
        img_size: the longer image side the network sees (aspect kept).
        loss: the loss module (default: :class:`SemanticLoss` with ``mean``).
        return_logits: always add ``sem_seg_logits`` to predictions.
    """

    task = "semantic"

    def __init__(self, classes: list[str], network: nn.Module, img_size: int,
                 loss: SemanticLoss | None = None, return_logits: bool = False,
                 who: str = "semantic"):
        super().__init__(classes)
        self.network = network
        self.img_size = img_size
        self.criterion = loss if loss is not None else SemanticLoss(len(classes), who=who)
        self.return_logits = return_logits
        self.who = who

    @property
    def loss_reduction(self) -> str:
        return self.criterion.reduction

    def forward(self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None,
                with_predictions: bool = False, with_logits: bool = False) -> ModelOutput:
        """See :class:`~detseg.models.base.DetsegModel`; ``with_logits`` adds ``sem_seg_logits``."""
        batch = preprocess(images, self.img_size, keep_aspect=True,
                           stride=getattr(self.network, "stride", 1), who=self.who)
        logits = maps_to_original(self.network(batch.tensor), batch)
        out = ModelOutput()
        if targets is not None:
            out.losses = {"loss_sem_seg": self.criterion(logits, targets)}
        if with_predictions or not self.training:
            out.predictions = [self.postprocess(lg.detach().float(), with_logits or self.return_logits)
                               for lg in logits]
        return out

    def loss(self, logits: list[Tensor], targets: list[dict[str, Tensor]]) -> Tensor:
        """The loss of per-image logits ``list[Tensor[C, H_i, W_i]]`` at original sizes."""
        return self.criterion(logits, targets)

    @staticmethod
    def postprocess(logits: Tensor, with_logits: bool) -> dict[str, Tensor]:
        """``Tensor[C, H, W]`` logits -> ``sem_seg``, ``scores`` (and ``sem_seg_logits``)."""
        conf, sem_seg = logits.softmax(0).max(0)
        pred = {"sem_seg": sem_seg, "scores": conf.mean()}
        if with_logits:
            pred["sem_seg_logits"] = logits
        return pred


def class_frequencies(dataset, num_classes: int, max_images: int | None = None) -> Tensor:
    """SegNet's class frequency: ``freq_c`` = pixels of class c / pixels of the images containing c.

    Reads ``sem_seg`` of up to ``max_images`` samples (``dataset[i][1]``); ignore pixels excluded.
    """
    pixels = torch.zeros(num_classes, dtype=torch.float64)
    image_pixels = torch.zeros(num_classes, dtype=torch.float64)
    n = len(dataset) if max_images is None else min(len(dataset), max_images)
    for i in range(n):
        seg = dataset[i][1]["sem_seg"]
        seg = seg[seg != IGNORE_INDEX]
        counts = torch.bincount(seg.flatten(), minlength=num_classes)[:num_classes].double()
        pixels += counts
        image_pixels += (counts > 0).double() * seg.numel()
    return pixels / image_pixels.clamp(min=1)


def median_frequency_weights(frequencies: Tensor) -> list[float]:
    """``w_c = median(freq) / freq_c`` over the classes that occur (absent classes get 0)."""
    present = frequencies > 0
    if not present.any():
        raise ValueError("median-frequency weights: no labelled pixel of any class")
    median = frequencies[present].median()
    weights = torch.where(present, median / frequencies.clamp(min=1e-12), torch.zeros_like(frequencies))
    return [float(w) for w in weights]
