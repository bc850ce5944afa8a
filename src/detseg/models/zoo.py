"""The model zoo: one explicit dict from CLI names to builder functions.

No registry filled by import side effects (the thing Detectron2/MMDetection users keep asking
about): every model detseg can build is listed in :data:`ZOO` below, with its task and a one-line
description. :func:`build_model` records the name and the keyword arguments on the model
(``builder_name``, ``builder_args``) so a checkpoint can rebuild it with
``build_model(model.builder_name, **model.builder_args)``.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, NamedTuple

from detseg.models.base import DetsegModel
from detseg.models.detection.builders import (
    build_fast_rcnn,
    build_rcnn,
    build_sliding_window_det,
)
from detseg.models.detection.faster_rcnn import (build_faster_rcnn, build_keypoint_rcnn,
                                                 build_mask_rcnn)
from detseg.models.detection.ssd import build_ssd
from detseg.models.detection.yolo import build_yolo
from detseg.models.detection.yolo_v1 import build_yolo_v1
from detseg.models.localization.cls_loc import build_cls_loc
from detseg.models.localization.pose import build_pose_regression
from detseg.models.localization.pose_heatmap import build_pose_heatmap
from detseg.models.segmentation.deeplab import build_deeplab
from detseg.models.segmentation.fcn import build_fcn
from detseg.models.segmentation.fcn_same_res import build_fcn_same_res
from detseg.models.segmentation.fcn_skips import build_fcn4s, build_fcn8s, build_fcn16s, build_fcn32s
from detseg.models.segmentation.segnet import build_segnet
from detseg.models.segmentation.sliding_window import build_sliding_window_seg


class ZooEntry(NamedTuple):
    """A zoo model: its builder ``(classes, **options) -> DetsegModel``, task and description."""

    builder: Callable[..., DetsegModel]
    task: str
    description: str


ZOO: dict[str, ZooEntry] = {
    "sliding_window_seg": ZooEntry(build_sliding_window_seg, "semantic",
                                   "sliding window: a patch classifier labels each window's centre "
                                   "pixel (mode=fcn runs it convolutionalized)"),
    "fcn_same_res": ZooEntry(build_fcn_same_res, "semantic",
                             "same-resolution FCN: padded 3x3 convs, no downsampling, 1x1 class scores"),
    "fcn": ZooEntry(build_fcn, "semantic",
                    "encoder-decoder FCN with skips; upsampling by name (transpose, max_unpool, nearest, ...)"),
    "fcn32s": ZooEntry(build_fcn32s, "semantic",
                       "FCN-32s (Long et al. 2015): stride-32 class scores, one x32 bilinear upsampling"),
    "fcn16s": ZooEntry(build_fcn16s, "semantic",
                       "FCN-16s: + zero-initialised pool4 (stride-16) scores fused by summation"),
    "fcn8s": ZooEntry(build_fcn8s, "semantic",
                      "FCN-8s: + pool4 and pool3 skip scores fused by summation, x8 upsampling"),
    "fcn4s": ZooEntry(build_fcn4s, "semantic",
                      "FCN-4s (beyond the paper): + a pool2 (stride-4) skip too, x4 upsampling"),
    "segnet": ZooEntry(build_segnet, "semantic",
                       "SegNet (Badrinarayanan et al.): decoder max-unpools with the encoder's pool indices"),
    "deeplab": ZooEntry(build_deeplab, "semantic",
                        "DeepLab: dilated ResNet + ASPP, bilinear upsampling, optional dense CRF (-o crf=true)"),
    "cls_loc": ZooEntry(build_cls_loc, "cls_loc",
                        "classification + localization: CNN, class head + box head, CE + lambda * reg"),
    "pose_regression": ZooEntry(build_pose_regression, "pose",
                                "DeepPose (Toshev & Szegedy 2014): CNN regresses K x 2 joints, L2 over "
                                "labelled joints, optional cascade (-o cascade_stages=1)"),
    "pose_heatmap": ZooEntry(build_pose_heatmap, "pose",
                             "simple baselines (Xiao et al. 2018): deconv head -> one Gaussian "
                             "heatmap per joint, MSE, argmax + quarter-pixel shift"),
    "sliding_window_det": ZooEntry(build_sliding_window_det, "detection",
                                   "sliding-window detection: every window of a multi-scale grid "
                                   "warped and classified over C+1 classes (background), per-class NMS"),
    "rcnn": ZooEntry(build_rcnn, "detection",
                     "R-CNN (Girshick et al. 2014): selective search -> warped crops -> CNN -> "
                     "softmax over C+1 + class-specific box regression"),
    "fast_rcnn": ZooEntry(build_fast_rcnn, "detection",
                          "Fast R-CNN (Girshick 2015): CNN once -> RoI pooling of selective-search "
                          "proposals -> FC -> softmax + box regressors, trained end to end"),
    "faster_rcnn": ZooEntry(build_faster_rcnn, "detection",
                            "Faster R-CNN (Ren et al. 2015) + FPN: RPN proposals on shared features, "
                            "multi-level RoIAlign, four losses jointly; torchvision-compatible weights"),
    "mask_rcnn": ZooEntry(build_mask_rcnn, "instance",
                          "Mask R-CNN (He et al. 2017): Faster R-CNN + a 14x14 -> 28x28 per-class "
                          "mask head, masks pasted into the image"),
    "keypoint_rcnn": ZooEntry(build_keypoint_rcnn, "keypoints",
                              "Keypoint R-CNN (He et al. 2017, sec. 5): Faster R-CNN + K keypoint "
                              "heatmaps (56x56) per RoI"),
    "yolo_v1": ZooEntry(build_yolo_v1, "detection",
                        "YOLO v1 (Redmon et al. 2016): S x S grid, B boxes (x, y, sqrt w, sqrt h, conf) "
                        "+ C class probabilities per cell, sum-squared loss"),
    "yolo": ZooEntry(build_yolo, "detection",
                     "anchor-based single-shot YOLO: k-means anchors, FPN/PAN neck, multi-scale "
                     "heads, objectness + class BCE + CIoU box loss"),
    "ssd": ZooEntry(build_ssd, "detection",
                    "SSD (Liu et al. 2016): default boxes on several maps, IoU 0.5 matching, "
                    "hard negative mining 3:1, smooth L1 + CE"),
}


def _entry(name: str) -> ZooEntry:
    try:
        return ZOO[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(ZOO)}") from None


def model_options(name: str) -> dict[str, Any]:
    """The builder's options and their defaults (everything but ``classes``), for ``--help``."""
    params = inspect.signature(_entry(name).builder).parameters
    return {k: p.default for k, p in params.items()
            if k != "classes" and p.default is not inspect.Parameter.empty}


