"""ONNX parity with onnxruntime for every exportable zoo family (issue 16, first acceptance bullet).

Each case is a tiny model with decisive random weights (the single-shot and RPN detectors
included: YOLO v1, YOLO, SSD, Faster / Mask / Keypoint R-CNN), exported twice: with fixed shapes (one
image of the exported size: square images, run one at a time) and ``dynamic`` (batch and spatial
axes free: 5 images of mixed sizes in one batch of 5, not the export's 1). On 5 random images:

- the raw core outputs (logits, boxes, heatmaps, region scores/deltas) differ by <= 1e-4;
- the final predictions agree: semantic logits <= 1e-4 at the original size; the same classes and
  boxes <= 1e-3 px (cls_loc); joints <= 1e-3 px (pose); detections one-to-one after matching
  (same label, score within 1e-4, boxes within 1e-3 px), and for the matched detections pasted
  mask probabilities <= 1e-4 with identical binary masks, keypoints <= 1e-3 px.
"""

from __future__ import annotations


import pytest
import torch
from torch import nn

from detseg.export import NotExportable, export_onnx
from detseg.export.parity import core_diff, match_detections, prediction_diff
from detseg.export.runtime import OnnxModel
from detseg.models.init import decisive_init
from detseg.models.zoo import build_model

SEG = ["background", "circle", "square"]
FG = ["circle", "square"]
TINY_DET = dict(img_size=64, backbone_width=8, hidden=32, proposals="sliding_window",
                num_proposals=60)
ONE_STAGE = dict(img_size=64, backbone="alexnet_small", backbone_width=8)
RPN_DET = dict(img_size=64, backbone="alexnet_small_fpn", backbone_width=8, fpn_channels=16,
               representation=32, anchor_sizes=[8, 16, 32, 48, 64], detections_per_img=30)

CASES = {
    **{f"fcn-{kind}": ("fcn", SEG, dict(img_size=64, backbone_width=8, width=16, upsample=kind))
       for kind in ("transpose", "nearest", "bed_of_nails", "max_unpool", "bilinear", "resize_conv")},
    "fcn_same_res": ("fcn_same_res", SEG, dict(img_size=32, depth=3, width=8)),
    "fcn32s": ("fcn32s", SEG, dict(img_size=64, backbone="alexnet_small", backbone_width=8, head_width=16)),
    "fcn16s": ("fcn16s", SEG, dict(img_size=64, backbone="alexnet_small", backbone_width=8, head_width=16)),
    "fcn8s": ("fcn8s", SEG, dict(img_size=64, backbone="alexnet_small", backbone_width=8, head_width=16)),
    "sliding_window_seg": ("sliding_window_seg", SEG, dict(img_size=32, patch=7, width=8, hidden=16)),
    "sliding_window_seg-window": ("sliding_window_seg", SEG,
                                  dict(img_size=32, patch=7, width=8, hidden=16, mode="window")),
    "segnet": ("segnet", SEG, dict(img_size=32, backbone="simple", depth=3)),
    "deeplab": ("deeplab", SEG, dict(img_size=64, backbone="simple", aspp_channels=16,
                                     atrous_rates=[1, 2])),
    "cls_loc": ("cls_loc", FG, dict(img_size=32, backbone_width=8, hidden=32)),
    "cls_loc-xyxy-per-class": ("cls_loc", FG, dict(img_size=64, backbone_width=8, hidden=32,
                                                    box_format="xyxy", class_agnostic=False)),
    "pose_regression": ("pose_regression", ["person"], dict(img_size=32, backbone_width=8, hidden=32)),
    "pose_regression-cascade": ("pose_regression", ["person"],
                                dict(img_size=64, backbone_width=8, hidden=32, cascade_stages=1)),
    "pose_heatmap": ("pose_heatmap", ["person"], dict(img_size=32, backbone_width=8,
                                                      deconv_channels=16)),
    "fast_rcnn": ("fast_rcnn", FG, TINY_DET),
    "fast_rcnn-align": ("fast_rcnn", FG, {**TINY_DET, "roi": "align"}),
    "rcnn": ("rcnn", FG, {**TINY_DET, "crop_size": 32, "context_pad": 2.0}),
    "fast_rcnn-selective_search": ("fast_rcnn", FG, {**TINY_DET, "proposals": "selective_search"}),
    "sliding_window_det": ("sliding_window_det", FG, dict(img_size=64, backbone_width=8, hidden=32,
                                                          crop_size=32, scales=[0.3, 0.6])),
    **{name: (name, FG, ONE_STAGE) for name in ("yolo_v1", "yolo", "ssd")},
    "yolo-v5": ("yolo", FG, {**ONE_STAGE, "box_param": "v5"}),
    "faster_rcnn": ("faster_rcnn", FG, RPN_DET),
    "mask_rcnn": ("mask_rcnn", FG, {**RPN_DET, "mask_layers": [16, 16]}),
    "keypoint_rcnn": ("keypoint_rcnn", ["person"], {**RPN_DET, "keypoint_layers": [16, 16]}),
}


