"""The single-shot detectors together (yolo_v1, yolo, ssd on detseg.models.detection.one_stage):
each overfits four shapes images to mAP50 = 1.0, eval mode gives losses and predictions in the
original image's pixels, and each trains for an epoch and evaluates through the CLI."""

import json

import pytest
import torch

from detseg.cli import main
from detseg.data import build_dataset
from detseg.engine.checkpoint import load_model
from detseg.evaluation import build_evaluator
from detseg.models.detection.one_stage import OneStageDetector
from detseg.models.transform import ImageBatch
from detseg.models.zoo import ZOO, build_model

MODELS = ["yolo_v1", "yolo", "ssd"]


def _four_images():
    ds = build_dataset("shapes:size=64,n=4,max_objects=2", split="train", task="detection")
    ims, tgs = [], []
    for i in range(4):
        im, t = ds[i]
        ims.append(im)
        tgs.append({k: t[k] for k in ("boxes", "labels", "image_id", "orig_size")})
    return ds, ims, tgs


@pytest.mark.parametrize("name", MODELS)
def test_overfits_four_images_to_map50_one(name):
    ds, ims, tgs = _four_images()
    torch.manual_seed(0)
    model = build_model(name, ds.classes, img_size=64, backbone="alexnet_small", backbone_width=8)
    if hasattr(model, "fit_priors"):
        model.fit_priors(ds)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    first = None
    for _ in range(80):
        loss = model(ims, tgs).loss
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.2 * first
    model.eval()
    with torch.no_grad():
        out = model(ims, tgs)
    assert out.losses and all(torch.isfinite(v) for v in out.losses.values())
    evaluator = build_evaluator("detection", ds.classes)
    evaluator.update(out.predictions, tgs)
    assert evaluator.compute()["mAP50"] == 1.0


@pytest.mark.parametrize("name", MODELS)
def test_eval_mode_predictions_follow_the_common_structure(name):
    assert ZOO[name].task == "detection"
    torch.manual_seed(0)
    model = build_model(name, ["a", "b", "c"], img_size=64, backbone="simple", score_thresh=0.0).eval()
    ims = [torch.rand(3, 48, 80), torch.rand(3, 70, 40)]
    with torch.no_grad():
        preds = model(ims).predictions
    for im, p in zip(ims, preds):
        h, w = im.shape[-2:]
        assert len(p["boxes"]) > 0 and p["boxes"].shape == (len(p["scores"]), 4)
        assert (p["boxes"][:, 0::2] <= w).all() and (p["boxes"][:, 1::2] <= h).all()
        assert (p["boxes"] >= 0).all() and (p["boxes"][:, 2:] > p["boxes"][:, :2]).all()
        assert p["labels"].dtype == torch.int64 and ((p["labels"] >= 1) & (p["labels"] <= 3)).all()
        assert (p["scores"][:-1] >= p["scores"][1:]).all() and len(p["scores"]) <= 100


def test_postprocess_maps_network_boxes_back_to_the_original_image():
    model = build_model("ssd", ["a", "b"], img_size=64, backbone="simple")
    assert isinstance(model, OneStageDetector)
    batch = ImageBatch(torch.zeros(1, 3, 64, 64), [(64, 48)], [(128, 96)])
    boxes = torch.tensor([[[8.0, 8, 24, 40], [8.5, 8, 24, 40], [30, 30, 40, 60]]])
    scores = torch.tensor([[[0.9, 0.1], [0.8, 0.0], [0.0, 0.005]]])  # the last: below 0.01
    p = model.postprocess(boxes, scores, batch)[0]
    # NMS keeps the first box, the 0.1 class-2 duplicate survives (per-class NMS), x2 scale back
    assert p["labels"].tolist() == [1, 2] and torch.allclose(p["scores"], torch.tensor([0.9, 0.1]))
    assert torch.allclose(p["boxes"], torch.tensor([[16.0, 16, 48, 80]] * 2))


@pytest.mark.parametrize("name", MODELS)
def test_train_one_epoch_and_eval_through_the_cli(name, tmp_path):
    out = tmp_path / "runs"
    data = "shapes:size=32,n=8"
    assert main(["train", name, "--data", data, "--img-size", "32", "--epochs", "1", "--batch", "4",
                 "--device", "cpu", "--out", str(out), "--quiet", "-o", "backbone=simple"]) == 0
    ckpt = out / name / "train1" / "best.pt"
    assert ckpt.is_file()
    if name == "yolo":  # the trainer fitted the anchors to the training boxes before epoch 1
        stand_in = build_model("yolo", ["x"], img_size=32, backbone="simple").anchors
        assert not torch.equal(load_model(ckpt).anchors, stand_in)
    mjson = tmp_path / "m.json"
    assert main(["eval", str(ckpt), "--data", data, "--json", str(mjson)]) == 0
    metrics = json.loads(mjson.read_text())
    assert {"mAP", "mAP50", "loss"} <= set(metrics)
