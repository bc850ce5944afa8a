"""benchmarks/proposals.py, rcnn_family.py and make_docs.py's per-dataset intros, on tiny inputs."""

from __future__ import annotations

import argparse
import json

import torch

from tests.benchmark_scripts import load_benchmark as _load


def test_make_docs_prefix_intros(tmp_path):
    make_docs = _load("make_docs")
    (tmp_path / "proposals_raccoon.json").write_text(json.dumps([{"method": "sliding_window"}]))
    (tmp_path / "detection_bccd.json").write_text(json.dumps([{"model": "fast_rcnn"}]))
    text = make_docs.render(tmp_path)
    assert "Region-proposal quality on `raccoon`" in text
    assert "Region-based detectors on `bccd`" in text


def test_proposal_methods_and_long_side():
    bench = _load("proposals")
    gen = bench.build_method("selective_search_fast:base_k=50;inc_k=50", 100)
    assert (gen.base_k, gen.inc_k, gen.max_proposals) == (50, 50, 100)
    image = torch.rand(3, 48, 64)
    boxes = gen.propose(image)
    assert 0 < len(boxes) <= 100 and (boxes[:, 2] <= 64).all() and (boxes[:, 3] <= 48).all()
    sw = bench.build_method("sliding_window:scales=[0.5];aspect_ratios=[1.0]", None)
    assert len(sw.propose(image)) > 0
    ds = bench.LongSide([(image, {"boxes": torch.tensor([[0.0, 0.0, 32.0, 24.0]])})], 128)
    img, t = ds[0]
    assert tuple(img.shape) == (3, 96, 128) and t["boxes"].tolist() == [[0.0, 0.0, 64.0, 48.0]]


def test_rcnn_family_same_proposals_and_ratio(tmp_path):
    bench = _load("rcnn_family")
    args = argparse.Namespace(data="shapes:size=64,mode=scene,n=2,n_val=2", split="val", images=1,
                              img_size=64, backbone="alexnet_small", crop_size=32, num_proposals=50,
                              threads=1, checkpoints={}, models=["rcnn", "fast_rcnn"],
                              entries=["rcnn", "fast_rcnn"], model_opts={})
    rows = bench.measure(args)
    assert [r["model"] for r in rows] == ["rcnn", "fast_rcnn"]
    assert rows[0]["proposals_per_image"] == rows[1]["proposals_per_image"]
    assert rows[0]["rcnn_over_network"] == 1.0 and rows[1]["rcnn_over_network"] > 0


def test_model_entries_keep_list_options_whole():
    common = _load("common")
    text = "faster_rcnn:anchor_sizes=[8,16,32];fpn_channels=64, fast_rcnn,"
    entries = common.split_entries(text)
    assert entries == ["faster_rcnn:anchor_sizes=[8,16,32];fpn_channels=64", "fast_rcnn"]
    assert common.parse_entry(entries[0]) == ("faster_rcnn", {"anchor_sizes": [8, 16, 32],
                                                              "fpn_channels": 64})


def test_detection_rows_carry_mask_and_keypoint_ap():
    bench = _load("detection")
    row = bench._row("mask_rcnn", {"mAP50": 0.9, "mAP": 0.6, "mask_mAP50": 0.8, "mask_mAP": 0.5,
                                   "epoch": 3}, 10, 1.0, 2.0, 0.0, 4, 2)
    assert (row["mask_mAP50"], row["mask_mAP"]) == (0.8, 0.5) and "kp_mAP" not in row
