"""SSD: Liu, Anguelov, Erhan, Szegedy, Reed, Fu, Berg, "SSD: Single Shot MultiBox Detector",
ECCV 2016 (https://arxiv.org/abs/1512.02325).

Default boxes tile several feature maps of decreasing resolution (the backbone's ``c3, c4, c5``
plus ``extra_levels`` extra stride-2 blocks, as the paper's conv8_2 ... conv11_2): at each
location of map ``k`` (of ``m``) there are boxes of scale ``s_k`` for every aspect ratio
``a in {1, 2, 1/2, 3, 1/3}`` configured for that map, plus one of scale ``sqrt(s_k s_{k+1})``
(sec. 2.2), with ``s_k`` linear from ``min_scale`` to ``max_scale``. torchvision's
``DefaultBoxGenerator`` makes them and its ``SSDHead`` (3x3 convs per map) predicts, for each
default box, ``C + 1`` class scores (0 = background) and 4 offsets.

Training (sec. 2.2): each ground-truth box is matched to its best default box, and every default
box to any ground truth with IoU >= 0.5. Offsets are encoded against the default box with the
variances ``(0.1, 0.1, 0.2, 0.2)`` (the :class:`BoxCoder` weights ``10, 10, 5, 5``). Hard negative
mining keeps, per image, the negatives with the highest classification loss, at most 3 per
positive (:func:`hard_negative_mask`). The loss is ``(CE over positives and kept negatives +
smooth L1 over positives) / N``, ``N`` the number of positives in the batch. An image with no object
keeps ``neg_pos_ratio`` hardest negatives (as if it had one positive) so it still teaches
background, and its box loss is 0.

Inference: softmax, per-class score threshold, top-k, per-class NMS at 0.45, as in the paper.
Images are warped to an ``img_size`` square (the paper's SSD300 input). Departures: BatchNorm
backbones trained from scratch instead of VGG16 with L2-normalised conv4_3; the paper's data
augmentation is the trainer's (flip, scale jitter, colour).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.ssd import SSDHead
from torchvision.ops import box_iou

from detseg.models.backbones import build_backbone
from detseg.models.detection.box_coder import BoxCoder
from detseg.models.detection.matcher import NEGATIVE, POSITIVE, Matcher
from detseg.models.detection.one_stage import OneStageDetector
from detseg.models.transform import ImageBatch


def hard_negative_mask(cls_loss: Tensor, positive: Tensor, ratio: float = 3.0,
                       min_positives: int = 0) -> Tensor:
    """SSD's hard negative mining: per image, the negatives of highest loss, ``ratio`` per positive.

    Args:
        cls_loss: ``Tensor[B, A]`` per-default-box classification loss.
        positive: ``Tensor[B, A]`` bool, the matched default boxes.
        ratio: negatives kept per positive (3 in the paper).
        min_positives: count an image as having at least this many positives (so an image
            without objects still keeps ``ratio * min_positives`` negatives).

    Returns:
        ``Tensor[B, A]`` bool, the kept negatives (never a positive); at most
        ``ratio * max(positives, min_positives)`` per image, fewer when the image has fewer negatives.
    """
    num_neg = (ratio * positive.sum(1).clamp(min=min_positives)).long()  # [B]
    loss = cls_loss.detach().masked_fill(positive, -float("inf"))
    rank = loss.argsort(1, descending=True).argsort(1)  # rank of each box's loss in its image
    return (rank < num_neg[:, None]) & ~positive


class ExtraBlock(nn.Sequential):
    """1x1 channel reduction then a 3x3 stride-2 conv (the paper's conv8_2 ... conv11_2).

    No BatchNorm, as in the paper: the last maps are 1 x 1, where a batch of one image has a
    single value per channel and batch statistics do not exist.
    """

    def __init__(self, cin: int, cout: int) -> None:
        mid = max(cout // 2, 8)
        super().__init__(nn.Conv2d(cin, mid, 1), nn.ReLU(inplace=True),
                         nn.Conv2d(mid, cout, 3, 2, 1), nn.ReLU(inplace=True))


class SSD(OneStageDetector):
    """SSD (module docstring).

    Args:
        classes: foreground class names.
        backbone, features: the CNN and the maps (shallow to deep) default boxes tile.
        extras: the extra blocks after the last feature.
        box_generator: torchvision's ``DefaultBoxGenerator`` for all maps.
        head: torchvision's ``SSDHead`` over ``C + 1`` classes.
        img_size: the square side.
        match_iou, neg_pos_ratio: matching threshold (0.5) and hard-negative ratio (3).
    """

    def __init__(self, classes: list[str], backbone, features: list[str], extras: nn.ModuleList,
                 box_generator: DefaultBoxGenerator, head: SSDHead, img_size: int,
                 match_iou: float = 0.5, neg_pos_ratio: float = 3.0, **post) -> None:
        super().__init__(classes, backbone, img_size, keep_aspect=False, name="ssd", **post)
        self.features, self.extras = list(features), extras
        self.box_generator, self.head = box_generator, head
        self.matcher = Matcher([match_iou], [NEGATIVE, POSITIVE])
        self.neg_pos_ratio = float(neg_pos_ratio)
        self.box_coder = BoxCoder((10.0, 10.0, 5.0, 5.0))

    def default_boxes(self, tensor: Tensor, maps: list[Tensor]) -> Tensor:
        """``Tensor[A, 4]`` xyxy pixels of the padded input: every map's default boxes, map by
        map, location-major, the ``SSDHead`` output order."""
        images = ImageList(tensor, [tuple(tensor.shape[-2:])])
        return self.box_generator(images, maps)[0]

    def head_outputs(self, x: Tensor) -> dict[str, Tensor]:
        feats = self.backbone(x)
        maps = [feats[f] for f in self.features]
        for block in self.extras:
            maps.append(block(maps[-1]))
        out = self.head(maps)
        return {"logits": out["cls_logits"].float(), "deltas": out["bbox_regression"].float(),
                "anchors": self.default_boxes(x, maps).float()}

    @torch.no_grad()
    def match(self, anchors: Tensor, targets: list[dict[str, Tensor]]) -> tuple[Tensor, Tensor]:
        """``(labels Tensor[B, A] with 0 = background, regression targets Tensor[B, A, 4])``."""
        labels, reg = [], []
        for t in targets:
            gt = t["boxes"]
            if len(gt) == 0:
                labels.append(torch.zeros(len(anchors), dtype=torch.long, device=anchors.device))
                reg.append(anchors.new_zeros(len(anchors), 4))
                continue
            iou = box_iou(gt, anchors)
            matches, quality = self.matcher(iou)
            # Each object's best default box is its own, whatever its IoU (the paper's first rule).
            best = iou.argmax(1)
            matches[best] = torch.arange(len(gt), device=gt.device)
            quality[best] = POSITIVE
            lab = torch.where(quality == POSITIVE, t["labels"][matches], 0)
            labels.append(lab)
            reg.append(self.box_coder.encode(gt[matches], anchors))
        return torch.stack(labels), torch.stack(reg)

    def loss(self, outputs: dict[str, Tensor], targets: list[dict[str, Tensor]],
             batch: ImageBatch) -> dict[str, Tensor]:
        labels, reg = self.match(outputs["anchors"], targets)
        logits, deltas = outputs["logits"], outputs["deltas"]
        positive = labels > 0
        n = max(int(positive.sum()), 1)
        ce = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="none").view_as(labels)
        negative = hard_negative_mask(ce, positive, self.neg_pos_ratio, min_positives=1)
        loss_cls = (ce * (positive | negative)).sum() / n
        loss_box = F.smooth_l1_loss(deltas[positive], reg[positive], beta=1.0, reduction="sum") / n
        return {"loss_cls": loss_cls, "loss_box": loss_box + deltas.sum() * 0.0}

    def decode(self, outputs: dict[str, Tensor], batch: ImageBatch) -> tuple[Tensor, Tensor]:
        deltas, anchors = outputs["deltas"], outputs["anchors"]
        b, a = deltas.shape[:2]
        boxes = self.box_coder.decode(deltas.reshape(-1, 4), anchors.repeat(b, 1)).view(b, a, 4)
        return boxes, outputs["logits"].softmax(-1)[..., 1:]


def ssd_scales(num_maps: int, min_scale: float, max_scale: float) -> list[float]:
    """``s_k = s_min + (s_max - s_min)(k - 1)/(m - 1)`` for ``k = 1..m``, then ``1.0`` (the scale
    ``sqrt(s_m s_{m+1})`` of the last map's extra square box needs an ``s_{m+1}``)."""
    if num_maps == 1:
        return [min_scale, max_scale]
    step = (max_scale - min_scale) / (num_maps - 1)
    return [min_scale + step * k for k in range(num_maps)] + [1.0]


def build_ssd(classes: list[str], img_size: int = 128, backbone: str = "alexnet_small",
              weights: str | None = None, backbone_width: int | None = None,
              features: list[str] = ("c3", "c4", "c5"), extra_levels: int = 2,
              extra_channels: int = 128, aspect_ratios: list[list[int]] | None = None,
              min_scale: float = 0.1, max_scale: float = 0.9, match_iou: float = 0.5,
              neg_pos_ratio: float = 3.0, score_thresh: float = 0.01, nms_thresh: float = 0.45,
              detections_per_img: int = 100) -> SSD:
    """SSD (module docstring).

    Args:
        classes: foreground class names (labels 1..C).
        img_size: the square side images are warped to (300 in SSD300).
        backbone, weights, backbone_width: the CNN (``alexnet_small``, ``resnet18``, ``simple``),
            optional pretrained weights, base width of ``alexnet_small``/``simple``.
        features: backbone maps with default boxes, shallow to deep.
        extra_levels, extra_channels: stride-2 blocks after the last feature, and their width.
        aspect_ratios: per map, the ratios besides 1 (each ``r`` gives ``r`` and ``1/r``); default
            ``[2]`` on the first and last two maps, ``[2, 3]`` between (the paper's SSD300 layout).
        min_scale, max_scale: ``s_min``/``s_max`` of the default-box scales (fractions of the side).
        match_iou, neg_pos_ratio: positive IoU (0.5) and negatives per positive (3).
        score_thresh, nms_thresh, detections_per_img: inference post-processing.
    """
    bb = build_backbone(backbone, weights=weights, width=backbone_width)
    features = list(features)
    if not features or any(f not in bb.channels for f in features):
        raise ValueError(f"ssd: features {features}: the backbone gives {', '.join(bb.names)}")
    channels = [bb.channels[f] for f in features]
    extras = nn.ModuleList()
    for _ in range(int(extra_levels)):
        extras.append(ExtraBlock(channels[-1], extra_channels))
        channels.append(extra_channels)
    m = len(channels)
    if aspect_ratios is None:
        aspect_ratios = [[2] if k == 0 or k >= m - 2 else [2, 3] for k in range(m)]
    if len(aspect_ratios) != m:
        raise ValueError(f"ssd: aspect_ratios: need one list per feature map ({m}: {len(features)} "
                         f"features + {extra_levels} extra levels), got {len(aspect_ratios)}")
    generator = DefaultBoxGenerator([list(r) for r in aspect_ratios],
                                    scales=ssd_scales(m, min_scale, max_scale))
    head = SSDHead(channels, generator.num_anchors_per_location(), len(classes) + 1)
    return SSD(classes, bb, features, extras, generator, head, img_size, match_iou, neg_pos_ratio,
               score_thresh=score_thresh, nms_thresh=nms_thresh, detections_per_img=detections_per_img)