def decisive(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights with unit-scale activations (zoo inits start many heads at ~0, where argmax,
    heatmap peaks and NMS order would hang on rounding), and non-trivial batch-norm statistics."""
    decisive_init(model, seed)
    with torch.no_grad():
        rpn = getattr(model, "proposal_generator", None)
        if hasattr(rpn, "head"):
            # The RPN detectors' box layers at a tenth: at full scale they make slivers (boxes
            # 0.05 px high) with saturated scores, whose NMS decisions flip on float rounding.
            for layer in (rpn.head.bbox_pred, model.box_head.bbox_pred, model.box_head.cls_score):
                layer.weight.mul_(0.1)
                layer.bias.mul_(0.1)
    return model.eval()


def keep_mask_probs(model) -> None:
    """Mask R-CNN also returns the pasted probabilities (compared to 1e-4, not only binary)."""
    heads = getattr(model, "instance_heads", {})
    if "mask" in heads:
        heads["mask"].keep_probs = True


def images(n: int, side: int, square: bool, seed: int = 1) -> list[torch.Tensor]:
    """``n`` random images around ``side`` px: squares, or wide ones of mixed sizes (height 0.35
    to 0.5 of the width: the padded batch is then lower than the export's square example, so the
    dynamic spatial axes are exercised, not only the batch axis)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        w = side + int(torch.randint(-side // 4, side // 4 + 1, (1,), generator=g))
        h = w if square else round(w * (0.35 + 0.15 * float(torch.rand(1, generator=g))))
        # smooth-ish content: rectangles on noise, so proposals and maps have something to see
        im = torch.rand(3, h, w, generator=g) * 0.3
        im[:, h // 4: h // 2, w // 5: w // 2] += 0.6
        out.append(im.clamp(0, 1))
    return out


def check_predictions(task: str, diff: dict) -> None:
    if task == "semantic":
        assert diff["logits"] <= 1e-4, diff
        assert diff["label_disagreement"] <= 1e-3, diff
    elif task == "pose":
        assert diff["keypoints_px"] <= 1e-3, diff
    elif task == "cls_loc":
        assert diff["class_mismatch"] == 0 and diff["box_px"] <= 1e-3 and diff["scores"] <= 1e-4, diff
    else:
        assert diff["detections"] > 0, diff
        assert diff["unmatched"] == 0 and diff["matched"] == diff["detections"], diff
        assert diff["box_px"] <= 1e-3, diff
        if task == "instance":
            assert diff["mask_probs"] <= 1e-4 and diff["mask_pixels_differing"] == 0, diff
        if task == "keypoints":
            assert diff["keypoints_px"] <= 1e-3 and diff["keypoints_scores"] <= 1e-4, diff


@pytest.mark.parametrize("case", list(CASES))
def test_parity_fixed_and_dynamic(case, tmp_path):
    name, classes, opts = CASES[case]
    model = decisive(build_model(name, classes, **opts))
    keep_mask_probs(model)
    side = opts["img_size"]
    for dynamic in (False, True):
        path = export_onnx(model, tmp_path / f"{case}-{dynamic}.onnx", dynamic=dynamic)
        onnx_model = OnnxModel(path)
        keep_mask_probs(onnx_model.shell)
        # a fixed file takes squares of its size (after the resize); a dynamic one any batch
        ims = images(5, side, square=not dynamic)
        # (YOLO v1 and SSD warp to a square: only their batch axis is free)
        if dynamic and model.task in ("semantic", "detection", "instance", "keypoints") \
                and getattr(model, "keep_aspect", True):
            inputs, _ = onnx_model.adapter.prepare(ims)
            if "images" in inputs:  # (R-CNN's file takes crops)
                assert inputs["images"].shape[-2] < onnx_model.meta["input_hw"][0]
        cores = core_diff(model, onnx_model, ims)
        assert cores and max(cores.values()) <= 1e-4, (dynamic, cores)
        check_predictions(model.task, prediction_diff(model, onnx_model, ims))


def test_metadata_states_pre_and_post_processing(tmp_path):
    import json

    import onnx

    model = build_model("fast_rcnn", FG, **TINY_DET)
    path = export_onnx(model, tmp_path / "det.onnx", dynamic=True, opset=17)
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert props["builder"] == "fast_rcnn" and props["task"] == "detection"
    assert json.loads(props["classes"]) == FG
    assert json.loads(props["builder_args"])["proposals"] == "sliding_window"
    pre = json.loads(props["preprocess"])
    assert pre["img_size"] == 64 and len(pre["mean"]) == 3 and len(pre["std"]) == 3
    post = json.loads(props["postprocess"])
    assert post["nms_thresh"] == 0.5 and post["score_thresh"] == 0.05
    assert set(json.loads(props["outputs"])) == {"scores", "deltas"}
    assert set(json.loads(props["inputs"])) == {"images", "rois"}
    assert props["detseg_version"] and json.loads(props["dynamic"]) is True


def test_crf_is_not_exportable_in_one_line():
    model = build_model("deeplab", SEG, img_size=32, backbone="simple", aspp_channels=8, crf=True)
    with pytest.raises(NotExportable) as e:
        export_onnx(model, "never-written.onnx")
    msg = str(e.value)
    assert "crf" in msg and "\n" not in msg and "crf=false" in msg


def test_onnx_model_refuses_network_options_and_foreign_files(tmp_path):
    model = build_model("cls_loc", FG, img_size=32, backbone_width=8, hidden=16)
    path = export_onnx(model, tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="re-export"):
        OnnxModel(path, hidden=64)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx file")
    with pytest.raises(ValueError, match="bad.onnx"):
        OnnxModel(bad)


def test_match_detections():
    a = {"boxes": torch.tensor([[0., 0, 10, 10], [5, 5, 20, 20]]), "labels": torch.tensor([1, 2]),
         "scores": torch.tensor([0.9, 0.5])}
    b = {"boxes": torch.tensor([[5, 5, 20, 20.0005], [0., 0, 10, 10]]), "labels": torch.tensor([2, 1]),
         "scores": torch.tensor([0.50001, 0.9])}
    matched, unmatched, worst = match_detections(a, b)
    assert (matched, unmatched) == (2, 0) and worst == pytest.approx(5e-4, abs=1e-5)
    b["labels"] = torch.tensor([1, 1])
    assert match_detections(a, b)[:2] == (1, 2)


def test_fixed_file_takes_other_sizes_and_batches(tmp_path):
    """A fixed-shape file pads each preprocessed image to its size and runs images one at a time."""
    model = decisive(build_model("fcn", SEG, img_size=64, backbone_width=8, width=16))
    onnx_model = OnnxModel(export_onnx(model, tmp_path / "fixed.onnx"))
    ims = [torch.rand(3, 40, 64), torch.rand(3, 64, 23), torch.rand(3, 30, 30)]
    preds = onnx_model(ims).predictions
    assert [tuple(p["sem_seg"].shape) for p in preds] == [(40, 64), (64, 23), (30, 30)]
    ref = model(ims).predictions
    agree = sum(int((p["sem_seg"] == r["sem_seg"]).sum()) for p, r in zip(preds, ref))
    assert agree / sum(r["sem_seg"].numel() for r in ref) > 0.9  # padding differs near the border


def test_detector_without_proposals_gives_no_detections(tmp_path):
    model = build_model("fast_rcnn", FG, **TINY_DET)
    onnx_model = OnnxModel(export_onnx(model, tmp_path / "det.onnx", dynamic=True))
    inputs, ctx = onnx_model.adapter.prepare([torch.rand(3, 40, 50)])
    inputs["rois"] = inputs["rois"][:0]
    outputs = onnx_model.run_core(inputs)
    assert tuple(outputs["scores"].shape) == (0, 2) and tuple(outputs["deltas"].shape) == (0, 8)
    (pred,) = onnx_model.adapter.finish(outputs, ([ctx[0][0][:0]], ctx[1]))
    assert len(pred["boxes"]) == 0 and len(pred["labels"]) == 0


def test_rcnn_with_fitted_svms(tmp_path):
    """R-CNN scoring with its per-class SVMs (``detseg svm``) exports the SVM scores."""
    import json

    import onnx

    name, classes, opts = CASES["rcnn"]
    model = decisive(build_model(name, classes, **opts))
    head = model.box_head
    with torch.no_grad():
        head.svm_weight.copy_(torch.randn(head.svm_weight.shape, generator=torch.Generator().manual_seed(3)))
        head.svm_fitted.fill_(True)
    path = export_onnx(model, tmp_path / "svm.onnx", dynamic=True)
    assert "SVM" in json.loads({p.key: p.value for p in onnx.load(str(path)).metadata_props}["outputs"])["scores"]
    onnx_model = OnnxModel(path)
    ims = images(5, opts["img_size"], square=False)
    assert max(core_diff(model, onnx_model, ims).values()) <= 1e-4
    check_predictions("detection", prediction_diff(model, onnx_model, ims))
