"""Classification + localization: one object per image, its class and its box.

Implements CS231n 2017 lecture 11's "Classification + Localization": a CNN whose features feed two
heads — class scores and 4 box numbers (or 4 per class) — trained with the multi-task loss
``L = CE(class) + lambda * regression(box)``. The regression loss is selectable among L2, L1 and
smooth L1 (Girshick, "Fast R-CNN", ICCV 2015, https://arxiv.org/abs/1504.08083, eq. 3) and the
IoU-based GIoU loss (Rezatofighi et al., "Generalized Intersection over Union", CVPR 2019,
https://arxiv.org/abs/1902.09630). The "treat localization as regression" design follows OverFeat
(Sermanet et al., ICLR 2014, https://arxiv.org/abs/1312.6229).

Conventions:

- ``classes`` are the foreground names; labels are 1-based (``classes[label - 1]``); the class head
  has ``len(classes)`` outputs (no background: every image holds one object).
- The image is resized to a fixed ``img_size`` square (aspect not kept). Boxes are normalised to
  the image; normalised coordinates are the same in the resized and the original image, so they
  map back per axis to xyxy pixels of the *original* image with no aspect bookkeeping.
- Box parameterisation (``box_format``), both normalised to [0, 1]:

  - ``"cxcywh"`` (default): ``(cx, cy, w, h)``, each through a sigmoid. The xyxy box it implies may
    stick out of the image; predictions are clipped to it.
  - ``"xyxy"``: ``(x1, y1, x2, y2)``, valid by construction: the top-left corner through a
    sigmoid, then each far edge a sigmoid *fraction of the room left*, ``x2 = x1 + s * (1 - x1)``,
    so ``0 <= x1 <= x2 <= 1`` always (sorting two free coordinates would also be valid, but a
    swap flips which output owns which edge mid-training). The box layer's bias starts the box at
    the centred half-size box, where ``cxcywh`` starts, rather than at sigmoid(0) = 0.5 for every
    output (a box in the bottom-right quarter).

- Box outputs: ``class_agnostic=True`` (default) predicts one box; ``False`` predicts one box per
  class (``C x 4``, Fast R-CNN's class-specific regression): training regresses the box of the
  ground-truth class, inference reports the box of the predicted class.
- The pooled features keep a coarse ``pool x pool`` grid (AlexNet's ``AdaptiveAvgPool2d((6, 6))``)
  rather than a 1x1 global average: a global average discards *where* things are, which is exactly
  what the box head needs. ``pool=1`` gives the global average.
- Target: the image's single object; when a target has several boxes the largest one is used, and
  an image with no box adds nothing to either loss (a batch where *no* image has a box is an error).
- Regression loss, in the chosen ``box_format``: L2, L1 and smooth L1 are summed over the 4
  coordinates and averaged over the images (smooth L1 uses ``beta = 0.1`` in image-size units:
  quadratic within 10% of the image, linear beyond); ``giou`` is ``1 - GIoU`` per image (in
  [0, 2]), averaged, always computed on xyxy boxes whatever the format.
- Predictions: ``class`` (0-dim int64, 1-based), ``box`` (``Tensor[4]`` xyxy original pixels), and
  the detection-style ``scores`` ``Tensor[1]`` (softmax probability of ``class``), ``labels``
  ``Tensor[1]``, ``boxes`` ``Tensor[1, 4]``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import box_convert, generalized_box_iou_loss

from detseg.models.backbones import Backbone, build_backbone
from detseg.models.base import DetsegModel
from detseg.models.transform import boxes_to_original, preprocess
from detseg.structures import ModelOutput

SMOOTH_L1_BETA = 0.1
REGRESSION_LOSSES = ("smooth_l1", "l1", "l2", "giou")
BOX_FORMATS = ("cxcywh", "xyxy")


def check_options(loss: str, box_format: str, class_agnostic: bool) -> None:
    """``ValueError`` naming the option when ``loss``, ``box_format`` or ``class_agnostic`` is bad."""
    if loss not in REGRESSION_LOSSES:
        raise ValueError(f"cls_loc: loss must be one of {REGRESSION_LOSSES}, got {loss!r}")
    if box_format not in BOX_FORMATS:
        raise ValueError(f"cls_loc: box_format must be one of {BOX_FORMATS}, got {box_format!r}")
    if not isinstance(class_agnostic, bool):
        raise ValueError(f"cls_loc: class_agnostic must be true or false, got {class_agnostic!r}")


def decode_boxes(raw: Tensor, box_format: str) -> Tensor:
    """Raw box-layer outputs ``Tensor[..., 4]`` -> normalised boxes in ``box_format`` (module doc)."""
    s = raw.sigmoid()
    if box_format == "cxcywh":
        return s
    x1, y1, fx, fy = s.unbind(-1)
    return torch.stack([x1, y1, x1 + fx * (1 - x1), y1 + fy * (1 - y1)], -1)


def to_xyxy(boxes: Tensor, box_format: str) -> Tensor:
    """Normalised ``Tensor[..., 4]`` in ``box_format`` -> normalised xyxy."""
    return boxes if box_format == "xyxy" else box_convert(boxes, box_format, "xyxy")


def from_xyxy(boxes: Tensor, box_format: str) -> Tensor:
    """Normalised xyxy ``Tensor[..., 4]`` -> normalised ``box_format``."""
    return boxes if box_format == "xyxy" else box_convert(boxes, "xyxy", box_format)


def regression_loss(pred: Tensor, target: Tensor, kind: str, box_format: str = "cxcywh") -> Tensor:
    """Box regression loss: ``Tensor[N, 4]`` vs ``Tensor[N, 4]`` (both ``box_format``), mean over N.

    ``kind``: ``"l2"`` (squared error, i.e. MSE x 4), ``"l1"`` or ``"smooth_l1"`` (Huber with
    :data:`SMOOTH_L1_BETA`), summed over the coordinates of ``box_format``; or ``"giou"``
    (``1 - GIoU`` on the boxes converted to xyxy).
    """
    if kind == "giou":
        return generalized_box_iou_loss(to_xyxy(pred, box_format), to_xyxy(target, box_format),
                                        reduction="mean")
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
    """Pooled features -> ``(class logits Tensor[B, C], boxes Tensor[B, K, 4])``.

    Boxes are normalised, in ``box_format``; ``K = 1`` when ``class_agnostic`` else ``K = C``
    (box ``k`` belongs to label ``k + 1``).
    """

    def __init__(self, in_ch: int, num_classes: int, pool: int = 4, hidden: int = 256,
                 dropout: float = 0.0, box_format: str = "cxcywh", class_agnostic: bool = True):
        super().__init__()
        self.box_format = box_format
        self.class_agnostic = class_agnostic
        self.box_sets = 1 if class_agnostic else num_classes
        self.pool = nn.AdaptiveAvgPool2d(pool)
        # One shared fully connected layer (AlexNet's fc6), then the two task heads.
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(in_ch * pool * pool, hidden),
                                nn.ReLU(inplace=True), nn.Dropout(dropout))
        self.cls = nn.Linear(hidden, num_classes)
        # Named ``box`` whatever K: class-agnostic checkpoints from before these options still load.
        self.box = nn.Linear(hidden, 4 * self.box_sets)
        if box_format == "xyxy":
            # Start at the centred half-size box: x1 = 0.25, x2 = x1 + (2/3) * (1 - x1) = 0.75.
            with torch.no_grad():
                self.box.bias.view(self.box_sets, 4).copy_(
                    torch.tensor([-math.log(3), -math.log(3), math.log(2), math.log(2)]))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.fc(self.pool(x))
        raw = self.box(h).view(len(h), self.box_sets, 4)
        return self.cls(h), decode_boxes(raw, self.box_format)


class ClsLoc(DetsegModel):
    """Classification + localization model (see the module docstring)."""

    task = "cls_loc"

    def __init__(self, classes: list[str], backbone: Backbone, head: ClsLocHead, img_size: int,
                 loss: str = "smooth_l1", lam: float = 1.0):
        super().__init__(classes)
        check_options(loss, head.box_format, head.class_agnostic)
        self.backbone = backbone
        self.head = head
        self.img_size = img_size
        # The deepest map feeds the heads (every backbone parameter is used: DDP requires it).
        self.feature = backbone.names[-1]
        self.loss_kind = loss
        self.lam = lam

    @property
    def box_format(self) -> str:
        return self.head.box_format

    @property
    def class_agnostic(self) -> bool:
        return self.head.class_agnostic

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

    def select_boxes(self, boxes: Tensor, labels: Tensor) -> Tensor:
        """``Tensor[N, K, 4]`` and 1-based ``Tensor[N]`` labels -> each image's ``Tensor[N, 4]``:
        the class's own box (per-class outputs) or the only box (class-agnostic)."""
        if self.class_agnostic:
            return boxes[:, 0]
        return boxes[torch.arange(len(boxes), device=boxes.device), labels - 1]

    def loss(self, logits: Tensor, boxes: Tensor, targets: list[dict[str, Tensor]],
             sizes: list[tuple[int, int]]) -> dict[str, Tensor]:
        """``{"loss_cls": CE, "loss_box": lam * regression}`` over the images that have a box.

        ``boxes`` is the head's ``Tensor[B, K, 4]``; per-class outputs regress the ground-truth
        class's box.
        """
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
        goal_t = from_xyxy(torch.stack(goal).to(boxes.device, boxes.dtype), self.box_format)
        pred = self.select_boxes(boxes[idx], labels_t)
        return {"loss_cls": F.cross_entropy(logits[idx], labels_t - 1),
                "loss_box": self.lam * regression_loss(pred, goal_t, self.loss_kind,
                                                       self.box_format)}

    def _main_object(self, i: int, target: dict[str, Tensor],
                     size: tuple[int, int]) -> tuple[Tensor, Tensor] | None:
        """``(label, xyxy normalised Tensor[4])`` of the largest box, or ``None`` when empty."""
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
        return label, boxes[j].float() / boxes.new_tensor([w, h, w, h], dtype=torch.float32)

    def postprocess(self, logits: Tensor, boxes: Tensor,
                    size: tuple[int, int]) -> dict[str, Tensor]:
        """One image's ``Tensor[C]`` logits and ``Tensor[K, 4]`` normalised boxes -> predictions
        (per-class outputs report the predicted class's box)."""
        prob, idx = logits.softmax(0).max(0)
        label = idx + 1
        box = self.select_boxes(boxes[None], label[None])
        xyxy = boxes_to_original(to_xyxy(box, self.box_format), size)
        return {"class": label, "box": xyxy[0], "scores": prob[None], "labels": label[None],
                "boxes": xyxy}


