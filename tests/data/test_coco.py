"""The COCO reader on sloppy json: orphan annotations, repeated ids, polygons of < 3 points, RLEs of
the wrong size, non-finite or negative boxes, and images of another size than the json says."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from PIL import Image

from detseg.data import build_dataset
from detseg.data.base import take_problems


def write(root: Path, images: list[dict], annotations: list[dict], sizes: dict[str, tuple[int, int]]) -> Path:
    (root / "images").mkdir(parents=True)
    for name, (w, h) in sizes.items():
        Image.new("RGB", (w, h), (90, 90, 90)).save(root / "images" / name)
    data = {"images": images, "categories": [{"id": 1, "name": "x"}], "annotations": annotations}
    (root / "instances.json").write_text(json.dumps(data))
    return root / "instances.json"


def ann(aid: int, image_id: int, bbox=(1, 1, 5, 5), segmentation=None) -> dict:
    a = {"id": aid, "image_id": image_id, "category_id": 1, "bbox": list(bbox), "iscrowd": 0}
    if segmentation is not None:
        a["segmentation"] = segmentation
    return a


def img(iid: int, name: str, w: int = 40, h: int = 30) -> dict:
    return {"id": iid, "file_name": name, "width": w, "height": h}


SQUARE = [[1, 1, 6, 1, 6, 6, 1, 6]]


def problems(ds) -> dict[str, str]:
    return {p.field: p.message for p in ds.problems}


def test_orphans_and_repeated_ids(tmp_path):
    path = write(tmp_path, [img(1, "a.jpg"), img(1, "b.jpg"), img(2, "a.jpg")],
                 [ann(10, 1), ann(10, 1, (2, 2, 4, 4)), ann(11, 9)], {"a.jpg": (40, 30), "b.jpg": (40, 30)})
    ds = build_dataset(path, split="all")
    got = problems(ds)
    assert got["annotations[id=11].image_id"] == "image id 9 not in images (1 annotation(s) skipped)"
    assert got["images[id=1]"].startswith("id also used by 'a.jpg': 'b.jpg' skipped")
    assert got["images[id=2].file_name"] == "'a.jpg' is listed twice: the first entry is kept"
    assert got["annotations[id=10]"].startswith("id used by 2 annotations: all kept")
    assert len(ds.problems) == 4 and [Path(f).name for f in ds.files] == ["a.jpg"]
    _, t = ds[0]
    assert t["image_id"] == 1 and t["boxes"].tolist() == [[1, 1, 6, 6], [2, 2, 6, 6]]  # not given to b.jpg too


def test_bad_polygons_rles_and_boxes(tmp_path):
    anns = [ann(1, 1, segmentation=[[1, 1, 6, 1]]),  # 2 points
            ann(2, 1, segmentation=[[1, 1, 6, 1], *SQUARE]),  # one bad polygon beside a good one
            ann(3, 1, segmentation={"size": [10, 10], "counts": [100]}),  # RLE of another size
            ann(4, 1, segmentation={"size": [30, 40], "counts": [5, 6]}),  # counts short of 30 x 40
            ann(5, 1, (1, 1, float("nan"), 5), SQUARE), ann(6, 1, (5, 5, -3, 4), SQUARE),
            ann(7, 1, (-4, -4, 10, 10), SQUARE), ann(8, 1, (50, 40, 5, 5), SQUARE)]
    ds = build_dataset(write(tmp_path, [img(1, "a.jpg")], anns, {"a.jpg": (40, 30)}), split="all")
    got = [(p.field, p.message) for p in ds.problems]
    assert got == [
        ("annotations[id=1].segmentation", "polygon with fewer than 3 points (or not an even list of finite "
                                           "numbers): empty mask"),
        ("annotations[id=2].segmentation", "polygon with fewer than 3 points (or not an even list of finite "
                                           "numbers): dropped"),
        ("annotations[id=3].segmentation", "RLE size [10, 10] is not the image's [30, 40]: empty mask"),
        ("annotations[id=4].segmentation", "RLE counts add up to 11 pixels, not 30 x 40: empty mask"),
        ("annotations[id=5].bbox", "[1, 1, nan, 5] is not [x, y, w, h] of finite numbers: dropped"),
        ("annotations[id=6].bbox", "[5, 5, -3, 4] has zero area: dropped"),
        ("annotations[id=7].bbox", "box reaches outside the 40x30 image: clipped"),
        ("annotations[id=8].bbox", "box lies outside the 40x30 image: dropped"),
    ]
    _, t = ds[0]
    assert t["boxes"].tolist() == [[1, 1, 6, 6]] * 4 + [[0, 0, 6, 6]]
    assert t["masks"].shape == (5, 30, 40) and t["masks"].sum((1, 2)).tolist() == [0, 25, 0, 0, 25]


def test_image_of_another_size_than_the_json_is_skipped_when_loaded(tmp_path):
    path = write(tmp_path, [img(1, "a.jpg"), img(2, "b.jpg")], [ann(1, 1, segmentation=SQUARE),
                                                                ann(2, 2, segmentation=SQUARE)],
                 {"a.jpg": (40, 30), "b.jpg": (20, 30)})
    ds = build_dataset(path, split="all")
    assert ds.problems == []  # sizes come from the json until the pixels are read
    image, target = ds[1]
    assert target["image_id"] == 1 and image.shape == (3, 30, 40)  # b.jpg skipped for the next sample
    (p,) = take_problems([target], ds)
    assert Path(p.file).name == "b.jpg" and p.field == "size"
    assert p.message == "image is 20x30 but the json says 40x30 (its masks would not fit): sample skipped"
    assert isinstance(ds[1][1]["masks"], torch.Tensor) and "problems" not in ds[1][1]  # said once