def _json_primitive(value: Any) -> Any:
    """``value`` as JSON-serialisable primitives (tuples become lists), else ``TypeError``."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_json_primitive(v) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _json_primitive(v) for k, v in value.items()}
    raise TypeError(f"{type(value).__name__}")


def build_model(name: str, classes: list[str] | tuple[str, ...], **kwargs: Any) -> DetsegModel:
    """Build zoo model ``name`` for ``classes`` with builder options ``kwargs``.

    Raises:
        ValueError: an unknown model name (the message lists the known ones).
        TypeError: an option the builder does not accept (the message lists the accepted ones),
            or an option value that is not a JSON primitive (checkpoints store them as data).
    """
    entry = _entry(name)
    accepted = model_options(name)
    unknown = [k for k in kwargs if k not in accepted]
    if unknown:
        opts = ", ".join(f"{k}={v!r}" for k, v in accepted.items())
        raise TypeError(f"model {name!r} has no option {', '.join(map(repr, unknown))}; "
                        f"accepted: {opts}")
    args: dict[str, Any] = {}
    for k, v in kwargs.items():
        try:
            args[k] = _json_primitive(v)
        except TypeError as e:
            raise TypeError(f"model {name!r}: option {k}={v!r}: a {e} is not a JSON value "
                            "(use str, int, float, bool, None or lists of them)") from None
    model = entry.builder(list(classes), **args)
    model.builder_name = name
    model.builder_args = {"classes": list(classes), **args}
    return model
