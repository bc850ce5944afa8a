"""detseg.engine.bench: entry parsing, the Pareto front, peak RSS, the plot and table; the peers
(slow: trained for seconds on a tiny shapes set, Ultralytics skipped when it is not installed)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from detseg.engine.bench import BenchConfig, parse_entries, run_bench
from detseg.engine.bench_measure import PeakRSS, time_calls
from detseg.engine.bench_report import dataset_name, format_rows, mark_front, pareto_front, plot_tradeoff

TINY = "shapes:size=64,mode=scene,n=16,n_val=8"


def test_pareto_front_hand_made_points():
    #        0: fast,bad  1: dominated by 0  2: slower,better  3: dominated by 2  4: slowest,best
    pts = [(1.0, 0.2), (2.0, 0.1), (3.0, 0.5), (4.0, 0.5), (10.0, 0.7)]
    assert pareto_front(pts) == [0, 2, 4]
    # same latency: only the more accurate; exact duplicates: the first; NaN never on the front
    assert pareto_front([(1.0, 0.3), (1.0, 0.4), (2.0, 0.4), (2.0, 0.4)]) == [1]
    assert pareto_front([(math.nan, 0.9), (5.0, 0.1), (1.0, math.nan)]) == [1]
    assert pareto_front([]) == []
    # a point both faster and more accurate than all others is the whole front
    assert pareto_front([(3.0, 0.1), (0.5, 0.9), (2.0, 0.5)]) == [1]


def test_mark_front_leaves_the_floor_off():
    rows = [{"model": "floor", "latency_ms": 0.01, "mAP": 0.1, "baseline": True},
            {"model": "a", "latency_ms": 5.0, "mAP": 0.3}, {"model": "b", "latency_ms": 9.0, "mAP": 0.2}]
    mark_front(rows)
    assert [r["pareto"] for r in rows] == [False, True, False]


def test_parse_entries_syntax_and_errors():
    entries = parse_entries("yolo:img=320;box_loss=giou, ssd ,central_box,tv_ssdlite320_mobilenet_v3_large")
    assert [(e.name, e.img, e.opts, e.kind) for e in entries] == [
        ("yolo", 320, {"box_loss": "giou"}, "zoo"), ("ssd", None, {}, "zoo"),
        ("central_box", None, {}, "baseline"), ("tv_ssdlite320_mobilenet_v3_large", None, {}, "peer")]
    assert entries[0].text == "yolo:img=320;box_loss=giou"
    with pytest.raises(ValueError, match="unknown detector 'fcn'"):
        parse_entries("fcn")  # a zoo model, but not a detector
    with pytest.raises(ValueError, match="expected KEY=VALUE"):
        parse_entries("yolo:img")
    with pytest.raises(ValueError, match="positive integer"):
        parse_entries("yolo:img=-3")
    with pytest.raises(ValueError, match="no entry"):
        parse_entries(" , ")


def test_dataset_name():
    assert dataset_name("shapes:size=64") == "shapes"
    assert dataset_name("../shared/datasets/Raccoon/") == "raccoon"
    assert dataset_name("/data/lspet:crop=person") == "lspet"


def test_peak_rss_sees_an_allocation():
    with PeakRSS() as mem:
        block = torch.ones(64 * 2 ** 20 // 4)  # 64 MiB, touched
        del block
    assert mem.peak >= mem.start and mem.increase > 40


def test_time_calls_warms_up_untimed():
    calls = []
    out = time_calls(calls.append, runs=10, warmup=3)
    assert len(out) == 10 and calls == [0, 1, 2, *range(10)]


def test_plot_and_table(tmp_path):
    rows = [{"model": "yolo:img=320", "latency_ms": 12.0, "mAP": 0.3, "peer": False, "params": 2_000_000},
            {"model": "ultralytics_yolov8n", "latency_ms": 18.0, "mAP": 0.26, "peer": True},
            {"model": "central_box", "latency_ms": 0.01, "mAP": 0.18, "baseline": True, "img_size": None}]
    mark_front(rows)
    plot_tradeoff(rows, tmp_path / "p.png", title="t")
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    table = format_rows(rows)
    assert "peer" in table and "floor" in table and "2.00" in table


def test_run_bench_on_a_checkpoint_and_the_floor(tmp_path):
    """No training: a saved random-init checkpoint and the floor, through the whole study."""
    from detseg.engine.checkpoint import save_checkpoint
    from detseg.models.zoo import build_model

    classes = ["circle", "rectangle", "triangle", "person"]
    model = build_model("yolo_v1", classes, img_size=64, backbone="simple", score_thresh=0.5)
    ckpt = tmp_path / "v1.pt"
    save_checkpoint(ckpt, {"builder": model.builder_name, "builder_args": model.builder_args,
                           "model": model.state_dict(), "epoch": 3, "train_seconds": 1.5})
    cfg = BenchConfig(data=TINY, entries="central_box", checkpoints=[str(ckpt)], minutes=None,
                      out=str(tmp_path / "out"), timed_runs=10, warmup=1, quiet=True)
    rows, paths = run_bench(cfg, command="test")
    assert [r["model"] for r in rows] == ["central_box", f"yolo_v1:ckpt={ckpt}"]
    assert rows[1]["epochs_done"] == 3 and rows[1]["img_size"] == 64 and rows[1]["gflops"] > 0
    assert rows[0]["baseline"] and not rows[0]["pareto"] and rows[1]["pareto"]
    assert json.loads(paths["json"].read_text())[1]["params"] == rows[1]["params"]
    assert {p.suffix for p in paths.values()} == {".json", ".csv", ".png"}


@pytest.mark.slow
@pytest.mark.parametrize("peer", ["tv_fasterrcnn_mobilenet_v3_large_320_fpn", "tv_ssdlite320_mobilenet_v3_large",
                                  "ultralytics_yolov8n"])
def test_peer_trains_and_is_measured(tmp_path, peer):
    if peer.startswith("ultralytics"):
        pytest.importorskip("ultralytics", reason="the benchmark extra is not installed")
    cfg = BenchConfig(data=TINY, entries=f"{peer}:img=64", minutes=0.05, out=str(tmp_path), timed_runs=10,
                      warmup=1, quiet=True)
    rows, paths = run_bench(cfg, command="test")
    row = rows[0]
    assert row["peer"] and row["params"] > 0 and row["train_seconds"] > 0 and 0 <= row["mAP"] <= 1
    assert paths["png"].is_file()
