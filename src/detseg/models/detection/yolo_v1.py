"""YOLO v1: Redmon, Divvala, Girshick, Farhadi, "You Only Look Once: Unified, Real-Time Object
Detection", CVPR 2016 (https://arxiv.org/abs/1506.02640).

The image (warped to a square, as in the paper) is cut into an ``S x S`` grid. Each cell predicts
``B`` boxes ``(x, y, sqrt w, sqrt h, confidence)`` -- ``x, y`` the box centre relative to the cell,
``w, h`` relative to the image -- and ``C`` class probabilities shared by its boxes: one forward
pass gives an ``S x S x (5B + C)`` tensor. The network is a CNN backbone, then (as in the paper)
fully connected layers that see the whole image and output that tensor.

Training (sec. 2.2): the cell holding an object's centre is responsible for it, and of its ``B``
predictors the one whose current box has the highest IoU with the object is "responsible". The
loss is sum-squared error::

    lambda_coord * sum_resp [(x - x^)^2 + (y - y^)^2 + (sqrt w - sqrt w^)^2 + (sqrt h - sqrt h^)^2]
  + sum_resp (C - IoU(pred, truth))^2 + lambda_noobj * sum_not_resp C^2
  + sum_cells_with_object sum_c (p(c) - p^(c))^2

with ``lambda_coord = 5`` and ``lambda_noobj = 0.5``, summed over the image and averaged over the
batch. A cell holds one object (the paper's limit): when several centres fall in one cell, the
largest object keeps it. Inference scores each box by ``confidence * p(class)`` (the class-specific
confidence of eq. 1), then threshold and per-class NMS.

Departures, for training from scratch on a CPU: the box and confidence outputs pass a sigmoid and
the class outputs a softmax (the paper's last layer is linear; bounded outputs keep early training
from diverging), BatchNorm in the backbone instead of ImageNet pretraining, and no dropout by
default (``dropout=0.5`` is the paper's).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from detseg.models.backbones import build_backbone
from detseg.models.detection.one_stage import OneStageDetector
from detseg.models.transform import ImageBatch

CONF_TARGETS = ("iou", "one")


def decode_cells(xywh: Tensor) -> Tensor:
    """Cell-relative ``(x, y, sqrt w, sqrt h)`` -> xyxy normalised to the image.

    Args:
        xywh: ``Tensor[..., S, S, B, 4]``: the box part of each cell's predictions (or targets).

    Returns:
        ``Tensor[..., S, S, B, 4]`` xyxy in [0, 1] units of the (padded) network input.
    """
    s_y, s_x = xywh.shape[-4], xywh.shape[-3]
    rows = torch.arange(s_y, device=xywh.device, dtype=xywh.dtype).view(-1, 1, 1)
    cols = torch.arange(s_x, device=xywh.device, dtype=xywh.dtype).view(1, -1, 1)
    cx = (cols + xywh[..., 0]) / s_x
    cy = (rows + xywh[..., 1]) / s_y
    w, h = xywh[..., 2] ** 2, xywh[..., 3] ** 2
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)


def elementwise_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of ``a[..., 4]`` and ``b[..., 4]`` (xyxy, broadcast), not the pairwise matrix."""
    lt = torch.maximum(a[..., :2], b[..., :2])
    rb = torch.minimum(a[..., 2:], b[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[..., 2:] - a[..., :2]).clamp(min=0).prod(-1)
    area_b = (b[..., 2:] - b[..., :2]).clamp(min=0).prod(-1)
    return inter / (area_a + area_b - inter).clamp(min=1e-9)


@torch.no_grad()
def encode_targets(boxes: Tensor, labels: Tensor, pred_boxes: Tensor,
                   num_classes: int) -> dict[str, Tensor]:
    """The YOLO v1 training targets of one image.

    Args:
        boxes: ``Tensor[N, 4]`` ground-truth xyxy normalised to the network input ([0, 1]).
        labels: ``Tensor[N]`` int64 in ``1..C``.
        pred_boxes: ``Tensor[S, S, B, 4]`` the current predictions, xyxy normalised
            (:func:`decode_cells`): they choose each object's responsible predictor by IoU.
        num_classes: ``C``.

    Returns:
        ``has_obj`` ``Tensor[S, S]`` bool (the cell holds an object's centre), ``resp``
        ``Tensor[S, S, B]`` bool (the responsible predictor), ``box`` ``Tensor[S, S, B, 4]``
        ``(x, y, sqrt w, sqrt h)`` targets (meaningful where ``resp``), ``cls`` ``Tensor[S, S, C]``
        one-hot class probabilities, ``gt`` ``Tensor[S, S, 4]`` the cell's object (xyxy normalised).
    """
    s_y, s_x, b = pred_boxes.shape[:3]
    dev, dt = pred_boxes.device, pred_boxes.dtype
    has_obj = torch.zeros(s_y, s_x, dtype=torch.bool, device=dev)
    resp = torch.zeros(s_y, s_x, b, dtype=torch.bool, device=dev)
    box = torch.zeros(s_y, s_x, b, 4, dtype=dt, device=dev)
    cls = torch.zeros(s_y, s_x, num_classes, dtype=dt, device=dev)
    gt = torch.zeros(s_y, s_x, 4, dtype=dt, device=dev)
    if len(boxes) == 0:
        return {"has_obj": has_obj, "resp": resp, "box": box, "cls": cls, "gt": gt}
    boxes = boxes.to(dt).clamp(0, 1)
    wh = boxes[:, 2:] - boxes[:, :2]
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    order = torch.argsort(wh.prod(1), descending=True)  # the largest object keeps a shared cell
    for k in order.tolist():
        col = min(int(centre[k, 0] * s_x), s_x - 1)
        row = min(int(centre[k, 1] * s_y), s_y - 1)
        if has_obj[row, col]:
            continue
        j = int(elementwise_iou(pred_boxes[row, col], boxes[k]).argmax())
        has_obj[row, col] = True
        resp[row, col, j] = True
        box[row, col, j] = torch.stack([centre[k, 0] * s_x - col, centre[k, 1] * s_y - row,
                                        wh[k, 0].sqrt(), wh[k, 1].sqrt()])
        cls[row, col, int(labels[k]) - 1] = 1.0
        gt[row, col] = boxes[k]
    return {"has_obj": has_obj, "resp": resp, "box": box, "cls": cls, "gt": gt}


class YoloV1Head(nn.Module):
    """Backbone map -> conv -> FC -> FC -> ``Tensor[B, S, S, 5B + C]`` (the paper's output tensor)."""

    def __init__(self, in_channels: int, in_size: int, grid: int, num_boxes: int, num_classes: int,
                 head_channels: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.grid, self.num_boxes, self.num_classes = grid, num_boxes, num_classes
        self.conv = nn.Sequential(nn.Conv2d(in_channels, head_channels, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(head_channels), nn.LeakyReLU(0.1, inplace=True),
                                  nn.AdaptiveAvgPool2d(in_size))
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(head_channels * in_size * in_size, hidden),
                                nn.LeakyReLU(0.1, inplace=True), nn.Dropout(dropout),
                                nn.Linear(hidden, grid * grid * (5 * num_boxes + num_classes)))

    def forward(self, x: Tensor) -> Tensor:
        s = self.grid
        # unflatten, not view(len(x), ...): a traced (ONNX) graph keeps the batch size free
        return self.fc(self.conv(x)).unflatten(-1, (s, s, 5 * self.num_boxes + self.num_classes))


class YoloV1(OneStageDetector):
    """YOLO v1 (module docstring). ``feature`` is the backbone map the head reads."""

    def __init__(self, classes: list[str], backbone, head: YoloV1Head, feature: str, img_size: int,
                 lambda_coord: float = 5.0, lambda_noobj: float = 0.5, conf_target: str = "iou",
                 **post) -> None:
        super().__init__(classes, backbone, img_size, keep_aspect=False, name="yolo_v1", **post)
        if conf_target not in CONF_TARGETS:
            raise ValueError(f"yolo_v1: conf_target must be one of {CONF_TARGETS}, got {conf_target!r}")
        self.head, self.feature = head, feature
        self.lambda_coord, self.lambda_noobj = float(lambda_coord), float(lambda_noobj)
        self.conf_target = conf_target

    def head_outputs(self, x: Tensor) -> dict[str, Tensor]:
        """``box`` ``[B, S, S, nb, 4]`` (x, y, sqrt w, sqrt h), ``conf`` ``[B, S, S, nb]``,
        ``cls`` ``[B, S, S, C]`` class probabilities."""
        raw = self.head(self.backbone(x)[self.feature]).float()
        nb = self.head.num_boxes
        per_box = raw[..., : 5 * nb].unflatten(-1, (nb, 5)).sigmoid()
        return {"box": per_box[..., :4], "conf": per_box[..., 4], "cls": raw[..., 5 * nb:].softmax(-1)}

    def loss(self, outputs: dict[str, Tensor], targets: list[dict[str, Tensor]],
             batch: ImageBatch) -> dict[str, Tensor]:
        hp, wp = batch.tensor.shape[-2:]
        norm = torch.tensor([wp, hp, wp, hp], device=batch.tensor.device, dtype=torch.float32)
        pred_boxes = decode_cells(outputs["box"])
        enc = [encode_targets(t["boxes"] / norm, t["labels"], pb.detach(), self.num_classes)
               for t, pb in zip(targets, pred_boxes)]
        has_obj, resp, box, cls, gt = (torch.stack([e[k] for e in enc])
                                       for k in ("has_obj", "resp", "box", "cls", "gt"))
        resp_f, n = resp.float(), len(targets)
        coord = (((outputs["box"] - box) ** 2).sum(-1) * resp_f).sum()
        conf = outputs["conf"]
        if self.conf_target == "iou":  # the paper: confidence = IoU(pred, truth) of the responsible box
            target_conf = elementwise_iou(pred_boxes.detach(), gt[:, :, :, None]).detach()
        else:
            target_conf = torch.ones_like(conf)
        obj = (((conf - target_conf) ** 2) * resp_f).sum()
        noobj = ((conf ** 2) * (1 - resp_f)).sum()
        cls_loss = (((outputs["cls"] - cls) ** 2).sum(-1) * has_obj.float()).sum()
        return {"loss_box": self.lambda_coord * coord / n,
                "loss_conf": (obj + self.lambda_noobj * noobj) / n,
                "loss_cls": cls_loss / n}

    def decode(self, outputs: dict[str, Tensor], batch: ImageBatch) -> tuple[Tensor, Tensor]:
        hp, wp = batch.tensor.shape[-2:]
        boxes = decode_cells(outputs["box"]) * outputs["box"].new_tensor([wp, hp, wp, hp])
        scores = outputs["conf"][..., None] * outputs["cls"][:, :, :, None, :]
        b = len(boxes)
        return boxes.reshape(b, -1, 4), scores.reshape(b, -1, self.num_classes)


def build_yolo_v1(classes: list[str], img_size: int = 128, backbone: str = "alexnet_small",
                  weights: str | None = None, backbone_width: int | None = None,
                  feature: str = "c5", grid: int = 7, num_boxes: int = 2, head_channels: int = 64,
                  hidden: int = 512, dropout: float = 0.0, lambda_coord: float = 5.0,
                  lambda_noobj: float = 0.5, conf_target: str = "iou", score_thresh: float = 0.01,
                  nms_thresh: float = 0.5, detections_per_img: int = 100) -> YoloV1:
    """YOLO v1 (module docstring).

    Args:
        classes: foreground class names (labels 1..C).
        img_size: the square side images are warped to (448 in the paper).
        backbone, weights, backbone_width: the CNN (``alexnet_small``, ``resnet18``, ``simple``),
            optional pretrained weights, base width of ``alexnet_small``/``simple``.
        feature: the backbone map the head reads (``c5``, stride 32).
        grid, num_boxes: ``S`` and ``B`` (7 and 2 in the paper).
        head_channels, hidden, dropout: the head's conv width, FC width (4096 in the paper) and
            dropout after the first FC layer (0.5 in the paper).
        lambda_coord, lambda_noobj: the loss weights (5 and 0.5 in the paper).
        conf_target: ``"iou"`` (the paper: the responsible box's IoU with its object) or ``"one"``.
        score_thresh, nms_thresh, detections_per_img: inference post-processing.
    """
    bb = build_backbone(backbone, weights=weights, width=backbone_width)
    if feature not in bb.channels:
        raise ValueError(f"yolo_v1: feature {feature!r}: the backbone gives {', '.join(bb.names)}")
    in_size = max(1, math.ceil(img_size / bb.strides[feature]))
    head = YoloV1Head(bb.channels[feature], in_size, grid, num_boxes, len(classes), head_channels,
                      hidden, dropout)
    return YoloV1(classes, bb, head, feature, img_size, lambda_coord, lambda_noobj, conf_target,
                  score_thresh=score_thresh, nms_thresh=nms_thresh,
                  detections_per_img=detections_per_img)
