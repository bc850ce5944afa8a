"""Region Proposal Network: the proposal generator of Faster R-CNN.

Ren et al., "Faster R-CNN: Towards Real-Time Object Detection with Region Proposal Networks",
NeurIPS 2015 (https://arxiv.org/abs/1506.01497), sec. 3.1: a small network slides over the shared
feature maps -- a 3x3 convolution, then two sibling 1x1 convolutions giving, for each of the ``k``
anchors of a position (:mod:`~detseg.models.detection.anchors`), an object/not-object logit and four
box deltas. Training (sec. 3.1.2): an anchor is an object when its IoU with a ground-truth box is
``>= 0.7`` or it is some box's best anchor, background below ``0.3``, ignored in between; each
image contributes 256 anchors, up to half of them objects; the losses are binary cross-entropy
(``loss_objectness``) and smooth L1 on the positives' deltas (``loss_rpn_box``). At inference (and
to feed the box head in training) the decoded boxes are clipped, tiny ones dropped, the
``pre_nms_top_n`` best per level kept, NMS at 0.7 applied per level, and the ``post_nms_top_n``
best per image returned (separate counts for training and testing).

The parts are detseg's shared :class:`~detseg.models.detection.matcher.Matcher`,
:class:`~detseg.models.detection.sampler.BalancedSampler` and
:class:`~detseg.models.detection.box_coder.BoxCoder` (weights 1, 1, 1, 1). The arithmetic
follows torchvision's ``RegionProposalNetwork`` (``models/detection/rpn.py``) step by step --
including the random draws of the sampler, image by image -- so that a torchvision state dict gives
the same proposals and, with the same seed, the same losses; smooth L1 uses ``beta = 1/9`` and both
losses are normalised by the number of sampled anchors of the whole batch.

The RPN is a proposal generator of :class:`~detseg.models.detection.two_stage.TwoStageDetector`
with ``frame = "batch"``: it is called as ``rpn(batch, features, targets)`` with the
:class:`~detseg.models.transform.ImageBatch` (padded tensor and resized sizes) and the targets in
the resized frame, and returns ``(list[Tensor[N_i, 4]] proposals, losses)``; losses are computed
whenever targets are given, in train and eval mode.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import batched_nms, box_iou, clip_boxes_to_image, remove_small_boxes

from detseg.models.detection.anchors import AnchorGenerator
from detseg.models.detection.box_coder import BoxCoder
from detseg.models.detection.matcher import IGNORE, NEGATIVE, POSITIVE, Matcher
from detseg.models.detection.sampler import BalancedSampler
from detseg.models.transform import ImageBatch


class RPNHead(nn.Module):
    """3x3 conv + ReLU shared by all levels, then 1x1 convs to ``A`` logits and ``4A`` deltas.

    Initialised from N(0, 0.01^2) with zero biases (the paper, sec. 3.1.3).
    """

    def __init__(self, in_channels: int, num_anchors: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, in_channels, kernel_size=3, padding=1)
        self.cls_logits = nn.Conv2d(in_channels, num_anchors, kernel_size=1)
        self.bbox_pred = nn.Conv2d(in_channels, num_anchors * 4, kernel_size=1)
        for layer in (self.conv, self.cls_logits, self.bbox_pred):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    def forward(self, features: Sequence[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """Per level ``(Tensor[B, A, H, W] logits, Tensor[B, 4A, H, W] deltas)``."""
        logits, deltas = [], []
        for x in features:
            t = F.relu(self.conv(x))
            logits.append(self.cls_logits(t))
            deltas.append(self.bbox_pred(t))
        return logits, deltas


def _flatten(x: Tensor, c: int) -> Tensor:
    """``Tensor[B, A * c, H, W]`` -> ``Tensor[B, H * W * A, c]`` (the anchors' order)."""
    b, _, h, w = x.shape
    return x.view(b, -1, c, h, w).permute(0, 3, 4, 1, 2).reshape(b, -1, c)


class RPN(nn.Module):
    """The region proposal network (module docstring).

    Args:
        in_channels: channels of every feature level (an FPN's 256).
        anchor_generator: the anchors; one level per feature map the RPN reads.
        features: names of the backbone maps to read, in level order (default: all of them).
        fg_iou, bg_iou: IoU ``>= fg_iou`` object, ``< bg_iou`` background (0.7, 0.3).
        batch_size_per_image, positive_fraction: the sampled anchors (256, half objects).
        pre_nms_top_n, post_nms_top_n: ``{"training": n, "testing": n}``; pre-NMS counts are per
            level, post-NMS counts per image.
        nms_thresh: NMS IoU between proposals (0.7); score_thresh: minimum objectness probability.
        min_size: proposals narrower or lower than this (pixels) are dropped.
    """

    frame = "batch"

    def __init__(self, in_channels: int, anchor_generator: AnchorGenerator,
                 features: Sequence[str] | None = None, fg_iou: float = 0.7, bg_iou: float = 0.3,
                 batch_size_per_image: int = 256, positive_fraction: float = 0.5,
                 pre_nms_top_n: dict[str, int] | None = None,
                 post_nms_top_n: dict[str, int] | None = None, nms_thresh: float = 0.7,
                 score_thresh: float = 0.0, min_size: float = 1e-3) -> None:
        super().__init__()
        self.anchor_generator = anchor_generator
        self.head = RPNHead(in_channels, anchor_generator.num_anchors_per_location()[0])
        if len(set(anchor_generator.num_anchors_per_location())) != 1:
            raise ValueError("RPN: every level needs the same number of anchors per position "
                             "(one shared head)")
        self.features = list(features) if features is not None else None
        self.matcher = Matcher([bg_iou, fg_iou], [NEGATIVE, IGNORE, POSITIVE],
                               allow_low_quality_matches=True)
        self.sampler = BalancedSampler(batch_size_per_image, positive_fraction)
        self.box_coder = BoxCoder((1.0, 1.0, 1.0, 1.0))
        self.pre_nms_top_n = dict(pre_nms_top_n or {"training": 2000, "testing": 1000})
        self.post_nms_top_n = dict(post_nms_top_n or {"training": 2000, "testing": 1000})
        self.nms_thresh, self.score_thresh = float(nms_thresh), float(score_thresh)
        self.min_size = float(min_size)

    def _mode(self) -> str:
        return "training" if self.training else "testing"

    def forward(self, batch: ImageBatch, features: dict[str, Tensor],
                targets: list[dict[str, Tensor]] | None = None) -> tuple[list[Tensor], dict[str, Tensor]]:
        """``(proposals list[Tensor[N_i, 4]] xyxy in the resized frame, losses)``; losses
        ``loss_objectness`` and ``loss_rpn_box`` when ``targets`` (resized frame) are given."""
        if not isinstance(features, dict) or not features:
            raise ValueError("RPN: needs the backbone's feature maps (a non-empty dict)")
        names = self.features or list(features)
        missing = [n for n in names if n not in features]
        if missing:
            raise ValueError(f"RPN: no feature {missing[0]!r} (the backbone gives: {', '.join(features)})")
        maps = [features[n] for n in names]
        logits, deltas = self.head(maps)
        boxes, (objectness, box_deltas, anchors) = self.proposals(batch, logits, deltas)
        losses: dict[str, Tensor] = {}
        if targets is not None:
            losses = self.loss(objectness, box_deltas, anchors, targets)
        return boxes, losses

    def proposals(self, batch: ImageBatch, logits: Sequence[Tensor],
                  deltas: Sequence[Tensor]) -> tuple[list[Tensor], tuple[Tensor, Tensor, Tensor]]:
        """The head's per-level outputs (:meth:`RPNHead.forward`) -> ``(proposals per image,
        (objectness Tensor[B, A_total], deltas Tensor[B * A_total, 4], anchors Tensor[A_total, 4]))``:
        anchors, decoding and :meth:`filter_proposals` (an exported file's head outputs go
        through here too)."""
        # The anchors depend only on the map sizes (and dtype): the logits have the maps' sizes.
        anchors = self.anchor_generator(tuple(batch.tensor.shape[-2:]), logits)
        per_level = [len(a) for a in anchors]
        anchors = torch.cat(anchors)
        b = len(batch.image_sizes)
        objectness = torch.cat([_flatten(x, 1) for x in logits], dim=1).reshape(b, -1)
        box_deltas = torch.cat([_flatten(x, 4) for x in deltas], dim=1).reshape(-1, 4)
        # Faster R-CNN does not backpropagate through the proposals' coordinates.
        proposals = self.box_coder.decode(box_deltas.detach(), anchors.repeat(b, 1)).view(b, -1, 4)
        boxes = self.filter_proposals(proposals, objectness.detach(), batch.image_sizes, per_level)
        return boxes, (objectness, box_deltas, anchors)

    def filter_proposals(self, proposals: Tensor, objectness: Tensor,
                         image_sizes: Sequence[tuple[int, int]], per_level: Sequence[int]) -> list[Tensor]:
        """Top ``pre_nms_top_n`` per level, clip, drop tiny/low-score boxes, per-level NMS, top
        ``post_nms_top_n``; ``proposals Tensor[B, A_total, 4]``, ``objectness Tensor[B, A_total]``."""
        b = proposals.shape[0]
        levels = torch.cat([torch.full((n,), i, dtype=torch.int64, device=proposals.device)
                            for i, n in enumerate(per_level)])[None].expand_as(objectness)
        top_idx, offset = [], 0
        for ob in objectness.split(list(per_level), dim=1):
            k = min(self.pre_nms_top_n[self._mode()], ob.shape[1])
            top_idx.append(ob.topk(k, dim=1)[1] + offset)
            offset += ob.shape[1]
        top_idx = torch.cat(top_idx, dim=1)
        rows = torch.arange(b, device=proposals.device)[:, None]
        objectness, levels, proposals = objectness[rows, top_idx], levels[rows, top_idx], proposals[rows, top_idx]
        probs = torch.sigmoid(objectness)
        out = []
        for boxes, scores, lvl, size in zip(proposals, probs, levels, image_sizes):
            boxes = clip_boxes_to_image(boxes, tuple(size))
            keep = remove_small_boxes(boxes, self.min_size)
            boxes, scores, lvl = boxes[keep], scores[keep], lvl[keep]
            keep = torch.where(scores >= self.score_thresh)[0]
            boxes, scores, lvl = boxes[keep], scores[keep], lvl[keep]
            keep = batched_nms(boxes, scores, lvl, self.nms_thresh)[: self.post_nms_top_n[self._mode()]]
            out.append(boxes[keep])
        return out

    @torch.no_grad()
    def assign(self, anchors: Tensor, targets: list[dict[str, Tensor]]) -> tuple[list[Tensor], list[Tensor]]:
        """Per image ``(labels Tensor[A] float: 1 object, 0 background, -1 ignored,
        regression targets Tensor[A, 4])`` by the 0.7 / 0.3 rule."""
        labels, reg = [], []
        for t in targets:
            gt = t["boxes"].to(anchors)
            if len(gt) == 0:
                labels.append(anchors.new_zeros(len(anchors)))
                reg.append(anchors.new_zeros((len(anchors), 4)))
                continue
            matches, quality = self.matcher(box_iou(gt, anchors))
            labels.append(quality.to(anchors.dtype))
            reg.append(self.box_coder.encode(gt[matches], anchors))
        return labels, reg

    def loss(self, objectness: Tensor, box_deltas: Tensor, anchors: Tensor,
             targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        """``loss_objectness`` (BCE) and ``loss_rpn_box`` (smooth L1, beta 1/9, positives) over the
        sampled anchors of every image, both divided by the batch's sampled-anchor count."""
        labels, reg = self.assign(anchors, targets)
        pos, neg = [], []
        for lab in labels:  # image by image: the draws of torchvision's sampler
            p, q = self.sampler.masks(lab.to(torch.int64))
            pos.append(p)
            neg.append(q)
        pos_idx = torch.where(torch.cat(pos))[0]
        neg_idx = torch.where(torch.cat(neg))[0]
        idx = torch.cat([pos_idx, neg_idx])
        objectness = objectness.flatten()
        labels_all, reg_all = torch.cat(labels), torch.cat(reg)
        if idx.numel() == 0:  # nothing sampled: zero losses that still reach the head
            zero = objectness.sum() * 0.0 + box_deltas.sum() * 0.0
            return {"loss_objectness": zero, "loss_rpn_box": zero}
        box_loss = F.smooth_l1_loss(box_deltas[pos_idx], reg_all[pos_idx], beta=1 / 9,
                                    reduction="sum") / idx.numel()
        obj_loss = F.binary_cross_entropy_with_logits(objectness[idx], labels_all[idx])
        return {"loss_objectness": obj_loss, "loss_rpn_box": box_loss}
