"""R-CNN's per-class SVMs (detseg.models.detection.svm, BoxHead's SVM buffers, ``detseg svm``):
scoring, hard-negative mining on hand-made features, the fc7 feature cache and the CLI verb."""

import json

import numpy as np
import pytest
import torch

from detseg.models.detection.box_head import BoxHead
from detseg.models.detection.svm import (FeatureCache, RegionFeatures, SVMConfig, collect_features,
                                  fit_svms, mine_and_fit, model_fingerprint)
from detseg.models.zoo import build_model

torch.set_num_threads(1)

CLASSES = ["a", "b"]
TINY_RCNN = dict(proposals="sliding_window", num_proposals=30, backbone="simple", crop_size=32,
                 context_pad=2, hidden=16)


def _rcnn(**kw):
    torch.manual_seed(0)
    return build_model("rcnn", CLASSES, img_size=48, **{**TINY_RCNN, **kw}).eval()


def _dataset(n: int = 3):
    gen = torch.Generator().manual_seed(0)
    items = []
    for i in range(n):
        image = torch.rand(3, 40, 48, generator=gen)
        target = {"boxes": torch.tensor([[4.0, 5.0, 24.0, 30.0], [20.0, 8.0, 44.0, 36.0]]),
                  "labels": torch.tensor([1, 2 if i % 2 else 1]), "image_id": i}
        items.append((image, target))
    return items


# ------------------------------------------------------------------------------ the box head
def test_unfitted_svm_head_scores_with_the_softmax():
    torch.manual_seed(0)
    head = BoxHead(12, 3, (8,), svm=True).eval()
    x = torch.randn(5, 12)
    logits, deltas = head(x)
    scores, deltas2 = head.predict(x)
    assert torch.allclose(scores, logits.softmax(-1)[:, 1:]) and torch.equal(deltas, deltas2)
    assert not head.uses_svm()
    with pytest.raises(ValueError, match="not fitted"):
        BoxHead(12, 3, (8,), svm=True, scorer="svm").predict(x)
    with pytest.raises(ValueError, match="no SVMs"):
        BoxHead(12, 3, (8,), scorer="svm").predict(x)
    with pytest.raises(ValueError, match="scorer"):
        BoxHead(12, 3, scorer="svms")


def test_fitted_svm_head_scores_with_the_logistic_of_the_margin():
    torch.manual_seed(0)
    head = BoxHead(12, 3, (8,), svm=True).eval()
    head.svm_weight.normal_()
    head.svm_bias.normal_()
    head.svm_fitted.fill_(True)
    x = torch.randn(5, 12)
    scores, _ = head.predict(x)
    margin = head.features(x) @ head.svm_weight.t() + head.svm_bias
    assert head.uses_svm() and torch.allclose(scores, margin.sigmoid())
    head.scorer = "softmax"
    assert torch.allclose(head.predict(x)[0], head(x)[0].softmax(-1)[:, 1:])
    # the SVMs are buffers: never trained by an optimiser, saved with the weights
    assert not any("svm" in n for n, _ in head.named_parameters())
    assert {"svm_weight", "svm_bias", "svm_fitted"} <= set(head.state_dict())


def test_checkpoint_without_svm_buffers_loads_unfitted():
    old = BoxHead(12, 3, (8,))  # a head saved before the SVM buffers existed
    head = BoxHead(12, 3, (8,), svm=True)
    head.load_state_dict(old.state_dict())
    assert not bool(head.svm_fitted) and torch.equal(head.cls_score.weight, old.cls_score.weight)


# ------------------------------------------------------------------------------ the mining
def _region(gen, n_neg, n_pos, label, d=6, hard=0):
    """Positives near +e0, easy negatives near -e0, ``hard`` negatives near the boundary."""
    e0 = torch.zeros(d)
    e0[0] = 1.0
    pos = e0 * 3 + 0.3 * torch.randn(n_pos, d, generator=gen)
    neg = -e0 * 3 + 0.3 * torch.randn(n_neg, d, generator=gen)
    hardn = 0.3 * torch.randn(hard, d, generator=gen)
    feats = torch.cat([neg, hardn])
    overlap = torch.zeros(len(feats), 2)
    return RegionFeatures(pos.half(), torch.full((n_pos,), label), feats.half(), overlap.half())


def test_hard_negative_mining_keeps_the_hard_and_evicts_the_easy():
    gen = torch.Generator().manual_seed(0)
    regions = [_region(gen, 100, 3, 1, hard=20) for _ in range(6)]
    cfg = SVMConfig(C=1.0, retrain_limit=60)
    w, b, scale, reports = mine_and_fit(regions, 2, 6, cfg)
    r = reports[0]
    assert r.positives == 18 and r.negatives_seen == 6 * 120
    # the first image's negatives all enter; afterwards only those inside the margin
    assert 120 <= r.hard_added < r.negatives_seen and r.retrains >= 2
    assert r.cached_at_end < r.hard_added  # easy negatives were evicted at a retrain
    assert r.train_accuracy == 1.0
    # the SVM separates positives from negatives; class "b" has no positives and never fires
    pos = torch.cat([x.gt_feats for x in regions]).float().numpy() * scale
    neg = torch.cat([x.feats for x in regions]).float().numpy() * scale
    assert (pos @ w[0] + b[0] > 0).all()
    assert ((neg @ w[0] + b[0])[neg[:, 0] < -2 * scale] < -1).all()  # the easy ones, far out
    assert reports[1].positives == 0 and reports[1].retrains == 0 and b[1] == -20 and not w[1].any()