def build_cls_loc(classes: list[str], img_size: int = 128, backbone: str = "alexnet_small",
                  weights: str | None = None, loss: str = "smooth_l1", lam: float = 1.0,
                  pool: int = 4, hidden: int = 256, dropout: float = 0.0,
                  backbone_width: int | None = None, box_format: str = "cxcywh",
                  class_agnostic: bool = True) -> ClsLoc:
    """A classification + localization model (see the module docstring).

    Args:
        classes: foreground class names (labels 1..C).
        img_size: the square side the network sees.
        backbone: ``alexnet_small`` (CPU-fast), ``resnet18`` or ``simple``.
        weights: pretrained backbone weights (local file or torchvision enum name).
        loss: box regression loss, ``"smooth_l1"``, ``"l1"``, ``"l2"`` or ``"giou"``.
        lam: ``lambda``, the weight of the box loss in ``CE + lambda * regression``.
        pool: side of the pooled feature grid (1 = global average pooling).
        hidden: width of the shared fully connected layer.
        dropout: dropout after the shared layer.
        backbone_width: base width of ``alexnet_small``/``simple`` (their default when ``None``).
        box_format: what the box head predicts and the loss compares, ``"cxcywh"`` or ``"xyxy"``
            (both normalised to the image).
        class_agnostic: one box for all classes (True) or one box per class (False).
    """
    check_options(loss, box_format, class_agnostic)
    bb = build_backbone(backbone, weights=weights, width=backbone_width)
    head = ClsLocHead(bb.channels[bb.names[-1]], len(classes), pool=pool, hidden=hidden,
                      dropout=dropout, box_format=box_format, class_agnostic=class_agnostic)
    return ClsLoc(classes, bb, head, img_size, loss=loss, lam=lam)
