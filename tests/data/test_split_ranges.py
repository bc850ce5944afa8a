"""Index-range splits "A:B" (detseg.data.split): the right files, in file order, for every reader."""

import json
from pathlib import Path

import pytest
from PIL import Image

from detseg.data import build_dataset
from detseg.data.split import SplitError, check_split, split_range


def names(ds) -> list[str]:
    return [Path(f).name for f in ds.files]


def test_lspet_ranges_pick_images_by_number(tmp_path, write_lspet):
    write_lspet(tmp_path, 20)
    train, val = build_dataset(tmp_path, split="0:15"), build_dataset(tmp_path, split="15:20")
    assert names(train) == [f"im{i:05d}.jpg" for i in range(1, 16)]
    assert names(val) == [f"im{i:05d}.jpg" for i in range(16, 21)]
    assert not set(train.files) & set(val.files)
    assert sorted(train.files + val.files) == sorted(build_dataset(tmp_path, split="all").files)
    assert train.split == "0:15" and len(build_dataset(tmp_path, split="3:4", task="pose")) == 1


def test_range_positions_count_unusable_images(tmp_path, write_lspet):
    """A broken image drops only its own sample: later images keep their range."""
    write_lspet(tmp_path, 10)
    (tmp_path / "images" / "im00002.jpg").write_bytes(b"not a jpeg")
    first, rest = build_dataset(tmp_path, split="0:5"), build_dataset(tmp_path, split="5:10")
    assert names(first) == ["im00001.jpg", "im00003.jpg", "im00004.jpg", "im00005.jpg"]
    assert names(rest) == [f"im{i:05d}.jpg" for i in range(6, 11)]
    broken = [p.file for p in first.problems if p.field == "image"]
    assert broken == [str(tmp_path / "images" / "im00002.jpg")]


def write_voc(root: Path, stems: list[str]) -> None:
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    for s in stems:
        Image.new("RGB", (30, 20)).save(root / "JPEGImages" / f"{s}.jpg")
        (root / "Annotations" / f"{s}.xml").write_text(
            f"<annotation><filename>{s}.jpg</filename><size><width>30</width><height>20</height>"
            "<depth>3</depth></size><object><name>cat</name><bndbox><xmin>2</xmin><ymin>2</ymin>"
            "<xmax>20</xmax><ymax>15</ymax></bndbox></object></annotation>")


def test_voc_ranges_follow_sorted_names(tmp_path):
    stems = ["b", "d", "a", "e", "c", "f"]
    write_voc(tmp_path, stems)
    got = [names(build_dataset(tmp_path, split=s)) for s in ("0:2", "2:6")]
    assert got == [["a.jpg", "b.jpg"], ["c.jpg", "d.jpg", "e.jpg", "f.jpg"]]


def test_coco_unsplit_json_ranges(tmp_path):
    (tmp_path / "images").mkdir()
    images = []
    for i in range(5):
        Image.new("RGB", (16, 16)).save(tmp_path / "images" / f"x{i}.jpg")
        images.append({"id": i + 1, "file_name": f"x{i}.jpg", "width": 16, "height": 16})
    anns = [{"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": [1, 1, 8, 8], "area": 64,
             "iscrowd": 0} for i in range(5)]
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps({"images": images, "annotations": anns,
                                "categories": [{"id": 1, "name": "thing"}]}))
    assert names(build_dataset(path, split="1:3")) == ["x1.jpg", "x2.jpg"]


@pytest.mark.parametrize("bad", ["0:", ":5", "5:2", "3:3", "a:b", "-1:3", "trian", "1:2:3"])
def test_malformed_specs_name_the_field(bad):
    with pytest.raises(SplitError, match="^train_split: "):
        check_split(bad, "train_split")


def test_named_splits_are_not_ranges():
    assert [split_range(s) for s in ("train", "val", "test", "all")] == [None] * 4
    assert split_range(" 900:1000 ") == (900, 1000)


def test_out_of_range_and_shapes(tmp_path, write_lspet):
    write_lspet(tmp_path, 6)
    with pytest.raises(SplitError, match=r"'4:7' is out of range: the data has 6 samples"):
        build_dataset(tmp_path, split="4:7")
    with pytest.raises(SplitError, match="unknown split 'trian'"):
        build_dataset(tmp_path, split="trian")
    with pytest.raises(ValueError, match="shapes world has no index ranges"):
        build_dataset("shapes:size=32,n=4", split="0:2")
