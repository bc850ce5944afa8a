"""``detseg data check``: counts, and every problem listed with its file and field."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from detseg.data.check import check_dataset, format_report


def write_jpeg(path: Path, w: int, h: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (w, h), (90, 20, 200)).save(path)


def xml(stem: str, boxes: list[tuple[str, int, int, int, int]], w: int = 64, h: int = 48) -> str:
    objs = "".join(f"<object><name>{n}</name><bndbox><xmin>{a}</xmin><ymin>{b}</ymin><xmax>{c}</xmax>"
                   f"<ymax>{d}</ymax></bndbox></object>" for n, a, b, c, d in boxes)
    size = f"<size><width>{w}</width><height>{h}</height></size>"
    return f"<annotation><filename>{stem}.jpg</filename>{size}{objs}</annotation>"


def test_check_voc_lists_counts_and_every_problem(tmp_path):
    root = tmp_path / "cells"
    (root / "Annotations").mkdir(parents=True)
    files = {
        "ok1": [("RBC", 1, 1, 20, 20), ("WBC", 10, 10, 40, 40)],
        "ok2": [("RBC", 5, 5, 10, 10), ("RBC", 30, 30, 30, 30)],  # zero area
        "big": [("WBC", 50, 40, 80, 60)],  # past the 64x48 image
        "gone": [("RBC", 1, 1, 5, 5)],  # no image
        "bad": [("RBC", 1, 1, 5, 5)],  # corrupt image
    }
    for stem, boxes in files.items():
        (root / "Annotations" / f"{stem}.xml").write_text(xml(stem, boxes))
        if stem in ("ok1", "ok2", "big"):
            write_jpeg(root / "JPEGImages" / f"{stem}.jpg", 64, 48)
    (root / "JPEGImages" / "bad.jpg").write_bytes(b"garbage")
    report = check_dataset(tmp_path)  # the parent folder: unambiguous
    assert report["format"] == "voc" and report["root"] == str(root)
    assert report["n_images"] == 3 and report["splits"]["all"] == 3
    assert report["splits"]["train"] + report["splits"]["val"] == 3
    assert report["classes"] == ["RBC", "WBC"]
    assert report["objects_per_class"] == {"RBC": 2, "WBC": 2} and report["n_objects_in_files"] == 7
    assert report["image_sizes"]["most_common"] == "64x48"
    got = {(Path(p.file).name, p.field) for p in report["problems"]}
    assert got == {("ok2.xml", "object[1].bndbox"), ("big.xml", "object[0].bndbox"),
                   ("gone.xml", "filename"), ("bad.jpg", "image")}
    text = format_report(report)
    for name in ("ok2.xml", "big.xml", "gone.xml", "bad.jpg", "zero area", "clipped"):
        assert name in text
    assert "problems  4 (" in text
    json.dumps({**report, "problems": [list(p) for p in report["problems"]]})  # what --json writes


def test_check_seg_folders_unknown_values_and_sizes(tmp_path):
    root = tmp_path / "seg"
    for stem in ("x", "y"):
        write_jpeg(root / "images" / f"{stem}.png", 8, 6)
        (root / "masks").mkdir(parents=True, exist_ok=True)
        label = np.zeros((6, 8), np.uint8)
        label[:, :4] = 1 if stem == "x" else 7  # 7 is not in classes.txt
        label[0] = 255
        Image.fromarray(label).save(root / "masks" / f"{stem}.png")
    (root / "classes.txt").write_text("road\ncar\n")
    report = check_dataset(root)
    assert report["format"] == "seg_folders" and report["task"] == "semantic"
    assert report["classes"] == ["road", "car"]
    fr = report["objects_per_class"]
    assert abs(fr["road"] - 40 / 96) < 1e-3 and abs(fr["car"] - 20 / 96) < 1e-3  # of all pixels
    assert [(Path(p.file).name, p.field) for p in report["problems"]] == [("y.png", "label")]
    assert "values [7]" in format_report(report)


def test_check_coco_reads_headers(tmp_path):
    for name, size in (("a.jpg", (20, 10)), ("b.jpg", (30, 30))):
        write_jpeg(tmp_path / name, *size)
    (tmp_path / "c.jpg").write_bytes(b"\x89PNG broken")
    data = {"images": [{"id": 1, "file_name": "a.jpg", "width": 20, "height": 10},
                       {"id": 2, "file_name": "b.jpg", "width": 32, "height": 30},
                       {"id": 3, "file_name": "c.jpg", "width": 5, "height": 5}],
            "categories": [{"id": 3, "name": "thing"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [15, 2, 10, 5]},
                            {"id": 2, "image_id": 9, "category_id": 3, "bbox": [1, 1, 2, 2]}]}
    (tmp_path / "data.json").write_text(json.dumps(data))
    report = check_dataset(tmp_path)
    assert report["format"] == "coco" and report["objects_per_class"] == {"thing": 1}
    got = {(Path(p.file).name, p.field) for p in report["problems"]}
    assert got == {("data.json", "annotations[id=1].bbox"), ("data.json", "annotations[id=2].image_id"),
                   ("b.jpg", "size"), ("c.jpg", "image")}
