"""Zoo builders of Faster R-CNN, Mask R-CNN and Keypoint R-CNN on the two-stage meta-architecture.

- :func:`build_faster_rcnn` -- Ren et al., "Faster R-CNN", NeurIPS 2015
  (https://arxiv.org/abs/1506.01497) with a feature pyramid (Lin et al., CVPR 2017): Fast R-CNN
  whose proposals come from a region proposal network on the shared features
  (:class:`~detseg.models.detection.rpn.RPN`), RoIAlign from the FPN levels, two 1024-wide FC
  layers, softmax + class-specific box regression. The four losses (``loss_objectness``,
  ``loss_rpn_box``, ``loss_cls``, ``loss_box``) are trained jointly (the paper's "approximate joint
  training", sec. 3.2); the paper's 4-step alternating scheme is not implemented.
- :func:`build_mask_rcnn` -- He et al., "Mask R-CNN", ICCV 2017 (https://arxiv.org/abs/1703.06870):
  + a mask head (:class:`~detseg.models.detection.mask_head.MaskHead`), task ``instance``.
- :func:`build_keypoint_rcnn` -- the same paper, sec. 5: + a keypoint head
  (:class:`~detseg.models.detection.keypoint_head.KeypointHead`), task ``keypoints``.

The defaults (``backbone="resnet50_fpn"``) are torchvision's ``fasterrcnn_resnet50_fpn`` /
``maskrcnn_resnet50_fpn`` / ``keypointrcnn_resnet50_fpn`` hyper-parameters: images resized to a
shorter side of 800 (longer <= 1333), padded to 32; anchors 32..512 on P2..P6, ratios 0.5, 1, 2;
RPN 2000 / 2000 proposals before / after NMS in training and 1000 / 1000 in testing, NMS 0.7,
256 anchors per image half positive, IoU 0.7 / 0.3; 512 RoIs per image with 25 % objects at IoU
0.5; 7x7 RoIAlign (sampling ratio 2) for boxes and 14x14 for masks and keypoints; score threshold
0.05, NMS 0.5, 100 detections per image; ResNet-50 with frozen batch norm and the first two stages
frozen (``trainable_layers=3``). With those options a torchvision state dict loads and gives
torchvision's outputs (:mod:`~detseg.models.detection.torchvision_compat`; ``weights=PATH`` or
``weights="torchvision:DEFAULT"``, the latter downloads through torchvision's weight enum).
Differences: Keypoint R-CNN trains at the fixed ``min_size`` (torchvision samples one of 640..800
per image); torchvision's random-init models (``weights=None, weights_backbone=None``) use plain
batch norm and train every stage -- ``frozen_bn=False, trainable_layers=5`` here.

CPU-friendly configurations are options: ``backbone="resnet18_fpn"``, ``"alexnet_small_fpn"``
or ``"simple_fpn"`` (any detseg backbone's ``c2..c5`` under an FPN), a smaller ``fpn_channels``,
``representation`` and image size, e.g. ``-o backbone=alexnet_small_fpn -o min_size=128
-o max_size=128 -o fpn_channels=64 -o representation=256 -o anchor_sizes=[16,32,64,128,256]``.
"""

from __future__ import annotations

from collections.abc import Sequence

from detseg.models.backbones import build_backbone
from detseg.models.detection.anchors import AnchorGenerator
from detseg.models.detection.box_coder import BoxCoder
from detseg.models.detection.box_head import BoxHead
from detseg.models.detection.fpn import FPNBackbone, MultiLevelRoIAlign, freeze_stages, resnet50
from detseg.models.detection.keypoint_head import KeypointHead
from detseg.models.detection.mask_head import MaskHead
from detseg.models.detection.matcher import IGNORE, NEGATIVE, POSITIVE, Matcher
from detseg.models.detection.rpn import RPN
from detseg.models.detection.sampler import BalancedSampler
from detseg.models.detection.two_stage import TwoStageDetector
from detseg.models.transform import MinMaxResize

FPN_BACKBONES = ("resnet50_fpn", "resnet18_fpn", "alexnet_small_fpn", "simple_fpn")
LEVELS = ("p2", "p3", "p4", "p5")
# COCO's 17 person keypoints: nose, then (left, right) eyes, ears, shoulders, elbows, wrists,
# hips, knees, ankles
COCO_FLIP_PAIRS = [[1, 2], [3, 4], [5, 6], [7, 8], [9, 10], [11, 12], [13, 14], [15, 16]]


