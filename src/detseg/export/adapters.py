"""The export adapter of each model family (:class:`~detseg.export.base.Adapter`: the traced core
and the model's own pre/post-processing around it) and :func:`adapter_for`, which picks one.

Here: semantic segmentation, cls+loc, both pose models, and the region-based detectors whose
proposals are made outside the network (R-CNN, Fast R-CNN, sliding windows); the single-shot and
RPN detectors are in :mod:`detseg.export.detectors`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.ops import roi_align, roi_pool

from detseg.export.base import (Adapter, NotExportable, _pad_to, _padded_side,  # noqa: F401
                                _preprocess_meta)
from detseg.models.detection.roi import RoIAlign, RoIPool, WarpCrops, warp_crops
from detseg.models.detection.two_stage import TwoStageDetector
from detseg.models.localization.cls_loc import ClsLoc, decode_boxes
from detseg.models.localization.pose import PoseRegression
from detseg.models.localization.pose_heatmap import PoseHeatmap, heatmap_scale
from detseg.models.segmentation.semantic import SemanticModel
from detseg.models.segmentation.sliding_window import SlidingWindowSegmenter
from detseg.models.transform import ImageBatch, preprocess


# -- semantic segmentation -----------------------------------------------------------------------
class SemanticAdapter(Adapter):
    """Every :class:`SemanticModel`: the network maps the padded batch to class scores."""

    family = "semantic"
    output_names = ("logits",)

    def core(self) -> nn.Module:
        net = self.model.network
        # The sliding-window segmenter's window-by-window path gives the same labels as its
        # convolutionalized form (its module docstring); the file holds the latter.
        return net.fcn if isinstance(self.model, SlidingWindowSegmenter) else net

    def stride(self) -> int:
        return int(getattr(self.model.network, "stride", 1))

    def dynamic_axes(self, dynamic: bool) -> dict[str, dict[int, str]]:
        if not dynamic:
            return {}
        return {"images": {0: "batch", 2: "height", 3: "width"},
                "logits": {0: "batch", 2: "out_height", 3: "out_width"}}

    def prepare(self, images, fixed_hw=None, targets=None):
        batch = preprocess(images, self.model.img_size, keep_aspect=True, stride=self.stride(),
                           who=self.model.who)
        batch = _pad_to(batch, fixed_hw)
        return {"images": batch.tensor}, batch

    def finish(self, outputs, ctx, with_logits: bool = False, **kwargs):
        from detseg.models.transform import maps_to_original

        keep = with_logits or self.model.return_logits
        return [self.model.postprocess(lg.float(), keep)
                for lg in maps_to_original(outputs["logits"], ctx)]

    def describe(self):
        return {
            "preprocess": _preprocess_meta(self.model.img_size, True, self.stride()),
            "outputs": {"logits": "float Tensor[B, C, h, w] class scores over the padded input "
                                  "(C = len(classes))"},
            "postprocess": ("crop each image's share of the logits (drop the padding), resize "
                            "bilinearly (align_corners=False) to the original size, softmax; "
                            "sem_seg = argmax over C, scores = mean per-pixel max probability"),
        }


# -- classification + localization ---------------------------------------------------------------
class _ClsLocCore(nn.Module):
    def __init__(self, model: ClsLoc):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        m, head = self.model, self.model.head
        # ClsLocHead.forward, with the batch size left to the graph: its ``view(len(h), ...)``
        # would trace the example's batch size as a constant.
        h = head.fc(head.pool(m.backbone(x)[m.feature]))
        raw = head.box(h).unflatten(-1, (head.box_sets, 4))
        return head.cls(h), decode_boxes(raw, head.box_format)


class ClsLocAdapter(Adapter):
    family = "cls_loc"
    output_names = ("class_logits", "boxes")

    def core(self) -> nn.Module:
        return _ClsLocCore(self.model)

    def stride(self) -> int:
        return int(self.model.backbone.out_stride)

    def prepare(self, images, fixed_hw=None, targets=None):
        batch = preprocess(images, self.model.img_size, keep_aspect=False, stride=self.stride(),
                           who="cls_loc")
        return {"images": _pad_to(batch, fixed_hw).tensor}, batch

    def finish(self, outputs, ctx, **kwargs):
        return [self.model.postprocess(lg, b, size) for lg, b, size in
                zip(outputs["class_logits"], outputs["boxes"], ctx.original_sizes)]

    def describe(self):
        m = self.model
        k = 1 if m.class_agnostic else m.num_classes
        return {
            "preprocess": _preprocess_meta(m.img_size, False, self.stride()),
            "outputs": {"class_logits": "float Tensor[B, C] class scores (label = index + 1)",
                        "boxes": f"float Tensor[B, {k}, 4] boxes normalised to the image, format "
                                 f"{m.box_format} ({'one box' if k == 1 else 'one box per class'})"},
            "postprocess": ("softmax over C: class = argmax + 1, score = its probability; the box "
                            "(of the predicted class when per-class) converted to xyxy, clipped to "
                            "[0, 1] and scaled by the original width/height"),
        }


# -- pose ----------------------------------------------------------------------------------------
class _PoseRegressionCore(nn.Module):
    def __init__(self, model: PoseRegression):
        super().__init__()
        self.model = model
        self.size = (model.img_size, model.img_size)

    def forward(self, x: Tensor) -> Tensor:
        # The cascade reads the image's share of the padded batch: a constant for square resizes.
        batch = ImageBatch(x, [self.size], [self.size])
        return self.model.stages(batch)[-1]


class PoseRegressionAdapter(Adapter):
    family = "pose_regression"
    output_names = ("joints",)

    def core(self) -> nn.Module:
        return _PoseRegressionCore(self.model)

    def stride(self) -> int:
        return int(self.model.backbone.out_stride)

    def prepare(self, images, fixed_hw=None, targets=None):
        batch = preprocess(images, self.model.img_size, keep_aspect=False, stride=self.stride(),
                           who="pose_regression")
        return {"images": _pad_to(batch, fixed_hw).tensor}, batch

    def finish(self, outputs, ctx, **kwargs):
        return [self.model.postprocess(uv, size)
                for uv, size in zip(outputs["joints"], ctx.original_sizes)]

    def describe(self):
        m = self.model
        return {
            "preprocess": _preprocess_meta(m.img_size, False, self.stride()),
            "outputs": {"joints": f"float Tensor[B, {m.num_keypoints}, 2] joints (x, y) normalised "
                                  "to the image (after the cascade stages, if any)"},
            "postprocess": ("pixel index = normalised * (W, H) - 0.5, clipped to the image; every "
                            "joint scores 1; boxes = the joints' tight box"),
        }


class _PoseHeatmapCore(nn.Module):
    def __init__(self, model: PoseHeatmap):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        m = self.model
        return m.head(m.backbone(x)[m.feature])


class PoseHeatmapAdapter(Adapter):
    family = "pose_heatmap"
    output_names = ("heatmaps",)

    def core(self) -> nn.Module:
        return _PoseHeatmapCore(self.model)

    def stride(self) -> int:
        return int(self.model.backbone.out_stride)

    def dynamic_axes(self, dynamic: bool) -> dict[str, dict[int, str]]:
        if not dynamic:
            return {}
        return {"images": {0: "batch", 2: "height", 3: "width"},
                "heatmaps": {0: "batch", 2: "out_height", 3: "out_width"}}

    def prepare(self, images, fixed_hw=None, targets=None):
        batch = preprocess(images, self.model.img_size, keep_aspect=False, stride=self.stride(),
                           who="pose_heatmap")
        return {"images": _pad_to(batch, fixed_hw).tensor}, _pad_to(batch, fixed_hw)

    def finish(self, outputs, ctx, **kwargs):
        hm = outputs["heatmaps"]
        scales = heatmap_scale(ctx, (hm.shape[-2], hm.shape[-1]))
        return [self.model.postprocess(h, s, size, im_hw, ctx.tensor.shape[-2:])
                for h, s, size, im_hw in zip(hm, scales, ctx.original_sizes, ctx.image_sizes)]

    def describe(self):
        m = self.model
        return {
            "preprocess": _preprocess_meta(m.img_size, False, self.stride()),
            "outputs": {"heatmaps": f"float Tensor[B, {m.num_keypoints}, h, w] one heatmap per "
                                    "joint over the padded input"},
            "postprocess": ("per joint: argmax over the image's part of the heatmap, 0.25 px toward "
                            "the higher neighbour per axis, heatmap -> original pixel indices by "
                            "(h + 0.5) / s - 0.5; score = the heatmap maximum"),
        }


# -- region-based detectors ----------------------------------------------------------------------
class _RoICore(nn.Module):
    """Fast R-CNN: ``(images [B, 3, H, W], rois [R, 5] = (batch index, x1, y1, x2, y2))`` ->
    ``(scores [R, C], deltas [R, 4C])``: the backbone once, RoI pooling, the box head."""

    def __init__(self, model: TwoStageDetector):
        super().__init__()
        self.model = model
        self.extractor = model.roi_extractor

    def forward(self, x: Tensor, rois: Tensor) -> tuple[Tensor, ...]:
        ex = self.extractor
        feature = self.model.backbone(x)[ex.feature]
        # torchvision's ops on the Tensor[R, 5] form (the extractor converts its list to it).
        if isinstance(ex, RoIAlign):
            pooled = roi_align(feature, rois, ex.output_size, spatial_scale=1.0 / ex.stride,
                               sampling_ratio=ex.sampling_ratio, aligned=True)
        else:
            pooled = roi_pool(feature, rois, ex.output_size, spatial_scale=1.0 / ex.stride)
        scores, deltas = self.model.score_regions(pooled)
        return (scores,) if deltas is None else (scores, deltas)


class _CropCore(nn.Module):
    """R-CNN / sliding windows: warped crops ``[R, 3, S, S]`` -> ``(scores [R, C], deltas)``."""

    def __init__(self, model: TwoStageDetector):
        super().__init__()
        self.model = model

    def forward(self, crops: Tensor) -> tuple[Tensor, ...]:
        ex = self.model.roi_extractor
        scores, deltas = self.model.score_regions(ex.cnn(crops)[ex.feature])
        return (scores,) if deltas is None else (scores, deltas)


class TwoStageAdapter(Adapter):
    """Region-based detectors; the proposals are made in Python, the regions scored by the file."""

    family = "two_stage"

    def __init__(self, model: TwoStageDetector):
        super().__init__(model)
        self.crops = isinstance(model.roi_extractor, WarpCrops)
        if not self.crops and not isinstance(model.roi_extractor, RoIPool):
            raise NotExportable(f"{model.builder_name or 'two_stage'}: no ONNX form for the RoI "
                                f"extractor {type(model.roi_extractor).__name__}")
        self.input_names = ("crops",) if self.crops else ("images", "rois")
        regression = getattr(model.box_head, "bbox_pred", None) is not None
        self.output_names = ("scores", "deltas") if regression else ("scores",)

    def core(self) -> nn.Module:
        return _CropCore(self.model) if self.crops else _RoICore(self.model)

    def stride(self) -> int:
        return int(self.model.stride)

    def example_inputs(self) -> tuple[Tensor, ...]:
        if self.crops:
            s = self.model.roi_extractor.crop_size
            return (torch.zeros(3, 3, s, s),)
        h, w = self.example_hw()
        rois = torch.tensor([[0, 0, 0, w / 2, h / 2], [0, w / 4, h / 4, w, h],
                             [0, 1, 2, w / 3, h - 1]], dtype=torch.float32)
        return torch.zeros(1, 3, h, w), rois

    def dynamic_axes(self, dynamic: bool) -> dict[str, dict[int, str]]:
        # The number of regions differs per image: always a dynamic axis.
        axes = {"crops": {0: "regions"}} if self.crops else {"rois": {0: "regions"}}
        if dynamic and not self.crops:
            axes["images"] = {0: "batch", 2: "height", 3: "width"}
        for name in self.output_names:
            axes[name] = {0: "regions"}
        return axes

    def prepare(self, images, fixed_hw=None, targets=None):
        m = self.model
        batch, resized = m.transform(images)
        batch = _pad_to(batch, None if self.crops else fixed_hw)
        scaled = m.scale_targets(targets, batch) if targets is not None else None
        proposals, _ = m.propose(images, resized, None, targets, scaled, batch)
        if self.crops:
            ex = m.roi_extractor
            return {"crops": warp_crops(batch.tensor, proposals, ex.crop_size, ex.context_pad)}, \
                (proposals, batch)
        rois = torch.cat([torch.cat([p.new_full((len(p), 1), i), p], 1)
                          for i, p in enumerate(proposals)])
        return {"images": batch.tensor, "rois": rois}, (proposals, batch)

    def finish(self, outputs, ctx, **kwargs):
        proposals, batch = ctx
        return self.model.postprocess(outputs["scores"], outputs.get("deltas"), proposals, batch)

    def describe(self):
        m = self.model
        c = m.num_classes
        inputs = ({"crops": f"float Tensor[R, 3, {m.roi_extractor.crop_size}, "
                            f"{m.roi_extractor.crop_size}] each region of the normalised, padded "
                            "image warped to the square (torchvision roi_align, aligned=True, "
                            f"adaptive sampling), dilated for {m.roi_extractor.context_pad} px of "
                            "context"}
                  if self.crops else
                  {"images": "float Tensor[B, 3, H, W] normalised, padded batch",
                   "rois": "float Tensor[R, 5] (batch index, x1, y1, x2, y2) proposals in pixels "
                           "of the resized image"})
        head = m.box_head
        svm = bool(getattr(head, "has_svm", False)) and head.uses_svm()
        scorer = ("logistic of R-CNN's per-class SVM margins" if svm
                  else "softmax over C + 1, background column dropped")
        outputs = {"scores": f"float Tensor[R, {c}] per foreground class (label = column + 1): "
                             f"{scorer}"}
        if "deltas" in self.output_names:
            outputs["deltas"] = (f"float Tensor[R, {4 * c}] class-specific (dx, dy, dw, dh) box "
                                 f"deltas, weights {list(m.box_coder.weights)}")
        return {
            "preprocess": _preprocess_meta(m.img_size, True, self.stride()),
            "proposals": {"method": m.builder_args.get("proposals", "sliding windows"),
                          "where": "outside the file: detseg makes them on the resized image"},
            "inputs": inputs,
            "outputs": outputs,
            "postprocess": {"decode": "Fast R-CNN box coder (torchvision BoxCoder convention)",
                            "clip": "to the resized image", "score_thresh": m.score_thresh,
                            "min_size": 1e-2, "nms": "per class (torchvision batched_nms)",
                            "nms_thresh": m.nms_thresh,
                            "detections_per_img": m.detections_per_img,
                            "map_back": "scale by original / resized size, clip"},
        }


def adapter_for(model) -> Adapter:
    """The :class:`Adapter` of ``model``, or :class:`NotExportable` with a one-line reason."""
    name = getattr(model, "builder_name", "") or type(model).__name__
    if getattr(model, "crf", False):
        raise NotExportable(f"{name}: the dense CRF (crf=true) is a mean-field loop in pydensecrf, "
                            "outside PyTorch, with no ONNX form; export with -o crf=false "
                            "(the CNN alone)")
    if isinstance(model, SemanticModel):
        return SemanticAdapter(model)
    if isinstance(model, ClsLoc):
        return ClsLocAdapter(model)
    if isinstance(model, PoseRegression):
        return PoseRegressionAdapter(model)
    if isinstance(model, PoseHeatmap):
        return PoseHeatmapAdapter(model)
    # The detectors' adapters live in their own module, which imports this one.
    from detseg.export.detectors import OneStageAdapter, RPNAdapter
    from detseg.models.detection.one_stage import OneStageDetector
    from detseg.models.detection.rpn import RPN

    if isinstance(model, OneStageDetector):
        return OneStageAdapter(model)
    if isinstance(model, TwoStageDetector):
        if isinstance(model.proposal_generator, RPN):
            return RPNAdapter(model)
        return TwoStageAdapter(model)
    raise NotExportable(f"{name}: no ONNX exporter for {type(model).__name__} "
                        f"(task {getattr(model, 'task', '?')}) yet")
