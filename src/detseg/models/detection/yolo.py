"""Anchor-based single-shot YOLO: k-means base boxes, an FPN/PAN neck, multi-scale dense heads.

The lecture's "base boxes" per cell, after Redmon & Farhadi, "YOLO9000: Better, Faster, Stronger"
(CVPR 2017, https://arxiv.org/abs/1612.08242) and "YOLOv3: An Incremental Improvement" (2018,
https://arxiv.org/abs/1804.02767), with the neck of Lin et al., "Feature Pyramid Networks"
(CVPR 2017) plus the bottom-up path of Liu et al., "Path Aggregation Network" (CVPR 2018)::

    images -> letterbox (longer side = img_size), normalise, pad -> backbone c3, c4, c5
           -> FPN (top-down) + PAN (bottom-up) -> per level: A anchors x (4 box + 1 obj + C cls)

- Anchors ("dimension clusters", YOLOv2 sec. 2): k-means on the training boxes' widths and
  heights with the distance ``1 - IoU`` (boxes aligned at a corner), ``levels x anchors_per_level``
  clusters sorted by area, the smallest to the finest level. :meth:`Yolo.fit_priors` computes
  them from the training set (the trainer calls it before the first epoch); they live in the
  ``anchors`` buffer, so checkpoints carry them. Until fitted, YOLOv3's COCO anchors scaled to
  ``img_size`` stand in. An explicit ``anchors`` option skips the clustering.
- Boxes (YOLOv2 "direct location prediction"): centre ``(sigmoid(t) + cell) * stride``, size
  ``anchor * exp(t)``; ``box_param="v5"`` is Ultralytics YOLOv5's bounded form, and with it
  ``neighbor_cells`` adds YOLOv5's two neighbouring-cell positives per object.
- Assignment (YOLOv3): each object goes to the cell of its centre on the level of its best-shaped
  anchor (shape IoU); ``anchor_iou_thresh`` also assigns it to every other anchor above that shape
  IoU. Predictions that are not assigned but overlap an object by more than ``ignore_thresh`` take
  no objectness loss.
- Losses: an IoU-aware box loss on the decoded positives (``ciou`` -- Zheng et al., AAAI 2020 --,
  ``diou`` or ``giou``, from ``torchvision.ops``), binary cross-entropy for objectness (every
  prediction) and for the classes (positives), each summed and divided by the number of positives
  (YOLOX's normalisation), box loss weighted by ``box_weight`` (5). An image with no objects gives
  ``loss_box = loss_cls = 0`` and trains objectness only.
- Inference: score ``sigmoid(obj) * sigmoid(cls)`` per class, threshold, per-class NMS.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import (box_iou, complete_box_iou_loss, distance_box_iou_loss,
                             generalized_box_iou_loss)

from detseg.models.backbones import build_backbone
from detseg.models.detection.one_stage import OneStageDetector, dataset_box_sizes
from detseg.models.transform import ImageBatch

BOX_LOSSES = {"ciou": complete_box_iou_loss, "diou": distance_box_iou_loss,
              "giou": generalized_box_iou_loss}
# YOLOv3's COCO anchors at 416 px (Redmon & Farhadi 2018), the stand-in until k-means has run.
YOLOV3_ANCHORS = ((10, 13), (16, 30), (33, 23), (30, 61), (62, 45), (59, 119), (116, 90),
                  (156, 198), (373, 326))
EXP_CLAMP = math.log(1000.0 / 16)
BOX_PARAMS = ("v2", "v5")


def wh_iou(wh1: Tensor, wh2: Tensor) -> Tensor:
    """Pairwise IoU ``Tensor[N, M]`` of boxes given by sizes ``[N, 2]``, ``[M, 2]``, aligned at a corner."""
    inter = torch.minimum(wh1[:, None], wh2[None]).prod(-1)
    return inter / (wh1.prod(-1)[:, None] + wh2.prod(-1)[None] - inter).clamp(min=1e-9)


def kmeans_anchors(wh: Tensor, k: int, iters: int = 100, seed: int = 0) -> Tensor:
    """YOLOv2's dimension clusters: k-means on box sizes with the distance ``1 - IoU``.

    Args:
        wh: ``Tensor[N, 2]`` box widths and heights (pixels), ``N >= 1``.
        k: number of clusters.
        iters: most Lloyd iterations (stops earlier when assignments no longer change).
        seed: seeds the k-means++ initialisation (deterministic anchors for a given data set).

    Returns:
        ``Tensor[k, 2]`` cluster centres (mean width and height of their members), sorted by area.
        With fewer distinct sizes than ``k`` some centres repeat.
    """
    wh = wh.float().reshape(-1, 2)
    if len(wh) == 0:
        raise ValueError("kmeans_anchors: no boxes to cluster")
    gen = torch.Generator().manual_seed(seed)
    centres = wh[torch.randint(len(wh), (1,), generator=gen)]
    while len(centres) < k:  # k-means++: the next centre far (in 1 - IoU) from the chosen ones
        d = (1 - wh_iou(wh, centres)).min(1).values ** 2
        pick = torch.multinomial(d, 1, generator=gen) if d.sum() > 0 else torch.randint(len(wh), (1,), generator=gen)
        centres = torch.cat([centres, wh[pick]])
    assign = None
    for _ in range(iters):
        new = wh_iou(wh, centres).argmax(1)
        if assign is not None and torch.equal(new, assign):
            break
        assign = new
        for j in range(k):
            members = wh[assign == j]
            if len(members):  # an empty cluster keeps its centre
                centres[j] = members.mean(0)
    return centres[centres.prod(1).argsort()]


def _conv(cin: int, cout: int, k: int = 3, s: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, s, k // 2, bias=False), nn.BatchNorm2d(cout),
                         nn.LeakyReLU(0.1, inplace=True))


class FpnPan(nn.Module):
    """FPN top-down path then PAN bottom-up path; every output has ``channels`` channels.

    ``forward(list of maps, shallow to deep) -> list of maps`` at the same strides.
    """

    def __init__(self, in_channels: list[int], channels: int) -> None:
        super().__init__()
        n = len(in_channels)
        self.lateral = nn.ModuleList(_conv(c, channels, 1) for c in in_channels)
        self.top_down = nn.ModuleList(_conv(channels, channels) for _ in range(n - 1))
        self.down = nn.ModuleList(_conv(channels, channels, 3, 2) for _ in range(n - 1))
        self.bottom_up = nn.ModuleList(_conv(channels, channels) for _ in range(n - 1))

    def forward(self, feats: list[Tensor]) -> list[Tensor]:
        lat = [m(f) for m, f in zip(self.lateral, feats)]
        p = [None] * len(lat)
        p[-1] = lat[-1]
        for i in range(len(lat) - 2, -1, -1):
            up = F.interpolate(p[i + 1], size=lat[i].shape[-2:], mode="nearest")
            p[i] = self.top_down[i](lat[i] + up)
        out = [p[0]]
        for i in range(1, len(p)):
            down = self.down[i - 1](out[-1])
            out.append(self.bottom_up[i - 1](p[i] + down[..., : p[i].shape[-2], : p[i].shape[-1]]))
        return out


class Yolo(OneStageDetector):
    """Anchor-based YOLO (module docstring).

    Args:
        classes: foreground class names.
        backbone, features: the CNN and the maps (shallow to deep) the neck reads.
        neck_channels: FPN/PAN width.
        anchors: ``Tensor[L, A, 2]`` initial anchor sizes (network pixels).
        fit_anchors: whether :meth:`fit_priors` replaces them by k-means on the training boxes.
        anchor_iou_thresh, ignore_thresh, box_loss, box_weight: training (module docstring).
    """

    def __init__(self, classes: list[str], backbone, features: list[str], img_size: int,
                 neck_channels: int, anchors: Tensor, fit_anchors: bool = True,
                 anchor_iou_thresh: float | None = None, ignore_thresh: float = 0.5,
                 box_loss: str = "ciou", box_weight: float = 5.0, box_param: str = "v2",
                 neighbor_cells: bool = False, **post) -> None:
        super().__init__(classes, backbone, img_size, keep_aspect=True, name="yolo", **post)
        if box_loss not in BOX_LOSSES:
            raise ValueError(f"yolo: box_loss must be one of {', '.join(BOX_LOSSES)}, got {box_loss!r}")
        if box_param not in BOX_PARAMS:
            raise ValueError(f"yolo: box_param must be one of {BOX_PARAMS}, got {box_param!r}")
        if neighbor_cells and box_param != "v5":
            raise ValueError("yolo: neighbor_cells=true needs box_param='v5' (a v2 centre cannot "
                             "leave its cell, so a neighbour cannot reach the object)")
        self.box_param, self.neighbor_cells = box_param, bool(neighbor_cells)
        self.features = list(features)
        self.level_strides = [int(backbone.strides[f]) for f in self.features]
        self.register_buffer("anchors", anchors.float().clone())
        self.fit_anchors = fit_anchors
        num_levels, num_anchors = anchors.shape[:2]
        self.num_anchors = num_anchors
        self.neck = FpnPan([backbone.channels[f] for f in self.features], neck_channels)
        out = num_anchors * (5 + len(classes))
        self.heads = nn.ModuleList(nn.Sequential(_conv(neck_channels, neck_channels),
                                                 nn.Conv2d(neck_channels, out, 1))
                                   for _ in range(num_levels))
        for head in self.heads:  # objectness starts at a 1 % prior, so background is cheap at once
            bias = head[-1].bias.data.view(num_anchors, -1)
            bias.zero_()
            bias[:, 4] = math.log(0.01 / 0.99)
        self.anchor_iou_thresh = anchor_iou_thresh
        self.ignore_thresh = float(ignore_thresh)
        self.box_loss, self.box_weight = box_loss, float(box_weight)

    @torch.no_grad()
    def fit_priors(self, dataset) -> None:
        """Anchors by k-means (1 - IoU) on the training boxes in the network frame (YOLOv2)."""
        if not self.fit_anchors:
            return
        wh = dataset_box_sizes(dataset, self.img_size, keep_aspect=True)
        if len(wh) == 0:
            return  # no boxes at all: keep the stand-in anchors
        k = self.anchors.shape[0] * self.anchors.shape[1]
        self.anchors.copy_(kmeans_anchors(wh, k).view_as(self.anchors).to(self.anchors))

    # -- network ----------------------------------------------------------------------------
    def head_outputs(self, x: Tensor) -> list[Tensor]:
        """Per level ``Tensor[B, A, H, W, 5 + C]``: ``tx, ty, tw, th, obj, cls...`` (raw)."""
        feats = self.backbone(x)
        maps = self.neck([feats[f] for f in self.features])
        out = []
        for head, m in zip(self.heads, maps):
            r = head(m).float()
            b, _, h, w = r.shape
            out.append(r.view(b, self.num_anchors, -1, h, w).permute(0, 1, 3, 4, 2))
        return out

    def decode_level(self, raw: Tensor, level: int) -> Tensor:
        """``Tensor[B, A, H, W, 4]`` xyxy network pixels of a level's raw outputs."""
        _, _, h, w, _ = raw.shape
        s = self.level_strides[level]
        gy, gx = torch.meshgrid(torch.arange(h, device=raw.device), torch.arange(w, device=raw.device),
                                indexing="ij")
        anchors = self.anchors[level].to(raw)
        aw, ah = anchors[:, 0, None, None], anchors[:, 1, None, None]
        if self.box_param == "v5":  # bounded: centre in (-0.5, 1.5) of the cell, size < 4 anchors
            xy, wh = raw[..., :2].sigmoid() * 2 - 0.5, (raw[..., 2:4].sigmoid() * 2) ** 2
            cx, cy, bw, bh = (xy[..., 0] + gx) * s, (xy[..., 1] + gy) * s, aw * wh[..., 0], ah * wh[..., 1]
        else:  # YOLOv2's direct location prediction
            cx = (raw[..., 0].sigmoid() + gx) * s
            cy = (raw[..., 1].sigmoid() + gy) * s
            bw = aw * raw[..., 2].clamp(max=EXP_CLAMP).exp()
            bh = ah * raw[..., 3].clamp(max=EXP_CLAMP).exp()
        return torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], -1)

    # -- training ---------------------------------------------------------------------------
    @torch.no_grad()
    def assign(self, targets: list[dict[str, Tensor]],
               shapes: list[tuple[int, int]]) -> list[tuple[Tensor, ...]]:
        """Per level ``(image, anchor, row, col, gt box [P, 4], gt label [P])`` of the positives."""
        flat_anchors = self.anchors.reshape(-1, 2)
        per_level: list[list[list[Tensor]]] = [[[] for _ in range(6)] for _ in shapes]
        for b, t in enumerate(targets):
            boxes, labels = t["boxes"], t["labels"]
            if len(boxes) == 0:
                continue
            wh = boxes[:, 2:] - boxes[:, :2]
            centre = (boxes[:, :2] + boxes[:, 2:]) / 2
            iou = wh_iou(wh, flat_anchors.to(wh))
            pos = torch.zeros_like(iou, dtype=torch.bool)
            pos[torch.arange(len(boxes)), iou.argmax(1)] = True
            if self.anchor_iou_thresh is not None:
                pos |= iou > self.anchor_iou_thresh
            gi, ai = pos.nonzero(as_tuple=True)
            for lvl, (h, w) in enumerate(shapes):
                sel = ai // self.num_anchors == lvl
                g, a = gi[sel], ai[sel] % self.num_anchors
                s = self.level_strides[lvl]
                gxy = centre[g] / s
                col = gxy[:, 0].long().clamp(0, w - 1)
                row = gxy[:, 1].long().clamp(0, h - 1)
                cells = [(g, a, row, col)]
                if self.neighbor_cells:  # YOLOv5: also the neighbour nearest the centre per axis
                    frac = gxy - gxy.floor()
                    for axis, size in ((0, w), (1, h)):
                        step = torch.where(frac[:, axis] < 0.5, -1, 1)
                        near = (col if axis == 0 else row) + step
                        ok = (near >= 0) & (near < size) & ((frac[:, axis] - 0.5).abs() > 1e-6)
                        cells.append((g[ok], a[ok], row[ok] if axis == 0 else near[ok],
                                      near[ok] if axis == 0 else col[ok]))
                for g_, a_, r_, c_ in cells:
                    for store, v in zip(per_level[lvl], (torch.full_like(g_, b), a_, r_, c_, boxes[g_],
                                                         labels[g_])):
                        store.append(v)
        dev = self.anchors.device
        empty = (torch.zeros(0, dtype=torch.long, device=dev),) * 4 + (
            torch.zeros(0, 4, device=dev), torch.zeros(0, dtype=torch.long, device=dev))
        return [tuple(torch.cat(v) for v in lv) if lv[0] else empty for lv in per_level]

    def loss(self, outputs: list[Tensor], targets: list[dict[str, Tensor]],
             batch: ImageBatch) -> dict[str, Tensor]:
        shapes = [tuple(r.shape[2:4]) for r in outputs]
        assigned = self.assign(targets, shapes)
        loss_fn = BOX_LOSSES[self.box_loss]
        box_sum = cls_sum = obj_sum = outputs[0].sum() * 0.0
        npos = 0
        for lvl, (raw, (bi, ai, row, col, gt, lab)) in enumerate(zip(outputs, assigned)):
            boxes = self.decode_level(raw, lvl)
            obj_target = torch.zeros_like(raw[..., 4])
            weight = torch.ones_like(obj_target)
            with torch.no_grad():  # YOLOv3: good but unassigned predictions are not background
                for b, t in enumerate(targets):
                    if len(t["boxes"]):
                        best = box_iou(boxes[b].reshape(-1, 4), t["boxes"]).max(1).values
                        weight[b].view(-1)[best > self.ignore_thresh] = 0.0
            if len(bi):
                pred = boxes[bi, ai, row, col]
                box_sum = box_sum + loss_fn(pred, gt, reduction="sum")
                onehot = F.one_hot(lab - 1, self.num_classes).to(raw)
                cls_sum = cls_sum + F.binary_cross_entropy_with_logits(
                    raw[bi, ai, row, col, 5:], onehot, reduction="sum")
                obj_target[bi, ai, row, col] = 1.0
                weight[bi, ai, row, col] = 1.0
                npos += len(bi)
            obj_sum = obj_sum + (F.binary_cross_entropy_with_logits(
                raw[..., 4], obj_target, reduction="none") * weight).sum()
        n = max(npos, 1)
        return {"loss_box": self.box_weight * box_sum / n, "loss_obj": obj_sum / n,
                "loss_cls": cls_sum / n}

    # -- inference --------------------------------------------------------------------------
    def decode(self, outputs: list[Tensor], batch: ImageBatch) -> tuple[Tensor, Tensor]:
        boxes, scores = [], []
        for lvl, raw in enumerate(outputs):
            b = len(raw)
            boxes.append(self.decode_level(raw, lvl).reshape(b, -1, 4))
            scores.append((raw[..., 4:5].sigmoid() * raw[..., 5:].sigmoid()).reshape(b, -1, self.num_classes))
        return torch.cat(boxes, 1), torch.cat(scores, 1)