def _fpn_backbone(name: str, fpn_channels: int, frozen_bn: bool | None, trainable_layers: int,
                  backbone_width: int | None) -> FPNBackbone:
    from detseg.models.backbones import BACKBONES

    base = name[: -len("_fpn")] if name.endswith("_fpn") else name
    if base != "resnet50" and base not in BACKBONES:
        raise ValueError(f"faster_rcnn: unknown backbone {name!r}; known: {', '.join(FPN_BACKBONES)} "
                         "(every backbone gets an FPN; the '_fpn' suffix may be left out)")
    if base == "resnet50":
        body = resnet50(frozen_bn=True if frozen_bn is None else frozen_bn,
                        trainable_layers=trainable_layers)
    else:
        body = build_backbone(base, width=backbone_width)
        if frozen_bn:
            raise ValueError(f"faster_rcnn: frozen_bn is only for resnet50_fpn, not {name!r}")
        if base == "resnet18" and trainable_layers < 5:
            freeze_stages(body, trainable_layers)
    return FPNBackbone(body, ("c2", "c3", "c4", "c5"), fpn_channels, extra_pool=True)


def _two_stage(classes: list[str], backbone: str, min_size: int, max_size: int, fpn_channels: int,
               frozen_bn: bool | None, trainable_layers: int, backbone_width: int | None,
               anchor_sizes: Sequence[float], aspect_ratios: Sequence[float],
               rpn_pre_nms_top_n_train: int, rpn_pre_nms_top_n_test: int,
               rpn_post_nms_top_n_train: int, rpn_post_nms_top_n_test: int, rpn_nms_thresh: float,
               rpn_fg_iou: float, rpn_bg_iou: float, rpn_batch_size_per_image: int,
               rpn_positive_fraction: float, rpn_score_thresh: float, representation: int,
               box_fg_iou: float, box_bg_iou: float, box_batch_size_per_image: int,
               box_positive_fraction: float, box_score_thresh: float, box_nms_thresh: float,
               detections_per_img: int, instance_heads: dict | None = None) -> TwoStageDetector:
    net = _fpn_backbone(backbone, fpn_channels, frozen_bn, trainable_layers, backbone_width)
    levels = net.level_names
    if len(anchor_sizes) != len(levels):
        raise ValueError(f"faster_rcnn: anchor_sizes needs one size per level {levels}, got {list(anchor_sizes)}")
    anchors = AnchorGenerator([(s,) for s in anchor_sizes], [tuple(aspect_ratios)] * len(levels))
    rpn = RPN(fpn_channels, anchors, levels, rpn_fg_iou, rpn_bg_iou, rpn_batch_size_per_image,
              rpn_positive_fraction,
              {"training": rpn_pre_nms_top_n_train, "testing": rpn_pre_nms_top_n_test},
              {"training": rpn_post_nms_top_n_train, "testing": rpn_post_nms_top_n_test},
              rpn_nms_thresh, rpn_score_thresh)
    roi = MultiLevelRoIAlign(LEVELS, fpn_channels, 7, 2)
    head = BoxHead(fpn_channels * 7 * 7, len(classes), hidden=(representation, representation),
                   background_deltas=True)
    model = TwoStageDetector(
        classes, net, rpn, roi, head, img_size=max_size,
        matcher=Matcher([box_bg_iou, box_fg_iou], [NEGATIVE, IGNORE, POSITIVE]),
        sampler=BalancedSampler(box_batch_size_per_image, box_positive_fraction),
        box_coder=BoxCoder((10.0, 10.0, 5.0, 5.0)), score_thresh=box_score_thresh,
        nms_thresh=box_nms_thresh, detections_per_img=detections_per_img, append_gt=True,
        smooth_l1_beta=1 / 9, image_transform=MinMaxResize(min_size, max_size, 32),
        instance_heads=instance_heads)
    return model


def _load(model: TwoStageDetector, weights: str | None, kind: str) -> TwoStageDetector:
    if weights:
        from detseg.models.detection.torchvision_compat import load_weights

        load_weights(model, weights, kind)
    return model


