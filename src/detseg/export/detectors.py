"""Export adapters of the single-shot detectors (YOLO v1, YOLO, SSD) and the RPN detectors
(Faster / Mask / Keypoint R-CNN); see :mod:`detseg.export.base` for what an adapter is.

Single-shot detectors (:class:`OneStageAdapter`): the file holds the network up to the raw dense
head tensors (``OneStageDetector.head_outputs``: backbone, neck, heads); the model's own
``decode`` (anchors or default boxes, strides, the box parametrisation) and ``postprocess``
(score threshold, top-k, per-class NMS, map back) run in Python on the file's outputs -- the code
``OneStageDetector.forward`` runs. YOLO's anchors are data-fitted buffers (k-means on the training
boxes), not builder options: they are written into the metadata (``anchors``) and put back into
the model that lends its decoding (:meth:`Adapter.restore`). SSD's default boxes depend only on
the (square, fixed) input size; the file outputs them (``priors``).

RPN detectors (:class:`RPNAdapter`) -- the choice and its reason. torchvision exports its
``fasterrcnn``/``maskrcnn`` as one graph (torchvision's ``test/test_onnx.py``), and a tiny
``fasterrcnn_resnet50_fpn`` does export that way here (opset 17, ``dynamo=False``: detections
within 7e-4 px at one image). But tracing unrolls every per-image Python loop (the transform, the
RPN's proposal filtering, the box post-processing, mask pasting): the graph takes exactly as many
images as it was traced with (torchvision's file has one ``Tensor[3, H, W]`` input), so a batch
of another size -- the parity bar -- cannot be fed at all, and detseg's NMS, top-k and pasting
would be replaced by ONNX's ``NonMaxSuppression``/``TopK`` rather than be the code the PyTorch
model runs. So the file holds the heavy parts as three *stages* of one graph, each with its own
inputs and outputs (metadata ``stages``), and detseg's Python runs between them:

1. ``rpn``: ``images`` -> the pooled FPN levels (``features.p2..p5``) and the RPN head's
   per-level ``objectness.<level>`` ``[B, A, H, W]`` and ``rpn_deltas.<level>``
   ``[B, 4A, H, W]``; then in Python, ``RPN.proposals``: anchors, decoding, per-level top-k,
   clipping, NMS, the post-NMS top-k per image;
2. ``roi``: ``roi_features.p2..p5`` (stage 1's features) and ``rois`` ``[R, 5]`` -> ``scores``
   ``[R, C]``, ``deltas`` ``[R, 4C]``: torchvision's multi-scale RoIAlign (the FPN level of each
   RoI, eq. 1 of the FPN paper, computed in the graph, with torchvision's ONNX level merge) and
   the box head; then ``TwoStageDetector.detect`` (decode, clip, threshold, per-class NMS);
3. ``mask`` / ``keypoint`` (Mask / Keypoint R-CNN): the features and the detections as
   ``mask_rois`` / ``keypoint_rois`` -> ``mask_logits`` ``[N, C, 28, 28]`` /
   ``keypoint_logits`` ``[N, K, 56, 56]``; then the head's own ``postprocess`` (paste masks,
   keypoint argmax) and the mapping back to the original images.

:class:`~detseg.export.runtime.OnnxModel` cuts the graph into one onnxruntime session per stage
(``onnx.utils.Extractor``), so no stage computes another's outputs; any runtime can do the same
from the metadata. Every stage's batch and spatial axes are free with ``--dynamic``; region axes
always are.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.ops import roi_align
from torchvision.ops.poolers import initLevelMapper

from detseg.export.base import Adapter, NotExportable, _pad_to, _padded_side, _preprocess_meta
from detseg.models.detection.fpn import FPNBackbone, MultiLevelRoIAlign
from detseg.models.detection.one_stage import OneStageDetector
from detseg.models.detection.rpn import RPN
from detseg.models.detection.ssd import SSD
from detseg.models.detection.two_stage import TwoStageDetector
from detseg.models.detection.yolo import Yolo
from detseg.models.detection.yolo_v1 import YoloV1
from detseg.models.transform import IMAGENET_MEAN, IMAGENET_STD, MinMaxResize

Runner = Callable[[dict[str, Tensor]], dict[str, Tensor]]


# -- single-shot detectors -----------------------------------------------------------------------
class _OneStageCore(nn.Module):
    """``images -> head_outputs`` as a flat tuple (the order of :attr:`OneStageAdapter.output_names`)."""

    def __init__(self, model: OneStageDetector, keys: tuple[str, ...]):
        super().__init__()
        self.model, self.keys = model, keys

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        out = self.model.head_outputs(x)
        if isinstance(out, dict):
            return tuple(out[k] for k in self.keys)
        return tuple(out)


class OneStageAdapter(Adapter):
    """YOLO v1, YOLO and SSD: the dense head tensors in the file, decoding and NMS in Python."""

    family = "one_stage"

    def __init__(self, model: OneStageDetector):
        super().__init__(model)
        if isinstance(model, YoloV1):
            self.keys = ("box", "conf", "cls")
            self.output_names = self.keys
        elif isinstance(model, Yolo):
            self.keys = tuple(f"level{i}" for i in range(len(model.heads)))
            self.output_names = self.keys
        elif isinstance(model, SSD):
            self.keys = ("logits", "deltas", "anchors")
            self.output_names = ("logits", "deltas", "priors")
        else:
            raise NotExportable(f"{model.builder_name or type(model).__name__}: no ONNX exporter "
                                f"for the single-shot detector {type(model).__name__} yet")

    def core(self) -> nn.Module:
        return _OneStageCore(self.model, self.keys)

    def stride(self) -> int:
        return int(self.model.stride)

    def dynamic_axes(self, dynamic: bool) -> dict[str, dict[int, str]]:
        if not dynamic:
            return {}
        if isinstance(self.model, Yolo):  # letterboxed: the spatial size follows the image
            axes = {"images": {0: "batch", 2: "height", 3: "width"}}
            for i, name in enumerate(self.output_names):
                axes[name] = {0: "batch", 2: f"height{i}", 3: f"width{i}"}
            return axes
        # YOLO v1 and SSD warp to a square: only the batch is free (SSD's priors have none).
        axes = {"images": {0: "batch"}}
        for name in self.output_names:
            if name != "priors":
                axes[name] = {0: "batch"}
        return axes

    def prepare(self, images, fixed_hw=None, targets=None):
        batch = _pad_to(self.model.transform(images), fixed_hw)
        return {"images": batch.tensor}, batch

    def finish(self, outputs, ctx, **kwargs):
        m = self.model
        raw: Any = [outputs[k] for k in self.output_names]
        if not isinstance(m, Yolo):
            raw = dict(zip(self.keys, raw))
        boxes, scores = m.decode(raw, ctx)
        return m.postprocess(boxes.float(), scores.float(), ctx)

    def restore(self, meta: dict[str, Any]) -> None:
        if isinstance(self.model, Yolo) and "anchors" in meta:
            with torch.no_grad():
                self.model.anchors.copy_(torch.tensor(meta["anchors"], dtype=torch.float32)
                                         .view_as(self.model.anchors))

    def describe(self) -> dict[str, Any]:
        m = self.model
        c = m.num_classes
        post = {"clip": "to the resized image", "score_thresh": m.score_thresh,
                "pre_nms_topk": m.pre_nms_topk, "min_size": 1e-2,
                "nms": "per class (torchvision batched_nms)", "nms_thresh": m.nms_thresh,
                "detections_per_img": m.detections_per_img,
                "map_back": "scale by original / resized size, clip"}
        extra: dict[str, Any] = {}
        if isinstance(m, YoloV1):
            s, nb = m.head.grid, m.head.num_boxes
            outputs = {"box": f"float Tensor[B, {s}, {s}, {nb}, 4] (x, y, sqrt w, sqrt h) after a "
                              "sigmoid: centre relative to the cell, size relative to the input",
                       "conf": f"float Tensor[B, {s}, {s}, {nb}] box confidence (sigmoid)",
                       "cls": f"float Tensor[B, {s}, {s}, {c}] class probabilities (softmax)"}
            post["decode"] = (f"YOLO v1 on a {s}x{s} grid: centre = (cell + (x, y)) / {s}, size = "
                              "(sqrt w, sqrt h)^2, times the padded input size; score = conf x "
                              "class probability per box and class")
        elif isinstance(m, Yolo):
            outputs = {n: f"float Tensor[B, {m.num_anchors}, H, W, {5 + c}] raw (tx, ty, tw, th, "
                          f"objectness, {c} class logits) at stride {s}"
                       for n, s in zip(self.output_names, m.level_strides)}
            post["decode"] = (
                "YOLOv2 direct location: centre = (sigmoid(t) + cell) * stride, size = anchor * "
                "exp(min(t, log(1000 / 16)))" if m.box_param == "v2" else
                "YOLOv5: centre = (2 sigmoid(t) - 0.5 + cell) * stride, size = anchor * (2 sigmoid(t))^2")
            post["decode"] += "; score = sigmoid(objectness) * sigmoid(class logit)"
            extra = {"anchors": m.anchors.tolist(), "strides": list(m.level_strides),
                     "box_param": m.box_param,
                     "anchors_note": "per level (finest first), [w, h] in network pixels: "
                                     "k-means on the training boxes when fitted"}
        else:  # SSD
            gen = m.box_generator
            outputs = {"logits": f"float Tensor[B, P, {c + 1}] class scores, column 0 = background",
                       "deltas": "float Tensor[B, P, 4] (dx, dy, dw, dh) against the priors",
                       "priors": "float Tensor[P, 4] the default boxes, xyxy network pixels "
                                 "(map by map, location-major)"}
            post["decode"] = (f"box coder weights {list(m.box_coder.weights)} (SSD's variances "
                              "0.1, 0.1, 0.2, 0.2) against the priors; scores = softmax, "
                              "background dropped")
            extra = {"priors": {"aspect_ratios": [list(r) for r in gen.aspect_ratios],
                                "scales": list(gen.scales), "generator":
                                "torchvision DefaultBoxGenerator"}}
        return {"preprocess": _preprocess_meta(m.img_size, m.keep_aspect, self.stride()),
                "outputs": outputs, "postprocess": post, **extra}


# -- RPN detectors -------------------------------------------------------------------------------
def multilevel_roi_align(features: list[Tensor], rois: Tensor, pool: MultiLevelRoIAlign,
                         strides: list[int]) -> Tensor:
    """torchvision's ``MultiScaleRoIAlign`` on ``rois Tensor[R, 5]`` (batch index, xyxy) instead of
    a per-image list (a list would fix the batch size in a traced graph): the FPN level of each
    RoI (torchvision's ``LevelMapper``), RoIAlign per level, the results put back in RoI order.

    The merge is a gather by the inverse permutation, not torchvision's ``_onnx_merge_levels``
    (a ``ScatterElements`` of every level's ``[R, C, k, k]`` into zeros): the same values, and
    onnxruntime's scatter took 60 % of the RoI stage (85 of 137 ms for 1000 RoIs)."""
    mp = pool.pool
    scales = [1.0 / s for s in strides]  # torchvision infers these powers of two from the sizes
    mapper = initLevelMapper(int(round(math.log2(strides[0]))), int(round(math.log2(strides[-1]))),
                             canonical_scale=mp.canonical_scale, canonical_level=mp.canonical_level)
    levels = mapper([rois[:, 1:]])
    index = [torch.where(levels == k)[0] for k in range(len(features))]
    results = [roi_align(f, rois[i], mp.output_size, spatial_scale=s,
                         sampling_ratio=mp.sampling_ratio)
               for f, i, s in zip(features, index, scales)]
    order = torch.cat(index)  # RoI indices, level by level: the rows of torch.cat(results)
    inverse = torch.zeros_like(order).scatter(0, order, torch.ones_like(order).cumsum(0) - 1)
    return torch.cat(results)[inverse]


class _RPNDetectorCore(nn.Module):
    """The three stages of :class:`RPNAdapter` (module docstring) as methods; ``forward`` runs all
    of them on independent inputs (what is traced), or the ``rpn`` stage alone on ``images``."""

    def __init__(self, model: TwoStageDetector, levels: list[str], heads: list[str]):
        super().__init__()
        self.model, self.levels, self.heads = model, levels, heads
        self.strides = [int(model.backbone.strides[f]) for f in levels]
        rpn = model.proposal_generator
        self.rpn_levels = rpn.features or list(model.backbone.level_names)

    def rpn(self, images: Tensor) -> tuple[Tensor, ...]:
        feats = self.model.backbone(images)
        logits, deltas = self.model.proposal_generator.head([feats[n] for n in self.rpn_levels])
        return (*[feats[f] for f in self.levels], *logits, *deltas)

    def roi(self, feats: list[Tensor], rois: Tensor) -> tuple[Tensor, Tensor]:
        pooled = multilevel_roi_align(feats, rois, self.model.roi_extractor, self.strides)
        return self.model.score_regions(pooled)

    def instance(self, name: str, feats: list[Tensor], rois: Tensor) -> Tensor:
        head = self.model.instance_heads[name]
        return head(multilevel_roi_align(feats, rois, head.pool, self.strides))

    def forward(self, images: Tensor, *rest: Tensor) -> tuple[Tensor, ...]:
        if not rest:
            return self.rpn(images)
        n = len(self.levels)
        feats, rois, head_rois = list(rest[:n]), rest[n], rest[n + 1:]
        out = (*self.rpn(images), *self.roi(feats, rois))
        return (*out, *[self.instance(h, feats, r) for h, r in zip(self.heads, head_rois)])


class RPNAdapter(Adapter):
    """Faster / Mask / Keypoint R-CNN: three stages in one file (module docstring)."""

    family = "rpn_two_stage"

    def __init__(self, model: TwoStageDetector):
        super().__init__(model)
        name = model.builder_name or "faster_rcnn"
        ex = model.roi_extractor
        if not isinstance(model.backbone, FPNBackbone) or not isinstance(ex, MultiLevelRoIAlign):
            raise NotExportable(f"{name}: an RPN detector exports with an FPN backbone and "
                                f"multi-level RoIAlign, not {type(ex).__name__}")
        self.levels = list(ex.features)
        self.heads = list(model.instance_heads)
        for h in self.heads:
            pool = model.instance_heads[h].pool
            if not isinstance(pool, MultiLevelRoIAlign) or list(pool.features) != self.levels:
                raise NotExportable(f"{name}: the {h} head pools other levels than the box head")
        rpn: RPN = model.proposal_generator
        self.rpn_levels = rpn.features or list(model.backbone.level_names)
        self.stage_io = {
            "rpn": (["images"], [f"features.{f}" for f in self.levels]
                    + [f"objectness.{f}" for f in self.rpn_levels]
                    + [f"rpn_deltas.{f}" for f in self.rpn_levels]),
            "roi": ([f"roi_features.{f}" for f in self.levels] + ["rois"], ["scores", "deltas"]),
            **{h: ([f"roi_features.{f}" for f in self.levels] + [f"{h}_rois"], [f"{h}_logits"])
               for h in self.heads},
        }
        self.input_names = ("images", *[f"roi_features.{f}" for f in self.levels], "rois",
                            *[f"{h}_rois" for h in self.heads])
        self.output_names = tuple(n for _, outs in self.stage_io.values() for n in outs)

    def stages(self) -> dict[str, tuple[list[str], list[str]]]:
        return self.stage_io

    def core(self) -> nn.Module:
        return _RPNDetectorCore(self.model, self.levels, self.heads)

    def stride(self) -> int:
        t = self.model.image_transform
        return int(t.size_divisible) if isinstance(t, MinMaxResize) else int(self.model.stride)

    def example_hw(self) -> tuple[int, int]:
        t = self.model.image_transform
        side = _padded_side(t.max_size if isinstance(t, MinMaxResize) else self.model.img_size,
                            self.stride())
        return side, side

    def example_inputs(self) -> tuple[Tensor, ...]:
        h, w = self.example_hw()
        images = torch.zeros(1, 3, h, w)
        with torch.no_grad():
            feats = self.core().rpn(images)[: len(self.levels)]
        rois = torch.tensor([[0, 0, 0, w / 2, h / 2], [0, w / 4, h / 4, w, h],
                             [0, 1, 2, w / 3, h - 1]], dtype=torch.float32)
        return (images, *[torch.zeros_like(f) for f in feats], rois, *[rois] * len(self.heads))

    def dynamic_axes(self, dynamic: bool) -> dict[str, dict[int, str]]:
        axes: dict[str, dict[int, str]] = {"rois": {0: "regions"}, "scores": {0: "regions"},
                                           "deltas": {0: "regions"}}
        for h in self.heads:
            axes[f"{h}_rois"] = {0: "detections"}
            axes[f"{h}_logits"] = {0: "detections"}
        if dynamic:
            axes["images"] = {0: "batch", 2: "height", 3: "width"}
            for f in self.levels:
                axes[f"features.{f}"] = axes[f"roi_features.{f}"] = \
                    {0: "batch", 2: f"height_{f}", 3: f"width_{f}"}
            for f in self.rpn_levels:
                axes[f"objectness.{f}"] = axes[f"rpn_deltas.{f}"] = \
                    {0: "batch", 2: f"height_{f}", 3: f"width_{f}"}
        return axes

    def torch_runner(self, core: nn.Module) -> Runner:
        def run(inputs: dict[str, Tensor]) -> dict[str, Tensor]:
            stage = self.stage_of(inputs)
            outs = self.stage_io[stage][1]
            if stage == "rpn":
                got = core.rpn(inputs["images"])
            else:
                feats = [inputs[f"roi_features.{f}"] for f in self.levels]
                got = (core.roi(feats, inputs["rois"]) if stage == "roi"
                       else (core.instance(stage, feats, inputs[f"{stage}_rois"]),))
            return dict(zip(outs, got))
        return run

    def prepare(self, images, fixed_hw=None, targets=None):
        batch, _ = self.model.transform(images)
        batch = _pad_to(batch, fixed_hw)
        return {"images": batch.tensor}, batch

    def run(self, run_core: Runner, images, fixed_hw=None, targets=None, **kwargs):
        """Stage by stage (module docstring), with the model's own code between the stages."""
        m = self.model
        inputs, batch = self.prepare(images, fixed_hw, targets)
        out = run_core(inputs)
        feats = {f"roi_features.{f}": out[f"features.{f}"] for f in self.levels}
        logits = [out[f"objectness.{f}"] for f in self.rpn_levels]
        deltas = [out[f"rpn_deltas.{f}"] for f in self.rpn_levels]
        proposals, _ = m.proposal_generator.proposals(batch, logits, deltas)
        c = m.num_classes
        rois = _rois(proposals)
        if len(rois):
            got = run_core({**feats, "rois": rois})
            scores, box_deltas = got["scores"], got["deltas"]
        else:  # onnxruntime refuses empty RoI sets
            scores, box_deltas = torch.zeros(0, c), torch.zeros(0, 4 * c)
        dets = m.detect(scores, box_deltas, proposals, batch)
        extra = []
        for h in self.heads:
            head = m.instance_heads[h]
            det_rois = _rois([d["boxes"] for d in dets])
            if len(det_rois):
                head_logits = run_core({**feats, f"{h}_rois": det_rois})[f"{h}_logits"]
            else:
                k = head.pool.out_shape[-1] * (2 if h == "mask" else 4)
                width = c if h == "mask" else head.num_keypoints
                head_logits = torch.zeros(0, width, k, k)
            extra.append(head.postprocess(head_logits, batch, dets))
        return m.assemble(dets, extra, batch)

    def finish(self, outputs, ctx, **kwargs):  # pragma: no cover - run() replaces it
        raise NotImplementedError("RPNAdapter runs stage by stage (RPNAdapter.run)")

    def describe(self) -> dict[str, Any]:
        m = self.model
        rpn: RPN = m.proposal_generator
        t = m.image_transform
        c = m.num_classes
        gen = rpn.anchor_generator
        pre = (_preprocess_meta(m.img_size, True, self.stride()) if not isinstance(t, MinMaxResize) else
               {"min_size": t.min_size, "max_size": t.max_size, "resize":
                "scale = min(min_size / shorter side, max_size / longer side), bilinear "
                "(align_corners=False, no antialiasing, torchvision GeneralizedRCNNTransform), "
                "after normalisation", "input_range": "RGB float in [0, 1] before normalisation",
                "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
                "pad": f"zeros at the bottom/right to a multiple of {t.size_divisible}"})
        a = gen.num_anchors_per_location()[0]
        outputs = {
            **{f"features.{f}": f"float Tensor[B, {m.backbone.channels[f]}, H/{m.backbone.strides[f]}, "
                                f"W/{m.backbone.strides[f]}] FPN level {f}" for f in self.levels},
            **{f"objectness.{f}": f"float Tensor[B, {a}, h, w] RPN object logits at level {f}"
               for f in self.rpn_levels},
            **{f"rpn_deltas.{f}": f"float Tensor[B, {4 * a}, h, w] RPN (dx, dy, dw, dh) per anchor"
               for f in self.rpn_levels},
            "scores": f"float Tensor[R, {c}] per foreground class: softmax over C + 1, background "
                      "column dropped",
            "deltas": f"float Tensor[R, {4 * c}] class-specific box deltas, weights "
                      f"{list(m.box_coder.weights)}",
        }
        if "mask" in self.heads:
            outputs["mask_logits"] = f"float Tensor[N, {c}, 28, 28] per-class mask logits"
        if "keypoint" in self.heads:
            k = m.instance_heads["keypoint"].num_keypoints
            outputs["keypoint_logits"] = f"float Tensor[N, {k}, 56, 56] keypoint heatmap logits"
        inputs = {"images": "float Tensor[B, 3, H, W] normalised, padded batch",
                  **{f"roi_features.{f}": f"stage 1's features.{f}" for f in self.levels},
                  "rois": "float Tensor[R, 5] (batch index, x1, y1, x2, y2) proposals in pixels of "
                          "the resized image",
                  **{f"{h}_rois": "float Tensor[N, 5] (batch index, x1, y1, x2, y2) the "
                                  "detections, resized frame" for h in self.heads}}
        post: dict[str, Any] = {
            "proposals": {"anchors": {"sizes": [list(s) for s in gen.sizes],
                                      "aspect_ratios": [list(r) for r in gen.aspect_ratios],
                                      "levels": self.rpn_levels,
                                      "order": "per level: row-major positions, anchors inner"},
                          "decode": "box coder weights (1, 1, 1, 1)",
                          "pre_nms_top_n_per_level": rpn.pre_nms_top_n["testing"],
                          "clip": "to the resized image", "min_size": rpn.min_size,
                          "score_thresh": rpn.score_thresh, "nms": "per level",
                          "nms_thresh": rpn.nms_thresh,
                          "post_nms_top_n": rpn.post_nms_top_n["testing"]},
            "roi_levels": "FPN eq. 1 in the graph: k = floor(4 + log2(sqrt(area) / 224)) clamped "
                          f"to {self.levels[0]}..{self.levels[-1]}",
            "detect": {"decode": "Fast R-CNN box coder", "clip": "to the resized image",
                       "score_thresh": m.score_thresh, "min_size": 1e-2,
                       "nms": "per class (torchvision batched_nms)", "nms_thresh": m.nms_thresh,
                       "detections_per_img": m.detections_per_img},
            "map_back": "scale by original / resized size, clip",
        }
        if "mask" in self.heads:
            post["masks"] = ("the predicted class's logits, sigmoid, pasted into the original image "
                             "(torchvision paste_masks_in_image), > "
                             f"{m.instance_heads['mask'].mask_thresh}")
        if "keypoint" in self.heads:
            post["keypoints"] = "torchvision keypointrcnn_inference (bicubic to the box, argmax)"
        return {"preprocess": pre, "inputs": inputs, "outputs": outputs, "postprocess": post,
                "stages": {k: {"inputs": v[0], "outputs": v[1]} for k, v in self.stage_io.items()},
                "split": ("three stages of one graph, run one after the other with detseg's Python "
                          "between them (see 'stages'; one session per stage, or feed a stage's "
                          "inputs and tiny tensors to the others)")}

    def stage_of(self, inputs: dict[str, Tensor]) -> str:
        keys = set(inputs)
        for name, (ins, _) in self.stage_io.items():
            if set(ins) == keys:
                return name
        raise ValueError(f"onnx: inputs {sorted(keys)} are no stage's "
                         f"({ {k: v[0] for k, v in self.stage_io.items()} })")


def _rois(boxes: list[Tensor]) -> Tensor:
    """``list[Tensor[N_i, 4]]`` -> ``Tensor[sum N_i, 5]`` (batch index, x1, y1, x2, y2)."""
    return torch.cat([torch.cat([b.new_full((len(b), 1), i), b], 1) for i, b in enumerate(boxes)])
