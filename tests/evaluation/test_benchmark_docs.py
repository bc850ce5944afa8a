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


JOINTS = ("right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle",
          "right_wrist", "right_elbow", "right_shoulder", "left_shoulder", "left_elbow",
          "left_wrist", "neck", "head_top")


def _synthetic_results(folder):
    """A small results folder: CamVid, LSPET, reliability (memory + two fuzz seeds), detection."""
    camvid = [{"benchmark": "segmentation_camvid", "model": name, "mIoU": miou, "pixel_acc": 0.8,
               "IoU/Sky": 0.9, "IoU/Pole": 0.05, "IoU/SignSymbol": 0.1, "IoU/Pedestrian": 0.2,
               "IoU/Bicyclist": 0.3, "IoU/Fence": 0.4, "params": 1000, "gflops": 1.5,
               "cpu_ms_per_image": ms, "epochs_done": 7, "train_seconds": 60.0, "command": "seg",
               "img_size": 240}
              for name, miou, ms in [("unet_smp", 0.47, 76.0), ("fcn", 0.5, 26.8)]]
    pose = [{"benchmark": "pose_lspet", "model": m, "PCK@0.2": 0.1 * k, "PCP": 0.05 * k,
             "params": 2000, "cpu_ms_per_image": 8.0, "train_seconds": 600.0,
             **{f"PCK@0.2/{j}": round(0.01 * i * k, 3) for i, j in enumerate(JOINTS)}}
            for k, m in [(1, "pose_regression"), (2, "pose_heatmap")]]
    counts = {"inputs": 10, "ok": 4, "clear_errors": 6, "unexpected": 0}
    reliability = [
        {"benchmark": "reliability", "case": "rss_2000_iterations", "growth_final_pct": 3.16,
         "growth_max_pct": 3.78, "rss_every_100_iterations_mib": [1.0, 2.0]},
        *({"benchmark": "reliability", "case": "fuzz", "seed": seed, "inputs": 20, "ok": 8,
           "clear_errors": 12, "unexpected": 0,
           "per_reader": {"voc": counts, "coco": dict(counts, unexpected=seed)}} for seed in (0, 1)),
    ]
    files = {"segmentation_camvid": camvid, "pose_lspet": pose, "reliability": reliability,
             "detection_x": [{"model": "fast_rcnn", "mAP50": 0.7, "svm_C": 1.0}]}
    for name, rows in files.items():
        (folder / f"{name}.json").write_text(json.dumps(rows))


def test_make_docs_headlines_and_full_tables(tmp_path):
    make_docs = _load("make_docs")
    _synthetic_results(tmp_path)
    text = make_docs.render(tmp_path)
    camvid = text.split("## segmentation_camvid")[1].split("\n## ")[0]
    head = ("| model | img_size | mIoU | pixel_acc | IoU/Pole | IoU/SignSymbol | IoU/Pedestrian | IoU/Bicyclist "
            "| IoU/Fence | params | gflops | cpu_ms_per_image | epochs_done |")
    assert head in camvid
    # Headline rows sorted by mIoU (fcn first), then the plot, then every column collapsed.
    assert camvid.index("| fcn | 240 | 0.5 |") < camvid.index("| unet_smp | 240 | 0.47 |")
    assert camvid.index(head) < camvid.index("![mIoU vs CPU ms per image]"
                                             "(../benchmarks/results/segmentation_camvid.png)")
    details = camvid.split("<details><summary>All columns (2 records)</summary>\n\n")[1]
    details = details.split("\n</details>")[0]
    assert details.startswith("| # | benchmark | model | mIoU | pixel_acc | IoU/Sky |")
    assert "| 1 | segmentation_camvid | unet_smp |" in details and "All rows: `seg`" in details
    assert "IoU/Sky" not in camvid.split("<details>")[0]  # only the chosen columns above

    pose = text.split("## pose_lspet")[1].split("\n## ")[0]
    assert "| model | PCK@0.2 | PCP | params | cpu_ms_per_image | train_seconds |" in pose
    assert "| joint | pose_regression | pose_heatmap |" in pose
    assert "| head_top | 0.13 | 0.26 |" in pose and pose.count("\n| left_") == 6
    assert "(../benchmarks/results/pose_lspet.png)" in pose

    rel = text.split("## reliability")[1].split("\n## ")[0]
    assert ("| case | seed | inputs | ok | clear_errors | unexpected | growth_final_pct |"
            in rel)
    assert "| rss_2000_iterations | - | - | - | - | - | 3.16 |" in rel  # missing values print "-"
    assert "| fuzz | 0 | 20 | 8 | 12 | 0 |" in rel and "| fuzz | 1 | 20 | 8 | 12 | 0 |" in rel
    assert "summed over 2 seed(s) (0, 1)" in rel
    assert "| voc | 20 | 8 | 12 | 0 |" in rel and "| coco | 20 | 8 | 12 | 1 |" in rel
    assert "| all | 40 | 16 | 24 | 1 |" in rel
    assert "All columns (3 records)" in rel

    det = text.split("## detection_x")[1]  # a prefix entry; absent columns print "-"
    assert "| model | mAP50 | mAP | softmax_mAP50 |" in det and "| fast_rcnn | 0.7 | - | - |" in det
    assert "All columns (1 record)" in det and "svm_C" in det.split("<details>")[1]