def build_faster_rcnn(classes: list[str], backbone: str = "resnet50_fpn", weights: str | None = None,
                      img_size: int | None = None, min_size: int = 800, max_size: int = 1333, fpn_channels: int = 256,
                      frozen_bn: bool | None = None, trainable_layers: int = 3,
                      backbone_width: int | None = None,
                      anchor_sizes: list[float] = (32, 64, 128, 256, 512),
                      aspect_ratios: list[float] = (0.5, 1.0, 2.0),
                      rpn_pre_nms_top_n_train: int = 2000, rpn_pre_nms_top_n_test: int = 1000,
                      rpn_post_nms_top_n_train: int = 2000, rpn_post_nms_top_n_test: int = 1000,
                      rpn_nms_thresh: float = 0.7, rpn_fg_iou: float = 0.7, rpn_bg_iou: float = 0.3,
                      rpn_batch_size_per_image: int = 256, rpn_positive_fraction: float = 0.5,
                      rpn_score_thresh: float = 0.0, representation: int = 1024,
                      box_fg_iou: float = 0.5, box_bg_iou: float = 0.5,
                      box_batch_size_per_image: int = 512, box_positive_fraction: float = 0.25,
                      box_score_thresh: float = 0.05, box_nms_thresh: float = 0.5,
                      detections_per_img: int = 100) -> TwoStageDetector:
    """Faster R-CNN with an FPN (module docstring); torchvision's defaults.

    ``weights``: ``None`` (random init), a torchvision ``fasterrcnn_resnet50_fpn`` state dict
    file (or a detseg checkpoint of this model), or ``"torchvision:DEFAULT"`` (downloads).
    ``img_size``: shorthand for ``min_size = max_size = img_size`` (the longer side becomes
    ``img_size``, like detseg's other detectors).
    ``frozen_bn``: ``None`` = frozen for ``resnet50_fpn``.
    """
    model = _two_stage(classes, backbone, img_size or min_size, img_size or max_size, fpn_channels, frozen_bn,
                       trainable_layers, backbone_width, anchor_sizes, aspect_ratios,
                       rpn_pre_nms_top_n_train, rpn_pre_nms_top_n_test, rpn_post_nms_top_n_train,
                       rpn_post_nms_top_n_test, rpn_nms_thresh, rpn_fg_iou, rpn_bg_iou,
                       rpn_batch_size_per_image, rpn_positive_fraction, rpn_score_thresh,
                       representation, box_fg_iou, box_bg_iou, box_batch_size_per_image,
                       box_positive_fraction, box_score_thresh, box_nms_thresh, detections_per_img)
    return _load(model, weights, "faster_rcnn")


def build_mask_rcnn(classes: list[str], backbone: str = "resnet50_fpn", weights: str | None = None,
                    img_size: int | None = None, min_size: int = 800, max_size: int = 1333, fpn_channels: int = 256,
                    frozen_bn: bool | None = None, trainable_layers: int = 3,
                    backbone_width: int | None = None,
                    anchor_sizes: list[float] = (32, 64, 128, 256, 512),
                    aspect_ratios: list[float] = (0.5, 1.0, 2.0),
                    rpn_pre_nms_top_n_train: int = 2000, rpn_pre_nms_top_n_test: int = 1000,
                    rpn_post_nms_top_n_train: int = 2000, rpn_post_nms_top_n_test: int = 1000,
                    rpn_nms_thresh: float = 0.7, rpn_fg_iou: float = 0.7, rpn_bg_iou: float = 0.3,
                    rpn_batch_size_per_image: int = 256, rpn_positive_fraction: float = 0.5,
                    rpn_score_thresh: float = 0.0, representation: int = 1024,
                    box_fg_iou: float = 0.5, box_bg_iou: float = 0.5,
                    box_batch_size_per_image: int = 512, box_positive_fraction: float = 0.25,
                    box_score_thresh: float = 0.05, box_nms_thresh: float = 0.5,
                    detections_per_img: int = 100, mask_layers: list[int] = (256, 256, 256, 256),
                    mask_thresh: float = 0.5) -> TwoStageDetector:
    """Mask R-CNN (module docstring): Faster R-CNN + the 14x14 -> 4 convs -> deconv -> 28x28
    per-class mask head; predictions add ``masks`` uint8 [N, H, W]. Other args as
    :func:`build_faster_rcnn`."""
    mask = MaskHead(MultiLevelRoIAlign(LEVELS, fpn_channels, 14, 2), fpn_channels, len(classes),
                    mask_layers, mask_layers[-1] if mask_layers else fpn_channels, mask_thresh)
    model = _two_stage(classes, backbone, img_size or min_size, img_size or max_size, fpn_channels, frozen_bn,
                       trainable_layers, backbone_width, anchor_sizes, aspect_ratios,
                       rpn_pre_nms_top_n_train, rpn_pre_nms_top_n_test, rpn_post_nms_top_n_train,
                       rpn_post_nms_top_n_test, rpn_nms_thresh, rpn_fg_iou, rpn_bg_iou,
                       rpn_batch_size_per_image, rpn_positive_fraction, rpn_score_thresh,
                       representation, box_fg_iou, box_bg_iou, box_batch_size_per_image,
                       box_positive_fraction, box_score_thresh, box_nms_thresh, detections_per_img,
                       {"mask": mask})
    model.task = "instance"
    return _load(model, weights, "mask_rcnn")


