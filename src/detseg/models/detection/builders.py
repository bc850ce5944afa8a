"""Zoo builders of the region-based detectors: each paper picks parts of :class:`TwoStageDetector`.

- :func:`build_sliding_window_det` -- the lecture's first try: classify every window of a
  multi-scale grid, with a background class, then per-class NMS (no box regression by default).
- :func:`build_rcnn` -- Girshick et al., "Rich feature hierarchies for accurate object detection
  and semantic segmentation", CVPR 2014 (https://arxiv.org/abs/1311.2524): selective search ->
  each region warped to ``crop_size`` px -> CNN -> softmax over C+1 classes and class-specific box
  regression. Training labels by IoU: ``>= 0.5`` object, ``[0.1, 0.5)`` background (the brief's
  band; the paper's fine-tuning used every ``< 0.5`` region as background), mini-batches of 128
  regions per image with 32 objects and 96 background (sec. 2.3). Differences from the paper: the
  softmax is the classifier during training; the paper's post-hoc per-class linear SVMs on the
  fc7 features, with hard-negative mining, are a second stage (:mod:`detseg.models.detection.svm`,
  ``detseg svm``) that the head then scores with (``scorer``). The box regressor is trained
  jointly instead of as ridge regression on pool5 features.
- :func:`build_fast_rcnn` -- Girshick, "Fast R-CNN", ICCV 2015 (https://arxiv.org/abs/1504.08083):
  the backbone once per image, truncated at ``feature`` (VGG16's conv5_3 at stride 16 by default:
  ``c4``), RoI pooling of each proposal, two FC layers, softmax + class-specific regressors,
  multi-task loss, 64 RoIs per image with 25 % objects, trained end to end.

Proposals are a string (JSON-serialisable, so checkpoints rebuild the model):
``"selective_search"`` (fast mode), ``"selective_search:quality"``, ``"sliding_window"``,
``"precomputed:PATH"`` (a ``.json``/``.npz`` of :mod:`~detseg.models.detection.proposals`, keyed by file,
image id or content of the original image) or ``"gt"``: the ground-truth boxes (plus, in training,
jittered copies and random background boxes) -- for tests and overfitting only; it needs targets.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from detseg.models.detection.box_coder import BoxCoder
from detseg.models.detection.box_head import BoxHead
from detseg.models.detection.matcher import IGNORE, NEGATIVE, POSITIVE, Matcher
from detseg.models.detection.proposals import (PrecomputedProposals, ProposalGenerator,
                                        SelectiveSearchProposals, SlidingWindowProposals,
                                        finalize_boxes)
from detseg.models.detection.roi import RoIAlign, RoIPool, WarpCrops
from detseg.models.detection.sampler import BalancedSampler
from detseg.models.detection.two_stage import TwoStageDetector
from detseg.models.backbones import Backbone, ResNetBackbone, StagedBackbone, build_backbone

PROPOSAL_METHODS = ("selective_search", "selective_search:quality", "sliding_window",
                    "precomputed:PATH", "gt")
ROI_KINDS = ("pool", "align")


class GroundTruthProposals(ProposalGenerator):
    """The ground-truth boxes as proposals (tests, overfitting, upper bounds); needs targets.

    In training it adds ``num_jitter`` jittered copies of each box (shifted and scaled by up to
    ``jitter`` of its size: regression targets that are not zero) and ``num_random`` random boxes
    (background for the classifier). In eval mode it returns the ground-truth boxes only.
    """

    def __init__(self, num_jitter: int = 2, jitter: float = 0.15, num_random: int = 16) -> None:
        super().__init__()
        self.num_jitter, self.jitter, self.num_random = int(num_jitter), float(jitter), int(num_random)

    def propose(self, image: Tensor, target: dict[str, Any] | None = None) -> Tensor:
        if target is None or "boxes" not in target:
            raise ValueError("proposals='gt': the ground-truth proposals need targets with 'boxes' "
                             "(pass targets, also in eval mode)")
        h, w = image.shape[-2:]
        gt = torch.as_tensor(target["boxes"], dtype=torch.float32).reshape(-1, 4).cpu()
        if not self.training:
            return finalize_boxes(gt, h, w)
        size = (gt[:, 2:] - gt[:, :2]).repeat(1, 2).repeat(self.num_jitter, 1)
        jittered = gt.repeat(self.num_jitter, 1) + (torch.rand_like(size) * 2 - 1) * self.jitter * size
        corner = torch.rand(self.num_random, 2) * torch.tensor([w, h])
        extent = (0.1 + 0.5 * torch.rand(self.num_random, 2)) * torch.tensor([w, h])
        random = torch.cat([corner, corner + extent], 1)
        return finalize_boxes(torch.cat([gt, jittered, random]), h, w)


def build_proposals(spec: str, num_proposals: int | None = 2000,
                    cache_dir: str | None = None) -> nn.Module:
    """The proposal generator a builder's ``proposals`` string names (see the module docstring)."""
    if spec == "selective_search" or spec.startswith("selective_search:"):
        mode = spec.partition(":")[2] or "fast"
        return SelectiveSearchProposals(mode=mode, max_proposals=num_proposals, cache_dir=cache_dir)
    if spec == "sliding_window":
        return SlidingWindowProposals(max_proposals=num_proposals)
    if spec.startswith("precomputed:") and spec.partition(":")[2]:
        gen = PrecomputedProposals(spec.partition(":")[2], max_proposals=num_proposals)
        gen.frame = "original"  # its boxes are in pixels of the image as stored (see two_stage)
        return gen
    if spec == "gt":
        return GroundTruthProposals()
    raise ValueError(f"proposals: unknown method {spec!r}; known: {', '.join(PROPOSAL_METHODS)}")