def build_yolo(classes: list[str], img_size: int = 128, backbone: str = "alexnet_small",
               weights: str | None = None, backbone_width: int | None = None,
               features: list[str] = ("c3", "c4", "c5"), neck_channels: int = 64,
               anchors_per_level: int = 3, anchors: list[list[float]] | None = None,
               anchor_iou_thresh: float | None = None, ignore_thresh: float = 0.5,
               box_loss: str = "ciou", box_weight: float = 5.0, box_param: str = "v2",
               neighbor_cells: bool = False, score_thresh: float = 0.01,
               nms_thresh: float = 0.5, detections_per_img: int = 100) -> Yolo:
    """Anchor-based YOLO (module docstring).

    Args:
        classes: foreground class names (labels 1..C).
        img_size: the longer side of the letterboxed image (aspect kept).
        backbone, weights, backbone_width: the CNN (``alexnet_small``, ``resnet18``, ``simple``),
            optional pretrained weights, base width of ``alexnet_small``/``simple``.
        features: the backbone maps the FPN/PAN neck reads, shallow to deep (one head each).
        neck_channels: width of the neck and heads.
        anchors_per_level: base boxes per cell and level (3 in YOLOv3).
        anchors: ``len(features) * anchors_per_level`` ``[w, h]`` pairs in network pixels, small
            to large; ``None`` = k-means on the training boxes when training starts.
        anchor_iou_thresh: also assign an object to every anchor of shape IoU above this
            (``None``: the best anchor only, as YOLOv3).
        ignore_thresh: unassigned predictions above this IoU with an object take no objectness loss.
        box_loss, box_weight: ``ciou`` | ``diou`` | ``giou``, and its weight.
        box_param: ``"v2"`` (centre ``sigmoid + cell``, size ``anchor * exp``) or ``"v5"``
            (Ultralytics YOLOv5: centre ``2 sigmoid - 0.5 + cell``, size ``anchor * (2 sigmoid)^2``).
        neighbor_cells: YOLOv5's extra positives: an object also goes to the neighbouring cell
            nearest its centre along each axis (needs ``box_param="v5"``), three cells in all.
        score_thresh, nms_thresh, detections_per_img: inference post-processing.
    """
    bb = build_backbone(backbone, weights=weights, width=backbone_width)
    features = list(features)
    missing = [f for f in features if f not in bb.channels]
    if missing or not features:
        raise ValueError(f"yolo: features {features}: the backbone gives {', '.join(bb.names)}")
    k = len(features) * anchors_per_level
    if anchors is not None:
        init = torch.tensor(anchors, dtype=torch.float32)
        if init.shape != (k, 2) or (init <= 0).any():
            raise ValueError(f"yolo: anchors: need {k} positive [w, h] pairs "
                             f"({len(features)} levels x {anchors_per_level}), got {anchors}")
        init = init[init.prod(1).argsort()]
    else:
        ref = torch.tensor(YOLOV3_ANCHORS, dtype=torch.float32) * (img_size / 416)
        init = ref[torch.linspace(0, len(ref) - 1, k).round().long()]
    return Yolo(classes, bb, features, img_size, neck_channels,
                init.view(len(features), anchors_per_level, 2), fit_anchors=anchors is None,
                anchor_iou_thresh=anchor_iou_thresh, ignore_thresh=ignore_thresh,
                box_loss=box_loss, box_weight=box_weight, box_param=box_param,
                neighbor_cells=neighbor_cells, score_thresh=score_thresh,
                nms_thresh=nms_thresh, detections_per_img=detections_per_img)