def build_keypoint_rcnn(classes: list[str], backbone: str = "resnet50_fpn",
                        weights: str | None = None, num_keypoints: int = 14,
                        flip_pairs: list[list[int]] | None = None,
                        img_size: int | None = None, min_size: int = 800, max_size: int = 1333, fpn_channels: int = 256,
                        frozen_bn: bool | None = None, trainable_layers: int = 3,
                        backbone_width: int | None = None,
                        anchor_sizes: list[float] = (32, 64, 128, 256, 512),
                        aspect_ratios: list[float] = (0.5, 1.0, 2.0),
                        rpn_pre_nms_top_n_train: int = 2000, rpn_pre_nms_top_n_test: int = 1000,
                        rpn_post_nms_top_n_train: int = 2000, rpn_post_nms_top_n_test: int = 1000,
                        rpn_nms_thresh: float = 0.7, rpn_fg_iou: float = 0.7,
                        rpn_bg_iou: float = 0.3, rpn_batch_size_per_image: int = 256,
                        rpn_positive_fraction: float = 0.5, rpn_score_thresh: float = 0.0,
                        representation: int = 1024, box_fg_iou: float = 0.5,
                        box_bg_iou: float = 0.5, box_batch_size_per_image: int = 512,
                        box_positive_fraction: float = 0.25, box_score_thresh: float = 0.05,
                        box_nms_thresh: float = 0.5, detections_per_img: int = 100,
                        keypoint_layers: list[int] = (512,) * 8) -> TwoStageDetector:
    """Keypoint R-CNN (module docstring): Faster R-CNN + ``num_keypoints`` heatmaps per RoI;
    predictions add ``keypoints`` [N, K, 3] and ``keypoints_scores``. ``flip_pairs``: the
    dataset's left/right pairs (default: COCO's when ``K = 17``). Other args as
    :func:`build_faster_rcnn`."""
    if flip_pairs is None:
        flip_pairs = COCO_FLIP_PAIRS if num_keypoints == 17 else []
    kp = KeypointHead(MultiLevelRoIAlign(LEVELS, fpn_channels, 14, 2), fpn_channels, num_keypoints,
                      keypoint_layers, flip_pairs)
    model = _two_stage(classes, backbone, img_size or min_size, img_size or max_size, fpn_channels, frozen_bn,
                       trainable_layers, backbone_width, anchor_sizes, aspect_ratios,
                       rpn_pre_nms_top_n_train, rpn_pre_nms_top_n_test, rpn_post_nms_top_n_train,
                       rpn_post_nms_top_n_test, rpn_nms_thresh, rpn_fg_iou, rpn_bg_iou,
                       rpn_batch_size_per_image, rpn_positive_fraction, rpn_score_thresh,
                       representation, box_fg_iou, box_bg_iou, box_batch_size_per_image,
                       box_positive_fraction, box_score_thresh, box_nms_thresh, detections_per_img,
                       {"keypoint": kp})
    model.task = "keypoints"
    model.dataset_info.setdefault("flip_pairs", [list(p) for p in flip_pairs])
    return _load(model, weights, "keypoint_rcnn")
