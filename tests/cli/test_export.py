"""``detseg export`` end to end: export a checkpoint, then ``predict`` and ``eval`` the .onnx file
on a tiny shapes set with the same commands as the checkpoint, and the same metrics."""

from __future__ import annotations

import json

import pytest
import torch

from detseg.cli import main
from detseg.data import build_dataset
from detseg.engine.checkpoint import save_checkpoint
from detseg.io import save_png
from detseg.models.zoo import build_model


def _checkpoint(path, name: str, task: str, **opts):
    """A checkpoint of an untrained zoo model for the shapes world's classes."""
    torch.manual_seed(0)
    ds = build_dataset("shapes:size=32,n=2", split="val", task=task)
    classes = ds.seg_classes if task == "semantic" else ds.classes
    m = build_model(name, classes, **opts)
    save_checkpoint(path, {"builder": m.builder_name, "builder_args": m.builder_args,
                           "task": m.task, "classes": m.classes, "model": m.state_dict(),
                           "dataset_info": {}})
    return path


def _images(folder, n: int = 2, task: str = "semantic"):
    ds = build_dataset("shapes:size=48,n=4", split="val", task=task)
    for i in range(n):
        save_png(folder / f"im{i}.png", (ds[i][0].permute(1, 2, 0) * 255).byte().numpy())
    return folder


def test_export_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["export", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--dynamic" in out and "--opset" in out and "onnx" in out


def test_semantic_train_export_predict_eval(tmp_path, capsys):
    data = "shapes:size=32,n=16"
    assert main(["train", "fcn", "--data", data, "--img-size", "32", "--epochs", "1", "--batch", "8",
                 "--device", "cpu", "--out", str(tmp_path / "runs"), "--quiet",
                 "-o", "backbone_width=8", "-o", "width=16"]) == 0
    ckpt = tmp_path / "runs" / "fcn" / "train1" / "best.pt"
    onnx_file = tmp_path / "fcn.onnx"
    assert main(["export", str(ckpt), "--format", "onnx", "--dynamic", "--opset", "17",
                 "--out", str(onnx_file)]) == 0
    assert onnx_file.is_file() and "fcn.onnx" in capsys.readouterr().out
    # predict: the same outputs as from the checkpoint
    imgs = _images(tmp_path / "imgs")
    assert main(["predict", str(onnx_file), str(imgs), "--out", str(tmp_path / "pred"), "--save-json"]) == 0
    assert (tmp_path / "pred" / "im0.png").is_file() and (tmp_path / "pred" / "im1_label.png").is_file()
    assert len(json.loads((tmp_path / "pred" / "predictions.json").read_text())) == 2
    # eval: the metrics of the checkpoint (no loss: an ONNX core has no criterion)
    m_pt, m_onnx = tmp_path / "pt.json", tmp_path / "onnx.json"
    assert main(["eval", str(ckpt), "--data", data, "--device", "cpu", "--json", str(m_pt)]) == 0
    assert main(["eval", str(onnx_file), "--data", data, "--json", str(m_onnx)]) == 0
    a, b = json.loads(m_pt.read_text()), json.loads(m_onnx.read_text())
    assert "loss" not in b and a["mIoU"] == pytest.approx(b["mIoU"], abs=1e-6)
    assert {k: v for k, v in a.items() if k != "loss"}.keys() == b.keys()


def test_detector_export_predict_eval_default_out(tmp_path, capsys):
    ckpt = _checkpoint(tmp_path / "det.pt", "fast_rcnn", "detection", img_size=48,
                       backbone_width=8, hidden=32, proposals="sliding_window", num_proposals=40)
    assert main(["export", str(ckpt)]) == 0  # --format onnx and --out CKPT.onnx by default
    onnx_file = tmp_path / "det.onnx"
    assert onnx_file.is_file()
    imgs = _images(tmp_path / "imgs", task="detection")
    assert main(["predict", str(onnx_file), str(imgs), "--out", str(tmp_path / "pred"),
                 "--conf", "0", "--save-json"]) == 0
    assert isinstance(json.loads((tmp_path / "pred" / "coco_results.json").read_text()), list)
    data = "shapes:size=48,n=6"
    m_pt, m_onnx = tmp_path / "pt.json", tmp_path / "onnx.json"
    assert main(["eval", str(ckpt), "--data", data, "--device", "cpu", "--json", str(m_pt)]) == 0
    assert main(["eval", str(onnx_file), "--data", data, "--json", str(m_onnx)]) == 0
    a, b = json.loads(m_pt.read_text()), json.loads(m_onnx.read_text())
    for key in ("mAP", "mAP50"):
        assert a[key] == pytest.approx(b[key], abs=1e-6), key


def test_crf_checkpoint_says_why_in_one_line(tmp_path, capsys):
    ckpt = _checkpoint(tmp_path / "dl.pt", "deeplab", "semantic", img_size=32, backbone="simple",
                       aspp_channels=8, crf=True)
    assert main(["export", str(ckpt)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "crf" in err and err.startswith("detseg: error:")
    assert not (tmp_path / "dl.onnx").exists()
    # the CNN alone exports
    assert main(["export", str(ckpt), "-o", "crf=false"]) == 0
    assert (tmp_path / "dl.onnx").is_file()


def test_python_api_loads_onnx(tmp_path):
    import detseg

    ckpt = _checkpoint(tmp_path / "c.pt", "cls_loc", "cls_loc", img_size=32, backbone_width=8,
                       hidden=16)
    assert main(["export", str(ckpt), "--out", str(tmp_path / "c.onnx")]) == 0
    model = detseg.load(tmp_path / "c.onnx")
    ref = detseg.load(ckpt)
    im = torch.rand(3, 40, 30)
    (r,), (g,) = model.predict(im), ref.predict(im)
    assert r.task == "cls_loc" and r.classes == ref.classes
    assert int(r.prediction["class"]) == int(g.prediction["class"])
    assert torch.allclose(r.prediction["box"], g.prediction["box"], atol=1e-3)
