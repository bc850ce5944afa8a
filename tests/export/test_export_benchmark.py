"""The helpers of benchmarks/export.py (the timed run itself is the lead's, on a quiet machine)."""

from __future__ import annotations

import json
import sys

from tests.benchmark_scripts import load_benchmark


def test_timers():
    bench = load_benchmark("export")
    calls = []
    times = bench.time_ms(lambda: calls.append(1), repeat=3, warmup=2)
    assert len(times) == 3 and len(calls) == 5 and all(t >= 0 for t in times)
    order = []
    medians = bench.interleaved({"a": lambda: order.append("a"), "b": lambda: order.append("b")},
                                repeat=2, warmup=0)
    assert set(medians) == {"a", "b"} and order == ["a", "b", "a", "b"]


def test_main_writes_one_record_per_case(tmp_path, monkeypatch):
    bench = load_benchmark("export")
    monkeypatch.setattr(sys.modules["common"], "RESULTS", tmp_path)
    tiny = {"cls_loc": ("cls_loc", ["a", "b"], {"backbone_width": 8, "hidden": 16}),
            "fast_rcnn": ("fast_rcnn", ["a", "b"], {"backbone_width": 8, "hidden": 16,
                                                    "proposals": "sliding_window",
                                                    "num_proposals": 20})}
    records = bench.main(["--repeat", "1", "--warmup", "0", "--img-size", "32"], cases=tiny)
    assert [r["model"] for r in records] == ["cls_loc", "fast_rcnn"]
    rows = json.loads((tmp_path / "export.json").read_text())
    for r in rows:
        assert {"torch_ms", "onnx_ms", "speedup", "core_torch_ms", "core_onnx_ms", "threads",
                "max_core_diff", "command", "versions"} <= set(r)
        assert r["max_core_diff"] <= 1e-4 and "onnxruntime" in r["versions"]
    assert set(bench.CASES) >= {"fcn", "segnet", "deeplab", "cls_loc", "pose_regression",
                                "pose_heatmap", "fast_rcnn"}
