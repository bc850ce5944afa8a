"""The two-stage detector meta-architecture: R-CNN, Fast R-CNN and sliding windows as part choices.

Girshick et al., "Rich feature hierarchies ..." (R-CNN, CVPR 2014, https://arxiv.org/abs/1311.2524)
and Girshick, "Fast R-CNN" (ICCV 2015, https://arxiv.org/abs/1504.08083), written like
torchvision's ``GeneralizedRCNN`` + ``RoIHeads`` (``models/detection/generalized_rcnn.py``,
``roi_heads.py``) but returning detseg's :class:`~detseg.structures.ModelOutput` in both modes::

    images -> resize (longer side = img_size), normalise, pad -> backbone (or None: R-CNN)
           -> proposals (on the resized [0, 1] images) -> RoI features -> box head
           -> training: proposals + ground truth, match, sample, loss_cls (CE) + loss_box (smooth L1)
           -> predictions: decode class-specific deltas, clip, score threshold, per-class NMS,
              top ``detections_per_img``, boxes mapped back to each original image.

Proposal generators are called on the resized (unpadded, un-normalised) images with targets scaled
to them, so every generator -- windows, selective search, a file, the ground truth, an RPN -- works
in the frame the RoI extractor sees. Box regression uses the Fast R-CNN weights ``(10, 10, 5, 5)``
and the paper's smooth L1 (``beta = 1``) on the ground-truth class's deltas of positives only,
summed and divided by the number of sampled RoIs (torchvision's normalisation), so an image with
no objects gives ``loss_box = 0`` exactly.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import batched_nms, box_iou, clip_boxes_to_image, remove_small_boxes

from detseg.models.detection.box_coder import BoxCoder
from detseg.models.detection.matcher import IGNORE, NEGATIVE, POSITIVE, Matcher
from detseg.models.detection.sampler import BalancedSampler
from detseg.models.base import DetsegModel
from detseg.models.transform import (IMAGENET_MEAN, IMAGENET_STD, ImageBatch, check_images,
                                     normalize, pad_batch, rescale_boxes, resize_image,
                                     resized_size)
from detseg.structures import ModelOutput


class TwoStageDetector(DetsegModel):
    """Proposals -> RoI features -> box head (see the module docstring).

    Args:
        classes: foreground class names (labels 1..C; 0 is background).
        backbone: runs once on the batch (Fast R-CNN), or ``None`` (R-CNN: the CNN is inside
            the :class:`~detseg.models.detection.roi.WarpCrops` extractor).
        proposal_generator: ``(images, features, targets) -> (list[Tensor[N, 4]], losses)``.
        roi_extractor: ``(features, image tensor, proposals) -> Tensor[R, ...]``.
        box_head: ``Tensor[R, ...] -> (logits [R, C+1], deltas [R, 4C] or None)``; at inference
            its ``predict`` (if any) gives the per-class scores (R-CNN's SVMs, :meth:`score_regions`).
        img_size: the longer side of the resized image (aspect kept).
        matcher, sampler, box_coder: training parts (defaults: Fast R-CNN's ``>= 0.5`` object,
            ``[0.1, 0.5)`` background; 64 RoIs per image, 25 % foreground; weights 10, 10, 5, 5).
        score_thresh, nms_thresh, detections_per_img: inference post-processing.
        append_gt: add the ground-truth boxes to the training proposals (Fast R-CNN, torchvision).
        smooth_l1_beta: the smooth L1 transition point (1.0 in the paper).
        image_transform: ``list[Tensor[3, H, W]] -> ImageBatch`` replacing the default resize
            (longer side = ``img_size``), e.g. :class:`~detseg.models.transform.MinMaxResize`,
            torchvision's ``GeneralizedRCNNTransform`` (Faster / Mask / Keypoint R-CNN).
        instance_heads: per-RoI heads after the box head, by name (``{"mask": MaskHead(...)}``,
            ``{"keypoint": KeypointHead(...)}``); each has ``loss(features, batch, rois, labels,
            matched, targets) -> dict`` on the sampled positives (``matched``: each RoI's index
            into its image's ground truth) and ``predict(features, batch,
            detections) -> list[dict]`` adding its keys to each image's predictions.
    """

    task = "detection"

    def __init__(self, classes: list[str], backbone: nn.Module | None, proposal_generator: nn.Module,
                 roi_extractor: nn.Module, box_head: nn.Module, img_size: int,
                 matcher: Matcher | None = None, sampler: BalancedSampler | None = None,
                 box_coder: BoxCoder | None = None, score_thresh: float = 0.05,
                 nms_thresh: float = 0.5, detections_per_img: int = 100, append_gt: bool = True,
                 smooth_l1_beta: float = 1.0, image_transform: Callable[[list[Tensor]], ImageBatch] | None = None,
                 instance_heads: dict[str, nn.Module] | None = None) -> None:
        super().__init__(classes)
        self.backbone = backbone
        self.proposal_generator = proposal_generator
        self.roi_extractor = roi_extractor
        self.box_head = box_head
        self.img_size = int(img_size)
        self.matcher = matcher or Matcher([0.1, 0.5], [IGNORE, NEGATIVE, POSITIVE])
        self.sampler = sampler or BalancedSampler(64, 0.25)
        self.box_coder = box_coder or BoxCoder((10.0, 10.0, 5.0, 5.0))
        self.score_thresh, self.nms_thresh = float(score_thresh), float(nms_thresh)
        self.detections_per_img = int(detections_per_img)
        self.append_gt = append_gt
        self.smooth_l1_beta = float(smooth_l1_beta)
        self.stride = int(getattr(backbone, "out_stride", 1))
        self.image_transform = image_transform
        self.instance_heads = nn.ModuleDict(instance_heads or {})

    # -- the model-side transform --------------------------------------------------------------
    def transform(self, images: list[Tensor]) -> tuple[ImageBatch, list[Tensor]]:
        """``(normalised padded batch, resized [0, 1] images)``; longer side = ``img_size``."""
        check_images(images, "two_stage")
        if self.image_transform is not None:
            batch = self.image_transform(images)
            # the resized [0, 1] images, for proposal generators that read pixels
            mean = batch.tensor.new_tensor(IMAGENET_MEAN)[:, None, None]
            std = batch.tensor.new_tensor(IMAGENET_STD)[:, None, None]
            return batch, [x[:, :h, :w] * std + mean for x, (h, w) in zip(batch.tensor, batch.image_sizes)]
        original = [(int(im.shape[-2]), int(im.shape[-1])) for im in images]
        sizes = [resized_size(h, w, self.img_size, keep_aspect=True) for h, w in original]
        resized = [resize_image(im, s) for im, s in zip(images, sizes)]
        return ImageBatch(pad_batch([normalize(r) for r in resized], self.stride), sizes, original), resized

    def scale_targets(self, targets: list[dict[str, Tensor]], batch: ImageBatch) -> list[dict]:
        """Targets with ``boxes`` in the resized frame; degenerate boxes dropped (never matched)."""
        if len(targets) != len(batch.image_sizes):
            raise ValueError(f"two_stage: {len(batch.image_sizes)} images but {len(targets)} targets")
        out = []
        for i, (t, (h, w), (oh, ow)) in enumerate(zip(targets, batch.image_sizes, batch.original_sizes)):
            boxes, labels = _checked_boxes_labels(t, i, self.num_classes)
            boxes = boxes.to(self.device, torch.float32)
            boxes = boxes * boxes.new_tensor([w / ow, h / oh] * 2)
            ok = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
            extra = {k: torch.as_tensor(t[k])[ok.to(torch.as_tensor(t[k]).device)]
                     for k in ("masks", "keypoints") if k in t and len(t[k]) == len(ok)}
            out.append({**t, "boxes": boxes[ok], "labels": labels.to(self.device)[ok], **extra})
        return out

    # -- forward -------------------------------------------------------------------------------
    def forward(self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None,
                with_predictions: bool = False) -> ModelOutput:
        """See :class:`~detseg.models.base.DetsegModel`; losses ``loss_cls``, ``loss_box``."""
        batch, resized = self.transform(images)
        scaled = self.scale_targets(targets, batch) if targets is not None else None
        features = self.backbone(batch.tensor) if self.backbone is not None else None
        proposals, prop_losses = self.propose(images, resized, features, targets, scaled, batch)
        out = ModelOutput()
        if scaled is not None:
            rois, labels, reg, matched = self.sample_rois(proposals, scaled, return_matches=True)
            logits, deltas = self.box_head(self.roi_extractor(features, batch.tensor, rois))
            out.losses = {**prop_losses, **self.box_loss(logits, deltas, labels, reg)}
            for head in self.instance_heads.values():
                pos = [torch.nonzero(y > 0).flatten() for y in labels]
                out.losses.update(head.loss(features, batch, [r[p] for r, p in zip(rois, pos)],
                                            [y[p] for y, p in zip(labels, pos)],
                                            [m[p] for m, p in zip(matched, pos)], scaled))
        if with_predictions or not self.training:
            with torch.no_grad():  # predictions carry no gradient: R-CNN's 2000 crops need no graph
                scores, deltas = self.score_regions(self.roi_extractor(features, batch.tensor, proposals))
                dets = self.detect(scores, deltas, proposals, batch)
                extra = [head.predict(features, batch, dets) for head in self.instance_heads.values()]
            out.predictions = self.assemble(dets, extra, batch)
        return out

    def assemble(self, dets: list[dict[str, Tensor]], extra: list[list[dict[str, Tensor]]],
                 batch: ImageBatch) -> list[dict[str, Tensor]]:
        """The predictions: :meth:`detect`'s detections mapped to the original images, with each
        instance head's per-image outputs (``extra``: one list per head) merged in."""
        preds = [self._to_original(d, size, orig) for d, size, orig
                 in zip(dets, batch.image_sizes, batch.original_sizes)]
        for per_image in extra:
            for p, e in zip(preds, per_image):
                p.update(e)
        return preds

    def propose(self, images: list[Tensor], resized: list[Tensor], features: dict[str, Tensor] | None,
                targets: list[dict] | None, scaled: list[dict] | None,
                batch: ImageBatch) -> tuple[list[Tensor], dict[str, Tensor]]:
        """Proposals in the resized frame. A generator whose ``frame`` attribute is ``"original"``
        (precomputed boxes keyed by the original image) sees the images and targets as given and
        its boxes are scaled here."""
        device = batch.tensor.device
        if getattr(self.proposal_generator, "frame", "model") == "batch":  # the RPN: padded batch
            props, losses = self.proposal_generator(batch, features, scaled)
            return [p.to(device, torch.float32) for p in props], losses
        if getattr(self.proposal_generator, "frame", "model") != "original":
            props, losses = self.proposal_generator(resized, features, scaled)
            return [p.to(device, torch.float32) for p in props], losses
        props, losses = self.proposal_generator(images, features, targets)
        out = []
        for p, (h, w), (oh, ow) in zip(props, batch.image_sizes, batch.original_sizes):
            p = p.to(device, torch.float32)
            out.append(p * p.new_tensor([w / ow, h / oh] * 2))
        return out, losses

    # -- training ------------------------------------------------------------------------------
    @torch.no_grad()
    def sample_rois(self, proposals: list[Tensor], targets: list[dict],
                    return_matches: bool = False) -> tuple[list[Tensor], ...]:
        """Per image: proposals (+ gt), matched and sampled -> ``(rois [n, 4], labels [n] with 0 =
        background, regression targets [n, 4])``, plus each RoI's ground-truth index ``[n]`` with
        ``return_matches`` (for the mask and keypoint heads)."""
        rois, labels, reg, matched = [], [], [], []
        for props, t in zip(proposals, targets):
            gt, gt_labels = t["boxes"], t["labels"]
            if self.append_gt:
                props = torch.cat([props, gt])
            matches, quality = self.matcher(box_iou(gt, props))
            cls = gt_labels[matches] if len(gt) else torch.zeros_like(matches)
            cls = torch.where(quality == POSITIVE, cls, torch.where(quality == NEGATIVE, 0, -1))
            pos, neg = self.sampler(cls)
            idx = torch.cat([pos, neg])
            rois.append(props[idx])
            labels.append(cls[idx])
            matched.append(matches[idx])
            reg.append(self.box_coder.encode(gt[matches[idx]], props[idx]) if len(gt)
                       else props.new_zeros((len(idx), 4)))
        return (rois, labels, reg, matched) if return_matches else (rois, labels, reg)

    def box_loss(self, logits: Tensor, deltas: Tensor | None, labels: list[Tensor],
                 reg: list[Tensor]) -> dict[str, Tensor]:
        """``loss_cls`` (CE over C+1) and ``loss_box`` (smooth L1, positives' own-class deltas)."""
        y, t = torch.cat(labels), torch.cat(reg)
        if len(y) == 0:  # no RoI at all: zero losses that still reach every head parameter
            zero = logits.sum() * 0.0
            return {"loss_cls": zero, **({"loss_box": zero} if deltas is not None else {})}
        losses = {"loss_cls": F.cross_entropy(logits, y)}
        if deltas is not None:
            pos = torch.nonzero(y > 0).flatten()
            pred = deltas.view(len(y), -1, 4)[pos, y[pos] - 1]
            losses["loss_box"] = F.smooth_l1_loss(pred, t[pos], beta=self.smooth_l1_beta,
                                                  reduction="sum") / len(y)
        return losses

    # -- inference -----------------------------------------------------------------------------
    def score_regions(self, roi_features: Tensor) -> tuple[Tensor, Tensor | None]:
        """``(scores Tensor[R, C] per foreground class, deltas)``: the box head's ``predict``
        (softmax, or R-CNN's SVMs), or the softmax of a plain ``(logits, deltas)`` head."""
        if hasattr(self.box_head, "predict"):
            return self.box_head.predict(roi_features)
        logits, deltas = self.box_head(roi_features)
        return logits.float().softmax(-1)[:, 1:], deltas

    def postprocess(self, scores: Tensor, deltas: Tensor | None, proposals: list[Tensor],
                    batch: ImageBatch) -> list[dict[str, Tensor]]:
        """Per image: ``boxes`` xyxy original pixels, ``labels`` 1..C, ``scores``, best first.

        ``scores`` is ``Tensor[R, C]``, one column per foreground class (:meth:`score_regions`).
        """
        return [self._to_original(d, size, orig) for d, size, orig in
                zip(self.detect(scores, deltas, proposals, batch), batch.image_sizes,
                    batch.original_sizes)]

    def detect(self, scores: Tensor, deltas: Tensor | None, proposals: list[Tensor],
               batch: ImageBatch) -> list[dict[str, Tensor]]:
        """:meth:`postprocess` with ``boxes`` still in the resized frame (what the mask and
        keypoint heads pool from)."""
        c = self.num_classes
        counts = [len(p) for p in proposals]
        per_image = deltas.split(counts) if deltas is not None else [None] * len(counts)
        preds = []
        for sc, dl, props, (h, w) in zip(scores.split(counts), per_image, proposals,
                                           batch.image_sizes):
            boxes = (self.box_coder.decode(dl, props).view(-1, c, 4) if dl is not None
                     else props[:, None].expand(-1, c, 4))
            boxes = clip_boxes_to_image(boxes, (h, w)).reshape(-1, 4)
            scores = sc.reshape(-1)
            labels = torch.arange(1, c + 1, device=sc.device).repeat(len(props))
            keep = torch.nonzero(scores > self.score_thresh).flatten()
            keep = keep[remove_small_boxes(boxes[keep], 1e-2)]
            keep = keep[batched_nms(boxes[keep], scores[keep], labels[keep], self.nms_thresh)]
            keep = keep[: self.detections_per_img]
            preds.append({"boxes": boxes[keep], "labels": labels[keep], "scores": scores[keep]})
        return preds

    @staticmethod
    def _to_original(det: dict[str, Tensor], size: tuple[int, int],
                     original: tuple[int, int]) -> dict[str, Tensor]:
        """Detections of :meth:`detect` with boxes scaled to the original image, clipped."""
        return {**det, "boxes": rescale_boxes(det["boxes"], size, original)}


def _checked_boxes_labels(t: dict[str, Tensor], i: int, num_classes: int) -> tuple[Tensor, Tensor]:
    """``(boxes Tensor[N, 4], labels Tensor[N] int64)`` of ``targets[i]``, or a clear error."""
    for key in ("boxes", "labels"):
        if key not in t:
            raise ValueError(f"two_stage: targets[{i}]: no {key!r} (detection needs boxes and labels)")
    boxes, labels = torch.as_tensor(t["boxes"]), torch.as_tensor(t["labels"]).long()
    if boxes.numel() == 0:
        return boxes.new_zeros((0, 4), dtype=torch.float32), labels.reshape(0)
    if boxes.dim() != 2 or boxes.shape[1] != 4 or labels.shape != (len(boxes),):
        raise ValueError(f"two_stage: targets[{i}]: 'boxes' {tuple(boxes.shape)} and 'labels' "
                         f"{tuple(labels.shape)} must be Tensor[N, 4] xyxy and Tensor[N]")
    if len(labels) and (labels.min() < 1 or labels.max() > num_classes):
        raise ValueError(f"two_stage: targets[{i}]['labels']: values must be in 1..{num_classes} "
                         f"(1-based; 0 is background), got {labels.tolist()}")
    return boxes, labels