def truncate_backbone(backbone: Backbone, feature: str) -> Backbone:
    """Drop the stages after ``feature`` (Fast R-CNN pools VGG16's conv5_3, before its last pool).

    Works on :class:`StagedBackbone` (removes the later stages) and :class:`ResNetBackbone`
    (replaces the later layers with identities); the backbone's ``out_stride`` becomes ``feature``'s.
    """
    if feature not in backbone.channels:
        raise ValueError(f"feature {feature!r}: the backbone gives {', '.join(backbone.names)}")
    later = backbone.names[backbone.names.index(feature) + 1:]
    if isinstance(backbone, StagedBackbone):
        for name in later:
            del backbone.stages[name]
    elif isinstance(backbone, ResNetBackbone):
        for name in later:  # c{i} is layer{i-1}
            setattr(backbone, f"layer{int(name[1:]) - 1}", nn.Identity())
    elif later:
        raise ValueError(f"cannot truncate a {type(backbone).__name__} at {feature!r}")
    for name in later:
        del backbone.channels[name], backbone.strides[name]
    return backbone


def _matcher(fg_iou: float, bg_iou_low: float) -> Matcher:
    return Matcher([bg_iou_low, fg_iou], [IGNORE, NEGATIVE, POSITIVE])


def _backbone(name: str, weights: str | None, width: int | None) -> Backbone:
    return build_backbone(name, weights=weights, width=width)


def _crop_detector(classes: list[str], img_size: int, crop_size: int, context_pad: float,
                   backbone: str, weights: str | None, backbone_width: int | None,
                   proposal_gen: nn.Module, hidden: int, fc_layers: int, dropout: float,
                   box_regression: bool, matcher: Matcher, sampler: BalancedSampler,
                   svm: bool = False, scorer: str = "auto", **post: Any) -> TwoStageDetector:
    """Warped image crops -> CNN -> box head: R-CNN and the sliding-window detector."""
    roi = WarpCrops(_backbone(backbone, weights, backbone_width), crop_size=crop_size,
                    context_pad=context_pad)
    c, h, w = roi.out_shape
    head = BoxHead(c * h * w, len(classes), (hidden,) * fc_layers, dropout, box_regression,
                   svm=svm, scorer=scorer)
    return TwoStageDetector(classes, None, proposal_gen, roi, head, img_size, matcher=matcher,
                            sampler=sampler, **post)


def build_fast_rcnn(classes: list[str], img_size: int = 128, backbone: str = "alexnet_small",
                    weights: str | None = None, backbone_width: int | None = None,
                    feature: str = "c4", proposals: str = "selective_search",
                    num_proposals: int | None = 2000, proposal_cache: str | None = None,
                    roi: str = "pool", roi_size: int = 7, hidden: int = 256, fc_layers: int = 2,
                    dropout: float = 0.0, rois_per_image: int = 64, positive_fraction: float = 0.25,
                    fg_iou: float = 0.5, bg_iou_low: float = 0.1, score_thresh: float = 0.05,
                    nms_thresh: float = 0.5, detections_per_img: int = 100) -> TwoStageDetector:
    """Fast R-CNN (module docstring).

    Args:
        classes: foreground class names (labels 1..C).
        img_size: the longer image side the network sees (aspect kept).
        backbone, weights, backbone_width: the CNN (``alexnet_small``, ``resnet18``, ``simple``),
            optional pretrained weights, base width of ``alexnet_small``/``simple``.
        feature: the backbone map RoIs are pooled from; later stages are dropped.
        proposals, num_proposals, proposal_cache: the proposal method (module docstring), the
            most proposals per image, the selective-search cache folder.
        roi, roi_size: ``"pool"`` (RoI pooling) or ``"align"`` (RoIAlign), bins per side.
        hidden, fc_layers, dropout: the box head's fully connected layers.
        rois_per_image, positive_fraction: the training sample per image.
        fg_iou, bg_iou_low: object if IoU >= ``fg_iou``, background in ``[bg_iou_low, fg_iou)``.
        score_thresh, nms_thresh, detections_per_img: inference post-processing.
    """
    if roi not in ROI_KINDS:
        raise ValueError(f"fast_rcnn: roi must be one of {ROI_KINDS}, got {roi!r}")
    bb = truncate_backbone(_backbone(backbone, weights, backbone_width), feature)
    extractor = (RoIPool if roi == "pool" else RoIAlign)(feature, bb.channels[feature],
                                                         bb.strides[feature], roi_size)
    c, h, w = extractor.out_shape
    head = BoxHead(c * h * w, len(classes), (hidden,) * fc_layers, dropout)
    return TwoStageDetector(classes, bb, build_proposals(proposals, num_proposals, proposal_cache),
                            extractor, head, img_size, matcher=_matcher(fg_iou, bg_iou_low),
                            sampler=BalancedSampler(rois_per_image, positive_fraction),
                            box_coder=BoxCoder((10.0, 10.0, 5.0, 5.0)), score_thresh=score_thresh,
                            nms_thresh=nms_thresh, detections_per_img=detections_per_img)


