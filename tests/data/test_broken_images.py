"""Images as they come: a truncated JPEG, a zero-byte file and a text file named ``.jpg``.

``detseg data check`` names all three; training and evaluation skip what cannot be decoded (a
counted warning naming it), read a truncated JPEG's decodable part (an error with
``strict_images=true``), and never stop for one broken file.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detseg.cli.main import main
from detseg.data import build_dataset
from detseg.data.base import skipped_images, take_problems
from detseg.data.check import check_dataset


def jpeg_bytes(seed: int, size: int = 32) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG")
    return buf.getvalue()


def write_broken_set(root: Path, n_good: int = 6) -> Path:
    """``rgb/`` JPEGs + ``gt/`` label PNGs: ``n_good`` good images, then ``cut.jpg`` (truncated),
    ``empty.jpg`` (0 bytes) and ``text.jpg`` (a text file), each with a good label."""
    (root / "rgb").mkdir(parents=True)
    (root / "gt").mkdir()
    names = [f"ok{i}" for i in range(n_good)] + ["cut", "empty", "text"]
    for i, name in enumerate(names):
        data = jpeg_bytes(i)
        if name == "cut":
            data = data[: len(data) * 6 // 10]
        elif name == "empty":
            data = b""
        elif name == "text":
            data = b"this is a note, not a picture\n"
        (root / "rgb" / f"{name}.jpg").write_bytes(data)
        label = np.zeros((32, 32), np.uint8)
        label[8:20, 8:20] = 1 + i % 2
        Image.fromarray(label).save(root / "gt" / f"{name}.png")
    return root


def test_check_names_all_three(tmp_path):
    root = write_broken_set(tmp_path / "d")
    report = check_dataset(root)
    by_file = {Path(p.file).name: p.message for p in report["problems"]}
    assert "truncated" in by_file["cut.jpg"]
    assert "empty file (0 bytes)" in by_file["empty.jpg"]
    assert "not an image (text" in by_file["text.jpg"]
    assert report["n_images"] == 7  # the truncated one is still readable; the others are left out


def test_check_cli_and_size_mismatch(tmp_path, capsys):
    root = write_broken_set(tmp_path / "d", n_good=2)
    assert main(["data", "check", str(root), "--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("cut.jpg", "empty.jpg", "text.jpg"))


def test_coco_size_other_than_the_annotation(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.jpg").write_bytes(jpeg_bytes(0))
    data = {"images": [{"id": 1, "file_name": "a.jpg", "width": 50, "height": 32}],
            "categories": [{"id": 1, "name": "x"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], "iscrowd": 0}]}
    (tmp_path / "instances.json").write_text(json.dumps(data))
    problems = check_dataset(tmp_path)["problems"]
    assert [(Path(p.file).name, p.field) for p in problems] == [("a.jpg", "size")]
    assert "32x32 but the annotation says 50x32" in problems[0].message


def test_truncated_read_with_warning_or_skipped_when_strict(tmp_path):
    root = write_broken_set(tmp_path / "d", n_good=2)
    ds = build_dataset(root, split="all")
    cut = [Path(f).name for f in ds.files].index("cut.jpg")
    image, target = ds[cut]
    assert image.shape == (3, 32, 32) and [p.field for p in target["problems"]] == ["image.truncated"]
    assert "problems" not in ds[cut][1]  # said once per file
    skipped, truncated = skipped_images(ds)
    assert [Path(f).name for f in skipped] == ["empty.jpg", "text.jpg"]
    assert [Path(f).name for f in truncated] == ["cut.jpg"]
    strict = build_dataset(f"{root}:strict_images=true", split="all")
    _, target = strict[cut]
    assert target["image_id"] != ds[cut][1]["image_id"]  # the next readable sample instead
    assert "cut.jpg" in [Path(f).name for f in skipped_images(strict)[0]]


def test_image_gone_after_indexing_is_skipped(tmp_path):
    root = write_broken_set(tmp_path / "d", n_good=3)
    ds = build_dataset(root, split="all")
    Path(ds.files[2]).unlink()
    _, target = ds[2]
    assert target["image_id"] == ds[3][1]["image_id"]  # deterministically the next one
    (problem,) = take_problems([target], ds)
    assert problem.field == "image" and "file not found" in problem.message
    last = len(ds) - 1
    Path(ds.files[last]).unlink()
    assert ds[last][1]["image_id"] == ds[0][1]["image_id"]  # wraps around
    for f in ds.files:
        Path(f).unlink(missing_ok=True)
    with pytest.raises(ValueError, match="no sample can be read"):
        ds[0]


def test_train_and_eval_run_to_the_end_and_report(tmp_path, capsys):
    root = write_broken_set(tmp_path / "d")
    runs = tmp_path / "runs"
    with pytest.warns(UserWarning, match="skipped 2 image"):
        assert main(["train", "fcn", "--data", f"{root}:strict_images=true", "--images", str(root / "rgb"),
                     "--annotations", str(root / "gt"), "--img-size", "32",
                     "--epochs", "1", "--batch", "4", "--device", "cpu", "--out", str(runs),
                     "--quiet", "--val-fraction", "0.3", "--samples", "2"]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if "skipped (unreadable)" in ln)
    assert "empty.jpg" in line and "text.jpg" in line
    # not strict: the truncated JPEG is read, with a warning, in evaluation
    ckpt = runs / "fcn" / "train1" / "last.pt"
    assert main(["eval", str(ckpt), "--data", str(root), "--split", "all"]) == 0


def test_problems_found_in_a_loader_worker_reach_the_main_process(tmp_path):
    from torch.utils.data import DataLoader

    from detseg.data.base import collate

    root = write_broken_set(tmp_path / "d", n_good=3)
    ds = build_dataset(f"{root}:strict_images=true", split="all")
    before = len(ds.problems)
    loader = DataLoader(ds, batch_size=2, num_workers=1, collate_fn=collate)
    images = 0
    for batch_images, targets in loader:
        take_problems(targets, ds)
        images += len(batch_images)
        assert all("problems" not in t for t in targets)
    assert images == len(ds)  # the skipped sample was replaced, the epoch kept its length
    assert [(Path(p.file).name, p.field) for p in ds.problems[before:]] == [("cut.jpg", "image")]
