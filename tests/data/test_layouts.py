"""Data found by content whatever the folders are called; the same data described by a dataset
yaml and by ``--images``/``--annotations`` loads identically; nothing usable names what was seen."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from detseg.data import build_dataset, locate
from detseg.data.check import check_dataset


def write_image(path: Path, w: int = 40, h: int = 30, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def write_voc(root: Path, ann: str, img: str, n: int = 4) -> Path:
    """``n`` images ``p0.jpg``... in ``root/img`` and their VOC XML files in ``root/ann``."""
    for i in range(n):
        write_image(root / img / f"p{i}.jpg", seed=i)
        (root / ann).mkdir(parents=True, exist_ok=True)
        (root / ann / f"p{i}.xml").write_text(
            '<?xml version="1.0"?>\n<annotation><filename>p{0}.jpg</filename><size><width>40</width>'
            '<height>30</height></size><object><name>{1}</name><bndbox><xmin>{2}</xmin><ymin>3</ymin>'
            '<xmax>20</xmax><ymax>25</ymax></bndbox></object></annotation>'.format(i, "cat" if i % 2 else "owl", 2 + i))
    return root


def write_joints_set(root: Path, n: int = 4, names: str = "im{:05d}.jpg") -> np.ndarray:
    """``n`` images in ``root/images`` and their joints ``[N, 14, 3]`` (v: 1 visible, 0 not)."""
    rng = np.random.default_rng(1)
    joints = np.concatenate([rng.uniform(4, 28, (n, 14, 2)), np.ones((n, 14, 1))], -1)
    joints[:, 13, 2] = 0
    for i in range(n):
        write_image(root / "images" / names.format(i + 1), 32, 32, seed=i)
    return joints


def write_label_folders(root: Path, images: str = "rgb", labels: str = "gt", n: int = 3) -> Path:
    for i in range(n):
        write_image(root / images / f"f{i}.png", 24, 16, seed=i)
        label = np.zeros((16, 24), np.uint8)
        label[4:10, 3 + i:12] = 1 + i % 2
        (root / labels).mkdir(parents=True, exist_ok=True)
        Image.fromarray(label).save(root / labels / f"f{i}.png")
    return root


def assert_same(a, b) -> None:
    """Same images in the same order, same targets."""
    assert a.files == b.files and a.classes == b.classes and len(a) == len(b) > 0
    for i in range(len(a)):
        (ia, ta), (ib, tb) = a[i], b[i]
        assert torch.equal(ia, ib)
        for k in ("boxes", "labels", "keypoints", "sem_seg"):
            if k in ta:
                assert torch.equal(ta[k], tb[k]), k


def write_yaml(path: Path, **fields) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(fields))
    return path


# -- found with no flag ------------------------------------------------------------------------
@pytest.mark.parametrize("ann,img", [("xml", "images"), ("boxes", "jpgs"), ("labels", "pictures"),
                                     ("ann", "ann")])
def test_voc_found_by_content(tmp_path, ann, img):
    root = write_voc(tmp_path / "set", ann, img)
    assert locate(root) == ("voc", root)
    assert locate(tmp_path) == ("voc", root)  # one level above
    ds = build_dataset(root, split="all")
    assert len(ds) == 4 and ds.classes == ["cat", "owl"] and not ds.problems
    assert ds[1][1]["boxes"].tolist() == [[2.0, 2.0, 20.0, 25.0]]  # 1-based -> 0-based


def test_voc_xml_beside_images_and_foreign_xml(tmp_path):
    root = write_voc(tmp_path / "flat", ".", ".")
    assert locate(root)[0] == "voc" and len(build_dataset(root, split="all")) == 4
    other = tmp_path / "other"
    write_image(other / "pics" / "a.jpg")
    (other / "meta").mkdir()
    (other / "meta" / "a.xml").write_text("<config><a>1</a></config>")  # XML, but no VOC annotation
    with pytest.raises(ValueError, match="no known dataset format"):
        locate(other)


@pytest.mark.parametrize("kind", ["npy", "json", "mat_rows", "csv", "json_names"])
def test_lsp_joints_files(tmp_path, kind):
    joints = write_joints_set(tmp_path)
    if kind == "npy":
        np.save(tmp_path / "joints.npy", joints.transpose(1, 2, 0))  # LSPET's (14, 3, N)
    elif kind == "json":
        (tmp_path / "keypoints.json").write_text(json.dumps(joints.tolist()))  # (N, 14, 3)
    elif kind == "mat_rows":
        import scipy.io

        scipy.io.savemat(tmp_path / "pose.mat", {"pts": joints})  # (N, 14, 3), another variable name
    elif kind == "csv":
        rows = ["name," + ",".join(f"{c}{k}" for k in range(14) for c in "xyv")]
        rows += [f"im{i + 1:05d}.jpg," + ",".join(f"{v:g}" for v in j.ravel()) for i, j in enumerate(joints)]
        (tmp_path / "joints.csv").write_text("\n".join(rows))
    else:
        names = [f"im{i + 1:05d}.jpg" for i in range(len(joints))][::-1]  # listed in another order
        (tmp_path / "joints.json").write_text(json.dumps({"images": names, "joints": joints[::-1].tolist()}))
    fmt, _ = locate(tmp_path)
    assert fmt == "lsp"
    ds = build_dataset(tmp_path, split="all")
    assert len(ds) == 4 and not ds.problems
    at = [Path(f).name for f in ds.files].index("im00003.jpg")  # a listing json keeps its order
    kp = ds[at][1]["keypoints"][0]
    assert torch.allclose(kp[0, :2], torch.tensor(joints[2, 0, :2], dtype=torch.float32))
    assert kp[0, 2] == 2 and kp[13, 2] == 0  # visible / not labelled


def test_lsp_renamed_images_pair_in_sorted_order(tmp_path):
    joints = write_joints_set(tmp_path, names="frame_{}x.jpg")
    np.save(tmp_path / "joints.npy", joints)
    ds = build_dataset(tmp_path, split="all")
    assert [Path(f).name for f in ds.files] == [f"frame_{i}x.jpg" for i in range(1, 5)]
    assert any(p.field == "joints" and "sorted order" in p.message for p in ds.problems)
    # a slice of a larger set: numbered, but not from 1
    (tmp_path / "slice" / "images").mkdir(parents=True)
    for i, f in enumerate(sorted((tmp_path / "images").iterdir())):
        f.rename(tmp_path / "slice" / "images" / f"im{5001 + i:05d}.jpg")
    np.save(tmp_path / "slice" / "joints.npy", joints)
    ds = build_dataset(tmp_path / "slice", split="all")
    assert len(ds) == 4 and any("sorted order" in p.message for p in ds.problems)


def test_label_png_folders_by_stems(tmp_path):
    root = write_label_folders(tmp_path / "seg")
    assert locate(root) == ("seg_folders", root)
    ds = build_dataset(root, split="all")
    assert len(ds) == 3 and ds.seg_classes == ["class_0", "class_1", "class_2"]
    assert ds[0][1]["sem_seg"][5, 5] == 1


def test_nothing_usable_lists_what_was_looked_at(tmp_path):
    root = tmp_path / "stuff"
    write_image(root / "pics" / "a.jpg")
    (root / "notes.txt").write_text("hello")
    (root / "meta").mkdir()
    (root / "meta" / "a.xml").write_text("<config/>")
    with pytest.raises(ValueError) as err:
        locate(root)
    text = str(err.value)
    assert "looked at:" in text and f"{root}/ (1 file(s) (.txt 1), 2 folder(s))" in text
    assert f"{root / 'pics'}/" in text and f"{root / 'meta'}/" in text
    assert "voc: no folder of .xml files with an <annotation> root" in text
    assert "lsp: no joints array" in text and "seg_folders:" in text
    assert "--data mydata.yaml" in text and "annotations:" in text and "format: voc" in text


# -- described: a yaml, the flags ------------------------------------------------------------
def test_voc_yaml_and_flags_load_like_detection(tmp_path):
    root = write_voc(tmp_path / "set", "boxes", "jpgs")
    sniffed = build_dataset(root, split="all")
    y = write_yaml(root / "data.yaml", images="jpgs", annotations="boxes")
    assert_same(sniffed, build_dataset(y, split="all"))
    assert_same(sniffed, build_dataset(None, split="all", images=root / "jpgs", annotations=root / "boxes"))
    for split in ("train", "val"):  # the same hash split
        assert build_dataset(y, split=split).files == build_dataset(root, split=split).files
    y2 = write_yaml(root / "named.yaml", format="voc", images="jpgs", annotations="boxes",
                    classes=["owl", "cat", "dog"], splits={"train": "0:3", "val": ["p3"]})
    train, val = build_dataset(y2, split="train"), build_dataset(y2, split="val")
    assert train.classes == ["owl", "cat", "dog"] and len(train) == 3
    assert [Path(f).name for f in val.files] == ["p3.jpg"]
    assert train[0][1]["labels"].tolist() == [1]  # p0 is an owl: label 1 of the listed classes


def test_lsp_and_label_folders_yaml_and_flags(tmp_path):
    joints = write_joints_set(tmp_path / "pose")
    np.save(tmp_path / "pose" / "joints.npy", joints)
    sniffed = build_dataset(tmp_path / "pose", split="all")
    y = write_yaml(tmp_path / "pose.yaml", images="pose/images", annotations="pose/joints.npy")
    assert_same(sniffed, build_dataset(y, split="all"))
    assert_same(sniffed, build_dataset(None, split="all", images=tmp_path / "pose" / "images",
                                       annotations=tmp_path / "pose" / "joints.npy"))
    root = write_label_folders(tmp_path / "seg")
    sniffed = build_dataset(root, split="all")
    y = write_yaml(root / "seg.yaml", images="rgb", annotations="gt", classes=["bg", "a", "b"])
    described = build_dataset(y, split="all")
    assert described.seg_classes == ["bg", "a", "b"] and described.files == sniffed.files
    assert_same(sniffed, build_dataset(root, split="all", images=root / "rgb", annotations=root / "gt"))


def test_coco_yaml_with_image_root(tmp_path):
    write_image(tmp_path / "pics" / "a.jpg")
    data = {"images": [{"id": 1, "file_name": "a.jpg", "width": 40, "height": 30}],
            "categories": [{"id": 3, "name": "ball"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [1, 2, 10, 8], "iscrowd": 0}]}
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "labels.json").write_text(json.dumps(data))
    y = write_yaml(tmp_path / "coco.yaml", images="pics", annotations="meta/labels.json")
    ds = build_dataset(y, split="all")
    assert len(ds) == 1 and ds.classes == ["ball"] and ds[0][1]["boxes"].tolist() == [[1, 2, 11, 10]]


def test_yaml_errors_name_the_field(tmp_path):
    y = write_yaml(tmp_path / "bad.yaml", images="nope", annotations=".")
    with pytest.raises(FileNotFoundError, match="bad.yaml: images"):
        build_dataset(y)
    y = write_yaml(tmp_path / "bad2.yaml", image="x")
    with pytest.raises(ValueError, match="bad2.yaml: image: unknown key"):
        build_dataset(y)


def test_check_accepts_yaml_and_flags(tmp_path):
    from detseg.cli.main import main

    root = write_voc(tmp_path / "set", "xml", "images")
    y = write_yaml(root / "d.yaml", images="images", annotations="xml")
    reports = []
    for argv in ([str(root)], [str(y)], ["--images", str(root / "images"), "--annotations", str(root / "xml")]):
        out = tmp_path / f"r{len(reports)}.json"
        assert main(["data", "check", *argv, "--json", str(out)]) == 0
        reports.append(json.loads(out.read_text()))
    for r in reports[1:]:
        assert {k: r[k] for k in ("format", "n_images", "classes", "objects_per_class")} == \
            {k: reports[0][k] for k in ("format", "n_images", "classes", "objects_per_class")}
    assert check_dataset(y)["format"] == "voc"