def build_rcnn(classes: list[str], img_size: int = 128, crop_size: int = 112,
               context_pad: float = 8.0, backbone: str = "alexnet_small", weights: str | None = None,
               backbone_width: int | None = None, proposals: str = "selective_search",
               num_proposals: int | None = 2000, proposal_cache: str | None = None,
               hidden: int = 256, fc_layers: int = 2, dropout: float = 0.0,
               rois_per_image: int = 128, positive_fraction: float = 0.25, fg_iou: float = 0.5,
               bg_iou_low: float = 0.1, box_regression: bool = True, scorer: str = "auto",
               score_thresh: float = 0.05, nms_thresh: float = 0.3,
               detections_per_img: int = 100) -> TwoStageDetector:
    """R-CNN (module docstring): warped crops -> CNN -> softmax over C+1 + box regression.

    Args as :func:`build_fast_rcnn`, plus ``crop_size`` (the warped square, 227 in the paper),
    ``context_pad`` (pixels of context in the crop, 16 at 227 in the paper), ``box_regression``
    and ``scorer``: ``"auto"`` scores with the per-class SVMs once ``detseg svm`` has fitted them
    (until then the softmax), ``"softmax"`` or ``"svm"`` force one -- an override that keeps the
    weights, so one checkpoint compares both (``detseg eval CKPT -o scorer=softmax``).
    Defaults follow the paper: 128 regions per image, 32 objects / 96 background, NMS at 0.3.
    """
    return _crop_detector(classes, img_size, crop_size, context_pad, backbone, weights,
                          backbone_width, build_proposals(proposals, num_proposals, proposal_cache),
                          hidden, fc_layers, dropout, box_regression, _matcher(fg_iou, bg_iou_low),
                          BalancedSampler(rois_per_image, positive_fraction), svm=True, scorer=scorer,
                          score_thresh=score_thresh, nms_thresh=nms_thresh,
                          detections_per_img=detections_per_img)


def build_sliding_window_det(classes: list[str], img_size: int = 128, crop_size: int = 64,
                             scales: list[float] = (0.2, 0.3, 0.45, 0.7),
                             aspect_ratios: list[float] = (0.5, 1.0, 2.0),
                             stride_fraction: float = 0.5, backbone: str = "alexnet_small",
                             weights: str | None = None, backbone_width: int | None = None,
                             hidden: int = 256, fc_layers: int = 1, dropout: float = 0.0,
                             rois_per_image: int = 128, positive_fraction: float = 0.25,
                             fg_iou: float = 0.5, bg_iou_low: float = 0.0,
                             box_regression: bool = False, score_thresh: float = 0.05,
                             nms_thresh: float = 0.3, detections_per_img: int = 100) -> TwoStageDetector:
    """Sliding-window detection: every window of a multi-scale, multi-aspect grid is cropped,
    warped to ``crop_size`` and classified over C+1 classes (background included); per-class NMS.

    ``scales`` are window sides as fractions of the image's shorter side, ``aspect_ratios``
    height / width, ``stride_fraction`` the step as a fraction of the window
    (:class:`~detseg.models.detection.proposals.SlidingWindowProposals`). Every window below
    ``fg_iou`` IoU is background (``bg_iou_low = 0``: the classifier must reject plain background
    too). Other args as :func:`build_rcnn`.
    """
    windows = SlidingWindowProposals(scales, aspect_ratios, stride_fraction)
    return _crop_detector(classes, img_size, crop_size, 0.0, backbone, weights, backbone_width,
                          windows, hidden, fc_layers, dropout, box_regression,
                          _matcher(fg_iou, bg_iou_low),
                          BalancedSampler(rois_per_image, positive_fraction),
                          score_thresh=score_thresh, nms_thresh=nms_thresh,
                          detections_per_img=detections_per_img)
