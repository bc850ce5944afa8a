"""Classification + localization: one object per image, its class and its box.

Implements CS231n 2017 lecture 11's "Classification + Localization": a CNN whose features feed two
heads — class scores and 4 box numbers — trained with the multi-task loss
``L = CE(class) + lambda * regression(box)``, with the regression loss selectable among L2, L1
and smooth L1 (Girshick, "Fast R-CNN", ICCV 2015, https://arxiv.org/abs/1504.08083, eq. 3). The
"treat localization as regression" design follows OverFeat (Sermanet et al., ICLR 2014,
https://arxiv.org/abs/1312.6229).

Conventions:

- ``classes`` are the foreground names; labels are 1-based (``classes[label - 1]``); the class head
  has ``len(classes)`` outputs (no background: every image holds one object).
- The image is resized to a fixed ``img_size`` square (aspect not kept). The box head predicts
  ``(cx, cy, w, h)`` through a sigmoid, normalised to the image; normalised coordinates are the
  same in the resized and the original image, so they map back per axis to xyxy pixels of the
  *original* image with no aspect bookkeeping.
- The pooled features keep a coarse ``pool x pool`` grid (AlexNet's ``AdaptiveAvgPool2d((6, 6))``)
  rather than a 1x1 global average: a global average discards *where* things are, which is exactly
  what the box head needs. ``pool=1`` gives the global average.
- Target: the image's single object; when a target has several boxes the largest one is used, and
  an image with no box adds nothing to either loss (a batch where *no* image has a box is an error).
- Regression loss: summed over the 4 coordinates, averaged over the images (smooth L1 uses
  ``beta = 0.1`` in image-size units: quadratic within 10% of the image, linear beyond).
- Predictions: ``class`` (0-dim int64, 1-based), ``box`` (``Tensor[4]`` xyxy original pixels), and
  the detection-style ``scores`` ``Tensor[1]`` (softmax probability of ``class``), ``labels``
  ``Tensor[1]``, ``boxes`` ``Tensor[1, 4]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import box_convert

from detseg.models.backbones import Backbone, build_backbone
from detseg.models.base import DetsegModel
from detseg.models.transform import boxes_to_original, preprocess
from detseg.structures import ModelOutput

SMOOTH_L1_BETA = 0.1
REGRESSION_LOSSES = ("smooth_l1", "l1", "l2")


def regression_loss(pred: Tensor, target: Tensor, kind: str) -> Tensor:
    """Box regression loss: ``Tensor[N, 4]`` vs ``Tensor[N, 4]``, summed over coords, mean over N.

    ``kind``: ``"l2"`` (squared error, i.e. MSE x 4), ``"l1"`` or ``"smooth_l1"`` (Huber with
    :data:`SMOOTH_L1_BETA`).
    """
    if kind == "l2":
        per = F.mse_loss(pred, target, reduction="none")
    elif kind == "l1":
        per = F.l1_loss(pred, target, reduction="none")
    elif kind == "smooth_l1":
        per = F.smooth_l1_loss(pred, target, reduction="none", beta=SMOOTH_L1_BETA)
    else:
        raise ValueError(f"cls_loc: loss must be one of {REGRESSION_LOSSES}, got {kind!r}")
    return per.sum(1).mean()


class ClsLocHead(nn.Module):
    """Pooled features -> ``(class logits Tensor[B, C], boxes Tensor[B, 4] cxcywh in [0, 1])``."""

    def __init__(self, in_ch: int, num_classes: int, pool: int = 4, hidden: int = 256,
                 dropout: float = 0.0):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(pool)
        # One shared fully connected layer (AlexNet's fc6), then the two task heads.
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(in_ch * pool * pool, hidden),
                                nn.ReLU(inplace=True), nn.Dropout(dropout))
        self.cls = nn.Linear(hidden, num_classes)
        self.box = nn.Linear(hidden, 4)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.fc(self.pool(x))
        return self.cls(h), self.box(h).sigmoid()


class ClsLoc(DetsegModel):
    """Classification + localization model (see the module docstring)."""

    task = "cls_loc"

    def __init__(self, classes: list[str], backbone: Backbone, head: ClsLocHead, img_size: int,
                 loss: str = "smooth_l1", lam: float = 1.0):
        super().__init__(classes)
        if loss not in REGRESSION_LOSSES:
            raise ValueError(f"cls_loc: loss must be one of {REGRESSION_LOSSES}, got {loss!r}")
        self.backbone = backbone
        self.head = head
        self.img_size = img_size
        # The deepest map feeds the heads (every backbone parameter is used: DDP requires it).
        self.feature = backbone.names[-1]
        self.loss_kind = loss
        self.lam = lam

    def forward(self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None,
                with_predictions: bool = False) -> ModelOutput:
        """See :class:`~detseg.models.base.DetsegModel`; losses ``loss_cls`` and ``loss_box``."""
        batch = preprocess(images, self.img_size, keep_aspect=False,
                           stride=self.backbone.out_stride, who="cls_loc")
        logits, boxes = self.head(self.backbone(batch.tensor)[self.feature])
        out = ModelOutput()
        if targets is not None:
            out.losses = self.loss(logits, boxes, targets, batch.original_sizes)
        if with_predictions or not self.training:
            out.predictions = [self.postprocess(lg, b, size) for lg, b, size in
                               zip(logits.detach(), boxes.detach(), batch.original_sizes)]
        return out

    def loss(self, logits: Tensor, boxes: Tensor, targets: list[dict[str, Tensor]],
             sizes: list[tuple[int, int]]) -> dict[str, Tensor]:
        """``{"loss_cls": CE, "loss_box": lam * regression}`` over the images that have a box."""
        if len(targets) != len(logits):
            raise ValueError(f"cls_loc: got {len(logits)} images but {len(targets)} targets")
        keep, labels, goal = [], [], []
        for i, (t, size) in enumerate(zip(targets, sizes)):
            picked = self._main_object(i, t, size)
            if picked is not None:
                keep.append(i)
                labels.append(picked[0])
                goal.append(picked[1])
        if not keep:
            raise ValueError("cls_loc: no target in this batch has a box; classification + "
                             "localization needs one labelled object per image")
        idx = torch.tensor(keep, device=logits.device)
        labels_t = torch.stack(labels).to(logits.device)
        goal_t = torch.stack(goal).to(boxes.device, boxes.dtype)
        return {"loss_cls": F.cross_entropy(logits[idx], labels_t - 1),
                "loss_box": self.lam * regression_loss(boxes[idx], goal_t, self.loss_kind)}

    def _main_object(self, i: int, target: dict[str, Tensor],
                     size: tuple[int, int]) -> tuple[Tensor, Tensor] | None:
        """``(label, cxcywh normalised Tensor[4])`` of the largest box, or ``None`` when empty."""
        for key in ("boxes", "labels"):
            if key not in target:
                raise ValueError(f"cls_loc: targets[{i}]: no {key!r} (classification + "
                                 "localization needs boxes and labels)")
        boxes, labels = target["boxes"], target["labels"]
        if boxes.numel() == 0:
            return None
        if boxes.ndim != 2 or boxes.shape[1] != 4 or len(labels) != len(boxes):
            raise ValueError(f"cls_loc: targets[{i}]: 'boxes' {tuple(boxes.shape)} and 'labels' "
                             f"{tuple(labels.shape)} must be Tensor[N, 4] and Tensor[N]")
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        j = int(area.argmax())
        label = labels[j].long()
        if not 1 <= int(label) <= self.num_classes:
            raise ValueError(f"cls_loc: targets[{i}]['labels']: {int(label)} is outside 1.."
                             f"{self.num_classes} (labels are 1-based; 0 is background)")
        h, w = size
        norm = boxes[j].float() / boxes.new_tensor([w, h, w, h], dtype=torch.float32)
        return label, box_convert(norm[None], "xyxy", "cxcywh")[0]

    def postprocess(self, logits: Tensor, box: Tensor, size: tuple[int, int]) -> dict[str, Tensor]:
        """One image's ``Tensor[C]`` logits and ``Tensor[4]`` normalised cxcywh -> predictions."""
        prob, idx = logits.softmax(0).max(0)
        xyxy = boxes_to_original(box_convert(box[None], "cxcywh", "xyxy"), size)
        label = idx + 1
        return {"class": label, "box": xyxy[0], "scores": prob[None], "labels": label[None],
                "boxes": xyxy}


