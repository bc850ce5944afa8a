"""benchmarks/common.py writes result records; benchmarks/make_docs.py renders every results file."""

from __future__ import annotations

import json

from tests.benchmark_scripts import load_benchmark as _load


def test_append_or_replace_keeps_other_rows(tmp_path, monkeypatch):
    common = _load("common")
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    common.write_results("demo", [{"benchmark": "demo", "model": "a", "seconds": 1.0},
                                  {"benchmark": "demo", "model": "b", "seconds": 2.0}])
    common.append_or_replace("demo", [{"benchmark": "demo", "model": "b", "seconds": 3.0}])
    rows = json.loads((tmp_path / "demo.json").read_text())
    assert [(r["model"], r["seconds"]) for r in rows] == [("a", 1.0), ("b", 3.0)]
    stamped = common.stamp({"benchmark": "demo"}, "numpy")
    assert {"command", "date", "machine", "versions"} <= set(stamped)
    assert "CPUs" in stamped["machine"] and "numpy" in stamped["versions"]


def test_make_docs_renders_known_and_unknown_files(tmp_path):
    make_docs = _load("make_docs")
    (tmp_path / "coco_eval.json").write_text(json.dumps([
        {"benchmark": "coco_eval", "evaluator": "detseg", "seconds": 0.1, "ratio": 7.5,
         "command": "python benchmarks/coco_eval.py --images 500", "versions": {"numpy": "2"}},
        {"benchmark": "coco_eval", "evaluator": "pycocotools", "seconds": 0.75, "ratio": 1.0,
         "command": "python benchmarks/coco_eval.py --images 500", "versions": {"numpy": "2"}},
    ]))
    (tmp_path / "zz_new.json").write_text(json.dumps([{"model": "x|y", "mIoU": 0.5,
                                                       "command": "run x"}, {"model": "z"}]))
    text = make_docs.render(tmp_path)
    assert "## coco_eval" in text and "pycocotools" in text and "| 7.5 |" in text
    assert "All rows: `python benchmarks/coco_eval.py --images 500`" in text
    assert "## zz_new" in text and "Results of the `zz_new` benchmark." in text
    assert "x\\|y" in text and "1. `run x`" in text and "2. (not recorded)" in text
    assert "numpy=2" in text
    out = tmp_path / "BENCHMARKS.md"
    assert make_docs.main(["--results", str(tmp_path), "--out", str(out)]) == 0
    assert make_docs.main(["--results", str(tmp_path), "--out", str(out), "--check"]) == 0
