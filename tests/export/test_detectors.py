"""The detector adapters (detseg.export.detectors): what their files state and carry, and the
single-shot and RPN detectors through ``detseg export`` / ``predict`` / ``eval`` / ``detseg.load``
(their parity over fixed and dynamic files is in test_onnx_parity.py)."""

from __future__ import annotations

import json

import onnx
import pytest
import torch

from detseg.cli import main
from detseg.data import build_dataset
from detseg.engine.checkpoint import save_checkpoint
from detseg.export import export_onnx
from detseg.export.onnx import read_metadata
from detseg.export.parity import core_diff, prediction_diff
from detseg.export.runtime import OnnxModel
from detseg.io import save_png
from detseg.models.zoo import build_model
from tests.export.test_onnx_parity import (CASES, FG, ONE_STAGE, RPN_DET, check_predictions,
                                           decisive, images)


def _props(path) -> dict:
    return read_metadata({p.key: p.value for p in onnx.load(str(path)).metadata_props}, path)


def test_yolo_fitted_anchors_travel_in_the_metadata(tmp_path):
    """k-means anchors are buffers, not builder options: the file's metadata carries them and the
    runtime decodes with them, not with the stand-ins a fresh model starts from."""
    model = decisive(build_model("yolo", FG, **ONE_STAGE))
    fitted = torch.tensor([[3., 4], [6, 5], [7, 9], [10, 14], [16, 12], [15, 22], [25, 30],
                           [40, 28], [50, 60]]).view_as(model.anchors)
    model.anchors.copy_(fitted)
    path = export_onnx(model, tmp_path / "yolo.onnx", dynamic=True)
    props = _props(path)
    assert props["anchors"] == fitted.tolist() and props["strides"] == model.level_strides
    assert "sigmoid" in props["postprocess"]["decode"] and props["postprocess"]["nms_thresh"] == 0.5
    onnx_model = OnnxModel(path)
    assert torch.equal(onnx_model.shell.anchors, fitted)
    ims = images(5, 64, square=False)
    check_predictions("detection", prediction_diff(model, onnx_model, ims))


def test_ssd_file_outputs_its_priors(tmp_path):
    model = decisive(build_model("ssd", FG, **ONE_STAGE))
    path = export_onnx(model, tmp_path / "ssd.onnx")
    props = _props(path)
    assert set(props["outputs"]) == {"logits", "deltas", "priors"}
    assert props["priors"]["aspect_ratios"] and props["postprocess"]["nms_thresh"] == 0.45
    onnx_model = OnnxModel(path)
    inputs, _ = onnx_model.adapter.prepare(images(1, 64, square=True), onnx_model.fixed_hw)
    priors = onnx_model.run_core(inputs)["priors"]
    with torch.no_grad():
        ref = model.head_outputs(inputs["images"])["anchors"]
    assert torch.allclose(priors, ref, atol=1e-4)


def test_rpn_file_states_its_stages_and_runs_them_apart(tmp_path):
    name, classes, opts = CASES["mask_rcnn"]
    model = decisive(build_model(name, classes, **opts))
    path = export_onnx(model, tmp_path / "mask.onnx", dynamic=True)
    props = _props(path)
    assert list(props["stages"]) == ["rpn", "roi", "mask"]
    assert props["stages"]["rpn"]["inputs"] == ["images"]
    assert props["stages"]["mask"]["outputs"] == ["mask_logits"]
    post = props["postprocess"]
    assert post["proposals"]["anchors"]["sizes"] == [[8.0], [16.0], [32.0], [48.0], [64.0]]
    assert post["detect"]["nms_thresh"] == 0.5 and "paste" in post["masks"]
    assert "stages" in props["split"]
    onnx_model = OnnxModel(path)
    # one session per stage, each with only its own inputs
    for stage, (ins, outs, session) in onnx_model.stages.items():
        assert [i.name for i in session.get_inputs()] == ins, stage
        assert [o.name for o in session.get_outputs()] == outs, stage
    # every stage's raw outputs, fed what onnxruntime was fed
    diffs = core_diff(model, onnx_model, images(2, 64, square=False))
    assert {"features.p2", "objectness.p6", "scores", "deltas", "mask_logits"} <= set(diffs)
    assert max(diffs.values()) <= 1e-4