def build_cls_loc(classes: list[str], img_size: int = 128, backbone: str = "alexnet_small",
                  weights: str | None = None, loss: str = "smooth_l1", lam: float = 1.0,
                  pool: int = 4, hidden: int = 256, dropout: float = 0.0,
                  backbone_width: int | None = None) -> ClsLoc:
    """A classification + localization model (see the module docstring).

    Args:
        classes: foreground class names (labels 1..C).
        img_size: the square side the network sees.
        backbone: ``alexnet_small`` (CPU-fast), ``resnet18`` or ``simple``.
        weights: pretrained backbone weights (local file or torchvision enum name).
        loss: box regression loss, ``"smooth_l1"``, ``"l1"`` or ``"l2"``.
        lam: ``lambda``, the weight of the box loss in ``CE + lambda * regression``.
        pool: side of the pooled feature grid (1 = global average pooling).
        hidden: width of the shared fully connected layer.
        dropout: dropout after the shared layer.
        backbone_width: base width of ``alexnet_small``/``simple`` (their default when ``None``).
    """
    if loss not in REGRESSION_LOSSES:
        raise ValueError(f"cls_loc: loss must be one of {REGRESSION_LOSSES}, got {loss!r}")
    kw = {} if backbone_width is None else {"width": backbone_width}
    bb = build_backbone(backbone, weights=weights, **kw)
    head = ClsLocHead(bb.channels[bb.names[-1]], len(classes), pool=pool, hidden=hidden,
                      dropout=dropout)
    return ClsLoc(classes, bb, head, img_size, loss=loss, lam=lam)
