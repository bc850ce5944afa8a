"""``detseg bench`` on a tiny shapes set: two tiny detectors and the floor, a tiny budget."""

from __future__ import annotations

import csv
import json

from detseg.cli.main import main

TINY = "shapes:size=64,mode=scene,n=16,n_val=8"


def test_bench_writes_json_csv_png(tmp_path, capsys):
    entries = ("yolo:img=64;backbone=simple;score_thresh=0.3,"
               "ssd:backbone=simple;extra_levels=1;score_thresh=0.3,central_box")
    rc = main(["bench", "--data", TINY, "--entries", entries, "--minutes", "0.02", "--img-size", "64",
               "--timed-runs", "10", "--out", str(tmp_path), "--quiet", "--batch", "8"])
    assert rc == 0
    rows = json.loads((tmp_path / "tradeoff_shapes.json").read_text())
    assert [r["model"] for r in rows] == entries.split(",")
    for r in rows:
        assert {"mAP", "mAP50", "latency_ms", "images_per_s", "params", "gflops", "peak_rss_mib",
                "pareto", "peer", "command", "date", "versions"} <= set(r)
        assert r["timed_runs"] >= 10 and r["threads"] == 2
    assert rows[1]["img_size"] == 64 and rows[0]["train_seconds"] > 0
    assert (tmp_path / "checkpoints").is_dir()
    with open(tmp_path / "tradeoff_shapes.csv") as f:
        assert len(list(csv.DictReader(f))) == 3
    assert (tmp_path / "tradeoff_shapes.png").read_bytes()[:4] == b"\x89PNG"
    out = capsys.readouterr().out
    assert "ms/img" in out and "floor" in out and "tradeoff_shapes.png" in out


def test_bench_bad_entry_is_a_clear_error(tmp_path, capsys):
    assert main(["bench", "--data", TINY, "--entries", "yolo:img", "--out", str(tmp_path)]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err