def test_rpn_image_without_detections(tmp_path):
    """No proposal above the box threshold: no RoI or mask stage call, empty predictions."""
    name, classes, opts = CASES["mask_rcnn"]
    model = decisive(build_model(name, classes, **{**opts, "box_score_thresh": 1.0}))
    onnx_model = OnnxModel(export_onnx(model, tmp_path / "m.onnx", dynamic=True))
    (pred,) = onnx_model([torch.rand(3, 40, 50)]).predictions
    assert len(pred["boxes"]) == 0 and tuple(pred["masks"].shape) == (0, 40, 50)
    (ref,) = model([torch.rand(3, 40, 50)]).predictions
    assert set(ref) == set(pred)


def _checkpoint(path, model, ds_classes):
    save_checkpoint(path, {"builder": model.builder_name, "builder_args": model.builder_args,
                           "task": model.task, "classes": ds_classes, "model": model.state_dict(),
                           "dataset_info": {}})
    return path


@pytest.mark.parametrize("name", ["yolo", "mask_rcnn"])
def test_export_predict_eval_load(name, tmp_path):
    """``detseg export`` of a checkpoint, then ``predict`` a folder, ``eval`` and ``detseg.load``
    on the .onnx file: the checkpoint's metrics and predictions."""
    import detseg

    task = "instance" if name == "mask_rcnn" else "detection"
    ds = build_dataset("shapes:size=48,n=4", split="val", task=task)
    opts = RPN_DET if name == "mask_rcnn" else ONE_STAGE
    opts = {**opts, "img_size": 48, **({"mask_layers": [16, 16]} if name == "mask_rcnn" else {})}
    model = decisive(build_model(name, ds.classes, **opts))
    if name == "yolo":  # "fitted" anchors: in the checkpoint's state, then the file's metadata
        model.anchors.mul_(1.5)
    ckpt = _checkpoint(tmp_path / f"{name}.pt", model, ds.classes)
    onnx_file = tmp_path / f"{name}.onnx"
    assert main(["export", str(ckpt), "--dynamic"]) == 0 and onnx_file.is_file()
    folder = tmp_path / "imgs"
    for i in range(2):
        save_png(folder / f"im{i}.png", (ds[i][0].permute(1, 2, 0) * 255).byte().numpy())
    assert main(["predict", str(onnx_file), str(folder), "--out", str(tmp_path / "pred"),
                 "--save-json"]) == 0
    assert (tmp_path / "pred" / "im0.png").is_file()
    assert isinstance(json.loads((tmp_path / "pred" / "coco_results.json").read_text()), list)
    data = "shapes:size=48,n=4"
    m_pt, m_onnx = tmp_path / "pt.json", tmp_path / "onnx.json"
    assert main(["eval", str(ckpt), "--data", data, "--device", "cpu", "--json", str(m_pt)]) == 0
    assert main(["eval", str(onnx_file), "--data", data, "--json", str(m_onnx)]) == 0
    a, b = json.loads(m_pt.read_text()), json.loads(m_onnx.read_text())
    assert "loss" not in b and set(a) - {"loss"} == set(b)
    for key in b:  # boxes, and Mask R-CNN's mask metrics too
        assert a[key] == pytest.approx(b[key], abs=1e-6), key
    im = ds[0][0]
    (r,), (g,) = detseg.load(onnx_file).predict(im), detseg.load(ckpt).predict(im)
    assert r.task == g.task == task and len(g.prediction["boxes"]) > 0
    assert len(r.prediction["boxes"]) == len(g.prediction["boxes"])
    assert torch.allclose(r.prediction["boxes"], g.prediction["boxes"], atol=1e-3)