def test_make_docs_sort_records():
    make_docs = _load("make_docs")
    rows = [{"m": "a", "x": 1}, {"m": "b"}, {"m": "c", "x": 3}, {"m": "d", "x": float("nan")},
            {"m": "e", "x": 3}]
    assert [r["m"] for r in make_docs.sort_records(rows, ("-x",))] == ["c", "e", "a", "b", "d"]
    assert [r["m"] for r in make_docs.sort_records(rows, ("x",))] == ["a", "c", "e", "b", "d"]
    assert [r["m"] for r in make_docs.sort_records(rows, ())] == list("abcde")


def test_make_docs_writes_plots_and_check_tracks_the_json(tmp_path, capsys):
    make_docs = _load("make_docs")
    _synthetic_results(tmp_path)
    out = tmp_path / "BENCHMARKS.md"
    args = ["--results", str(tmp_path), "--out", str(out)]
    assert make_docs.main(args + ["--check"]) == 1  # nothing written yet
    assert not (tmp_path / "segmentation_camvid.png").exists()  # --check writes nothing
    assert make_docs.main(args) == 0
    camvid, pose = tmp_path / "segmentation_camvid.png", tmp_path / "pose_lspet.png"
    assert camvid.read_bytes()[:4] == pose.read_bytes()[:4] == b"\x89PNG"
    assert make_docs.main(args + ["--check"]) == 0
    # Same JSON, same bytes: the plots are not rewritten.
    before = camvid.read_bytes()
    assert make_docs.write_plots(tmp_path) == []
    assert camvid.read_bytes() == before
    # --check is about the markdown only: a missing PNG does not make it fail.
    pose.unlink()
    assert make_docs.main(args + ["--check"]) == 0
    rows = json.loads((tmp_path / "segmentation_camvid.json").read_text())
    rows[0]["mIoU"] = 0.9
    (tmp_path / "segmentation_camvid.json").write_text(json.dumps(rows))
    assert make_docs.main(args + ["--check"]) == 1
    assert "out of date" in capsys.readouterr().err
    assert make_docs.main(args) == 0 and camvid.read_bytes() != before
    assert make_docs.main(args + ["--check"]) == 0


def test_make_docs_benchmark_pngs_and_optional_files(tmp_path):
    """A PNG a benchmark wrote (tradeoff_*) is linked once, under the headline; serve_load renders."""
    make_docs = _load("make_docs")
    (tmp_path / "tradeoff_x.json").write_text(json.dumps(
        [{"model": "slow", "mAP": 0.5, "latency_ms": 90.0}, {"model": "fast", "mAP": 0.3, "latency_ms": 9.0}]))
    (tmp_path / "tradeoff_x.png").write_bytes(b"\x89PNG")
    text = make_docs.render(tmp_path)
    link = "![latency vs mAP, Pareto front dashed](../benchmarks/results/tradeoff_x.png)"
    assert text.count(link) == 1 and "## serve_load" not in text
    assert text.index("| fast | - | - | 0.3 |") < text.index("| slow |") < text.index(link)
    (tmp_path / "serve_load.json").write_text(json.dumps([{"model": "tiny fast_rcnn", "clients": 8,
                                                           "p50_ms": 12.5, "passed": True}]))
    text = make_docs.render(tmp_path)
    assert "| model | clients | requests | ok | errors | p50_ms |" in text
    assert "| tiny fast_rcnn | 8 | - | - | - | 12.5 |" in text


def test_speed_accuracy_labels_name_options_and_sizes():
    plots = _load("docs_plots")
    records = [{"model": "fcn8s:class_weights=median_frequency", "img_size": 240, "cpu_ms_per_image": 43, "mIoU": 0.53},
               {"model": "fcn8s:class_weights=median_frequency", "img_size": 480, "cpu_ms_per_image": 160, "mIoU": 0.55},
               {"model": "fcn:upsample=nearest;class_weights=median_frequency", "img_size": 240,
                "cpu_ms_per_image": 27, "mIoU": 0.5},
               {"model": "oracle: ground truth at stride 8", "mIoU": 0.85},  # no ms: not a point
               {"model": "fcn8s:class_weights=sqrt_median_frequency", "img_size": 240, "cpu_ms_per_image": 43, "mIoU": 0.5}]
    data = plots.speed_accuracy_data(records)
    assert [p[0] for p in data["points"]] == ["fcn8s @240", "fcn8s @480", "fcn nearest @240",
                                                "fcn8s sqrt_median_frequency @240"]
    one_size = plots.speed_accuracy_data(records[2:4])
    assert [p[0] for p in one_size["points"]] == ["fcn nearest"]


def test_make_docs_optional_headline_columns(tmp_path):
    """Mask and keypoint AP columns head a detection table only where a record has them."""
    make_docs = _load("make_docs")
    (tmp_path / "detection_a.json").write_text(json.dumps([{"model": "faster_rcnn", "mAP50": 0.9}]))
    (tmp_path / "detection_b.json").write_text(json.dumps(
        [{"model": "faster_rcnn", "mAP50": 0.9}, {"model": "mask_rcnn", "mAP50": 0.8, "mask_mAP50": 0.7}]))
    text = make_docs.render(tmp_path)
    a = text.split("## detection_a")[1].split("<details>")[0]
    b = text.split("## detection_b")[1].split("<details>")[0]
    assert "mask_mAP50" not in a and "| model | mAP50 | mAP | softmax_mAP50 |" in a
    assert "| model | mAP50 | mAP | mask_mAP50 | softmax_mAP50 |" in b and "| mask_rcnn | 0.8 | - | 0.7 |" in b
