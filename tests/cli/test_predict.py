"""``detseg predict`` on folders, globs and videos: drawn outputs, JSON, skipped files, safe names."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from detseg.cli.main import main
from detseg.cli.predict import OutputNames, safe_stem
from detseg.io import save_png


def _untrained_checkpoint(path: Path, name: str, task: str, **kw) -> Path:
    """A checkpoint of an untrained zoo model: predict only needs the weights to be well-formed."""
    import torch

    from detseg.data import build_dataset
    from detseg.engine.checkpoint import save_checkpoint
    from detseg.models.zoo import build_model

    torch.manual_seed(0)
    ds = build_dataset("shapes:size=32,n=2", split="val", task=task)
    classes = ds.seg_classes if task == "semantic" else ds.classes
    m = build_model(name, classes=list(classes), img_size=32, **kw)
    save_checkpoint(path, {"builder": m.builder_name, "builder_args": m.builder_args, "task": m.task,
                           "classes": m.classes, "model": m.state_dict()})
    return path


@pytest.fixture(scope="module")
def cls_loc_ckpt(tmp_path_factory) -> Path:
    return _untrained_checkpoint(tmp_path_factory.mktemp("ckpt") / "cls_loc.pt", "cls_loc", "cls_loc",
                                 hidden=16)


@pytest.fixture(scope="module")
def shapes_images() -> list[np.ndarray]:
    from detseg.data import build_dataset

    ds = build_dataset("shapes:size=48,n=30", split="val", task="cls_loc")
    return [(ds[i][0].permute(1, 2, 0) * 255).byte().numpy() for i in range(30)]


def test_folder_of_20_images_with_a_corrupt_file(tmp_path, cls_loc_ckpt, shapes_images, capsys):
    imgs = tmp_path / "imgs"
    for i in range(20):
        save_png(imgs / f"im{i:02d}.png", shapes_images[i])
    (imgs / "broken.png").write_bytes(b"this is not a png")
    out = tmp_path / "pred"
    assert main(["predict", str(cls_loc_ckpt), str(imgs), "--out", str(out), "--save-json"]) == 1
    err = capsys.readouterr().err
    assert "broken.png" in err and "skipped" in err
    assert sorted(p.name for p in out.glob("*.png")) == [f"im{i:02d}.png" for i in range(20)]
    records = json.loads((out / "predictions.json").read_text())
    assert [r["image_id"] for r in records] == list(range(1, 21))
    assert all(r["frame"] is None and Path(r["file"]).parent == imgs for r in records)
    coco = json.loads((out / "coco_results.json").read_text())
    assert len(coco) == 20 and {r["image_id"] for r in coco} == set(range(1, 21))
    assert set(coco[0]) >= {"image_id", "category_id", "bbox", "score"} and len(coco[0]["bbox"]) == 4
    header = json.loads((out / "coco_images.json").read_text())
    by_id = {im["id"]: im for im in header["images"]}
    assert Path(by_id[1]["file_name"]).name == "im00.png" and by_id[1]["width"] == 48
    assert [c["id"] for c in header["categories"]] == list(range(1, len(header["categories"]) + 1))
    # the two files are a COCO pair: the header as ground truth (no annotations) loads the results
    from faster_coco_eval import COCO

    gt = COCO()
    gt.dataset = {**header, "annotations": []}
    gt.createIndex()
    dt = gt.loadRes(str(out / "coco_results.json"))
    assert len(dt.getAnnIds()) == 20 and sorted(dt.getImgIds()) == list(range(1, 21))


def _write_video(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> None:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    assert writer.isOpened()
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()


def test_video_of_30_frames(tmp_path, cls_loc_ckpt, shapes_images):
    video = tmp_path / "clip.mp4"
    _write_video(video, shapes_images[:30])
    out = tmp_path / "pred"
    assert main(["predict", str(cls_loc_ckpt), str(video), "--out", str(out), "--save-json"]) == 0
    cap = cv2.VideoCapture(str(out / "clip.mp4"))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 30
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(10.0)
    assert (cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (48, 48)
    cap.release()
    assert not list(out.glob(".*"))  # the temporary video was renamed
    records = json.loads((out / "predictions.json").read_text())
    assert [r["frame"] for r in records] == list(range(30))
    assert {r["output"] for r in records} == {"clip.mp4"}
    coco = json.loads((out / "coco_results.json").read_text())
    assert {r["image_id"] for r in coco} == set(range(1, 31))
    header = json.loads((out / "coco_images.json").read_text())
    assert header["images"][29]["frame"] == 29 and header["images"][29]["file_name"] == str(video)


def test_unreadable_video_is_skipped(tmp_path, cls_loc_ckpt, shapes_images, capsys):
    save_png(tmp_path / "in" / "a.png", shapes_images[0])
    (tmp_path / "in" / "bad.mp4").write_bytes(b"\x00" * 100)
    assert main(["predict", str(cls_loc_ckpt), str(tmp_path / "in"), "--out", str(tmp_path / "p")]) == 1
    assert "bad.mp4" in capsys.readouterr().err
    assert (tmp_path / "p" / "a.png").is_file() and not (tmp_path / "p" / "bad.mp4").exists()


def test_semantic_video_label_maps(tmp_path, shapes_images):
    ckpt = _untrained_checkpoint(tmp_path / "fcn.pt", "fcn", "semantic", width=8)
    video = tmp_path / "v.avi"
    _write_video(video, shapes_images[:4])
    save_png(tmp_path / "v.png", shapes_images[5])  # same stem as the video: outputs must not clash
    out = tmp_path / "pred"
    assert main(["predict", str(ckpt), str(video), str(tmp_path / "v.png"), "--out", str(out),
                 "--save-json"]) == 0
    assert (out / "v.mp4").is_file() and (out / "v.png").is_file() and (out / "v_label.png").is_file()
    labels = sorted((out / "v_labels").glob("*.png"))
    assert [p.name for p in labels] == [f"frame_{i:06d}.png" for i in range(4)]
    assert cv2.imread(str(labels[0]), cv2.IMREAD_UNCHANGED).shape == (48, 48)
    assert not (out / "coco_results.json").exists()


def test_globs(tmp_path, cls_loc_ckpt, shapes_images, capsys):
    for i, sub in enumerate(["a", "a", "b/deep"]):
        save_png(tmp_path / "photos" / sub / f"p{i}.png", shapes_images[i])
    save_png(tmp_path / "photos" / "a" / "p9.jpg.txt", shapes_images[0][..., 0])  # not an image name
    out = tmp_path / "pred"
    pattern = str(tmp_path / "photos" / "a" / "*.png")
    assert main(["predict", str(cls_loc_ckpt), pattern, "--out", str(out)]) == 0
    assert sorted(p.name for p in out.glob("*.png")) == ["p0.png", "p1.png"]
    out2 = tmp_path / "pred2"
    assert main(["predict", str(cls_loc_ckpt), str(tmp_path / "photos" / "**" / "*.png"), "--out", str(out2)]) == 0
    assert sorted(p.name for p in out2.glob("*.png")) == ["p0.png", "p1.png", "p2.png"]
    capsys.readouterr()
    assert main(["predict", str(cls_loc_ckpt), str(tmp_path / "nothing*.png"), "--out", str(out)]) == 2
    assert "nothing*.png" in capsys.readouterr().err


def test_same_stems_and_odd_names_stay_inside_out(tmp_path, cls_loc_ckpt, shapes_images):
    src = tmp_path / "src"
    names = ["a/img.png", "b/img.png", "b/IMG.jpg", "c/..png", "c/.hidden.png", "c/x y;rm -rf.png"]
    for i, n in enumerate(names):
        save_png(src / n, shapes_images[i])
    before = {p for p in tmp_path.rglob("*")}
    out = tmp_path / "pred"
    assert main(["predict", str(cls_loc_ckpt), str(src), "--out", str(out)]) == 0
    new = {p for p in tmp_path.rglob("*")} - before
    assert all(p == out or out in p.parents for p in new)
    drawn = sorted(p.name for p in out.glob("*.png"))
    assert len(drawn) == len(names)  # nothing overwritten
    records = json.loads((out / "predictions.json").read_text())
    assert len({r["output"] for r in records}) == len(names)
    by_file = {Path(r["file"]).relative_to(src).as_posix(): r["output"] for r in records}
    # folders are read in sorted order (b/IMG.jpg before b/img.png); names compare case-blind
    assert by_file["a/img.png"] == "img.png" and by_file["b/IMG.jpg"] == "IMG_2.png"
    assert by_file["b/img.png"] == "img_3.png"
    assert by_file["c/..png"] == "image.png" and by_file["c/.hidden.png"] == "hidden.png"
    assert by_file["c/x y;rm -rf.png"] == "x_y_rm_-rf.png"


def test_safe_stem_and_output_names():
    assert safe_stem("../../etc/passwd") == "etc_passwd"
    assert safe_stem("..") == "image" and safe_stem("") == "image"
    assert safe_stem("a\\b\nc") == "a_b_c" and len(safe_stem("x" * 500)) == 100
    names = OutputNames()
    assert names.claim(Path("q/a_label.png"), (".png", "_label.png")) == "a_label"
    # "a" would write a_label.png, which a_label.png's drawing already took
    assert names.claim(Path("r/a.png"), (".png", "_label.png")) == "a_2"
    assert names.claim(Path("s/A.png"), (".png",)) == "A"
    assert names.claim(Path("t/a.png"), (".png",)) == "a_3"


def test_out_inside_the_input_folder_never_overwrites_inputs(tmp_path, cls_loc_ckpt, shapes_images):
    save_png(tmp_path / "a.png", shapes_images[0])
    original = (tmp_path / "a.png").read_bytes()
    assert main(["predict", str(cls_loc_ckpt), str(tmp_path / "a.png"), "--out", str(tmp_path)]) == 0
    assert (tmp_path / "a.png").read_bytes() == original and (tmp_path / "a_2.png").is_file()