def test_negatives_follow_the_iou_threshold():
    gen = torch.Generator().manual_seed(1)
    r = _region(gen, 10, 2, 1)
    r.overlap[:4, 0] = 0.5  # the grey zone: not negatives of class a
    r.overlap[4:6, 0] = 0.29
    _, _, _, reports = mine_and_fit([r], 2, 6, SVMConfig(neg_iou=0.3))
    assert reports[0].negatives_seen == 6 and reports[1].negatives_seen == 10


# ------------------------------------------------------------------------------ the model
def test_fit_svms_on_a_tiny_rcnn_changes_its_scores(tmp_path):
    model = _rcnn()
    data = _dataset()
    with torch.no_grad():
        before = model([im for im, _ in data[:1]]).predictions[0]
    report = fit_svms(model, data, SVMConfig(C=1.0), cache_dir=tmp_path, progress=False)
    assert report.images == 3 and report.cached_images == 0
    assert report.classes["a"].positives == 5 and report.classes["b"].positives == 1
    assert bool(model.box_head.svm_fitted) and model.box_head.svm_weight.abs().sum() > 0
    with torch.no_grad():
        after = model([im for im, _ in data[:1]]).predictions[0]
    assert len(after["scores"]) and ((after["scores"] > 0) & (after["scores"] < 1)).all()
    assert not (len(before["scores"]) == len(after["scores"])
                and torch.allclose(before["scores"], after["scores"]))
    # a second fit reads every image's features from the cache
    again = fit_svms(model, data, SVMConfig(C=1.0), cache_dir=tmp_path, progress=False)
    assert again.cached_images == 3


def test_feature_cache_is_keyed_by_weights_and_image(tmp_path):
    model = _rcnn()
    data = _dataset(2)
    fp = model_fingerprint(model)
    model.box_head.svm_fitted.fill_(True)  # the SVMs do not change the features
    assert model_fingerprint(model) == fp
    paths, hits = collect_features(model, data, tmp_path, progress=False)
    assert hits == 0 and len(set(paths)) == 2 and all(p.is_file() for p in paths)
    cache = FeatureCache(tmp_path, model)
    a = cache.load(paths[0])
    assert a.feats.shape[1] == model.box_head.feature_dim and a.overlap.shape[1] == 2
    with torch.no_grad():
        model.box_head.fc[1].weight.add_(0.1)
    assert model_fingerprint(model) != fp
    paths2, hits2 = collect_features(model, data, tmp_path, progress=False)
    assert hits2 == 0 and paths2[0].parent != paths[0].parent
    paths[0].write_bytes(b"torn")  # a broken cache file is recomputed, not fatal
    assert cache.load(paths[0]) is None


def test_fit_svms_needs_an_svm_head():
    model = build_model("fast_rcnn", CLASSES, img_size=48, proposals="sliding_window",
                        backbone="simple", roi_size=3, hidden=16)
    with pytest.raises(ValueError, match="no SVMs"):
        fit_svms(model, _dataset(1), progress=False)


# ------------------------------------------------------------------------------ the CLI
def test_svm_verb_writes_a_checkpoint_that_scores_with_svms(tmp_path, capsys):
    from detseg.api import load, train
    from detseg.cli import main

    data = "shapes:size=48,mode=scene,n=6,n_val=3"
    run = train("rcnn", data=data, epochs=1, img_size=48, batch=3, out=str(tmp_path), quiet=True,
                augment="none", device="cpu",
                model_opts={**TINY_RCNN, "rois_per_image": 16})
    out, js = tmp_path / "svm.pt", tmp_path / "svm.json"
    rc = main(["svm", str(run / "last.pt"), "--data", data, "--out", str(out), "--C", "0.1",
               "--json", str(js), "--device", "cpu"])
    text = capsys.readouterr().out
    assert rc == 0 and "positives" in text and "softmax" in text and "svm" in text
    result = json.loads(js.read_text())
    assert {"softmax_mAP50", "svm_mAP50", "softmax_mAP", "svm_mAP"} <= set(result)
    model = load(out)
    assert bool(model.box_head.svm_fitted) and model.box_head.uses_svm()
    assert not load(out, scorer="softmax").box_head.uses_svm()
    state = torch.load(out, weights_only=True)
    assert "optimizer" not in state and state["svm"]["images"] == 6
    # a checkpoint of another model is refused with a clear message
    fr = train("fast_rcnn", data=data, epochs=1, img_size=48, batch=3, out=str(tmp_path), quiet=True,
               augment="none", device="cpu",
               model_opts=dict(proposals="sliding_window", backbone="simple", roi_size=3, hidden=16))
    assert main(["svm", str(fr / "last.pt"), "--data", data, "--val-split", "none"]) == 2
    assert "R-CNN's" in capsys.readouterr().err
    assert np.isfinite(result["svm_mAP"])
