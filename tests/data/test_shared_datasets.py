"""The five real datasets in ../shared/datasets: found from their folder, counted right, quirks reported.

Skipped with a reason when ``../shared`` (beside the repo root) is absent. Fast: annotation and
header reads, plus a few decoded samples per dataset.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from detseg.data import build_dataset, locate
from detseg.data.check import check_dataset, format_report
from detseg.structures import IGNORE_INDEX

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets"


@pytest.fixture(scope="module")
def shared() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED.resolve()} is absent: the real-data tests need ../shared/datasets beside the repo")
    return SHARED


def problem_files(report) -> list[tuple[str, str]]:
    return sorted((Path(p.file).name, p.field) for p in report["problems"])


def test_raccoon(shared):
    report = check_dataset(shared / "raccoon")
    assert (report["format"], report["n_images"], report["classes"]) == ("voc", 200, ["raccoon"])
    assert report["n_objects"] == 217 and report["problems"] == []
    ds = build_dataset(shared / "raccoon", split="all")
    grayscale = ("raccoon-150.jpg", "raccoon-152.jpg", "raccoon-161.jpg")
    gray = [i for i, f in enumerate(ds.files) if Path(f).name in grayscale]
    assert len(gray) == 3  # the grayscale JPEGs read as RGB
    for i in [0, *gray]:
        image, t = ds[i]
        assert image.shape[0] == 3 and tuple(t["orig_size"].tolist()) == tuple(image.shape[1:])
    crops = build_dataset(shared / "raccoon", split="val", task="cls_loc")
    image, t = crops[0]
    assert t["boxes"].shape == (1, 4) and t["boxes"][0, 2] <= image.shape[2]


def test_bccd(shared):
    report = check_dataset(shared / "bccd")  # the parent folder: BCCD/ is found inside
    assert report["root"].endswith("BCCD") and report["n_images"] == 364
    assert report["classes"] == ["Platelets", "RBC", "WBC"]
    assert report["n_objects_in_files"] == 4888 and report["n_objects"] == 4886
    assert report["splits"] == {"train": 205, "val": 87, "test": 72, "all": 364}
    assert problem_files(report) == [("BloodImage_00338.xml", "object[12].bndbox"),
                                     ("BloodImage_00343.xml", "object[3].bndbox")]
    assert "BloodImage_00338.xml" in format_report(report)


def test_camvid(shared):
    report = check_dataset(shared / "camvid")
    assert report["format"] == "seg_folders" and report["splits"] == {"train": 184, "val": 101, "all": 285}
    assert len(report["classes"]) == 11 and report["classes"][0] == "Sky" and report["problems"] == []
    assert 0.0 < report["objects_per_class"]["(ignored)"] < 0.1  # void (11) is ignored
    ds = build_dataset(shared / "camvid", split="val", task="semantic")
    _, t = ds[0]
    values = set(t["sem_seg"].unique().tolist())
    assert values <= set(range(11)) | {IGNORE_INDEX} and t["sem_seg"].shape == (360, 480)


def test_pennfudan(shared):
    report = check_dataset(shared / "pennfudan")
    assert report["format"] == "pennfudan" and report["n_images"] == 170
    assert report["n_objects"] == 423 and report["problems"] == []
    ds = build_dataset(shared / "pennfudan", split="val")
    _, t = ds[0]
    assert t["masks"].shape[0] == len(t["boxes"]) == len(t["labels"])
    assert torch.equal(t["masks"].flatten(1).any(1), torch.ones(len(t["boxes"]), dtype=torch.bool))


def test_lspet(shared):
    report = check_dataset(shared / "lspet")
    assert report["format"] == "lsp" and report["n_images"] == 1000
    assert report["extra"]["keypoints visible (v=2)"] == 12287
    assert report["extra"]["keypoints not labelled (v=0)"] == 1713
    assert problem_files(report) == [("im00024.jpg", "joints[head_top]"), ("im00712.jpg", "joints[head_top]")]
    ds = build_dataset(shared / "lspet", split="train", task="pose")
    _, t = ds[0]
    assert t["keypoints"].shape == (1, 14, 3) and ds.keypoint_names[13] == "head_top"


def test_parent_of_all_is_ambiguous(shared):
    with pytest.raises(ValueError, match="several datasets inside"):
        locate(shared)
