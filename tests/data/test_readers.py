"""Each reader on tiny fixtures written in its exact format; sniffing; splits; task adaptation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from detseg.data import build_dataset, locate, sniff_format
from detseg.data.adapt import ObjectCrops, SemanticFromInstances, crop_window, masks_to_semantic
from detseg.data.split import hash_fraction, hash_split, resolve_splits
from detseg.structures import IGNORE_INDEX, LSP_FLIP_PAIRS, LSP_KEYPOINTS


def write_image(path: Path, w: int, h: int, mode: str = "RGB", value: int = 120) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, (w, h), value if mode == "L" else (value, 60, 30)).save(path)
    return path


def fields(ds) -> list[str]:
    return [f"{Path(p.file).name}:{p.field}" for p in ds.problems]


# -- COCO ------------------------------------------------------------------------------------
def write_coco(root: Path, name: str = "instances.json", with_images: bool = True) -> Path:
    from faster_coco_eval.core import mask as mu

    sizes = {1: (40, 30), 2: (50, 20), 7: (32, 32)}  # id -> (w, h)
    if with_images:
        for i, (w, h) in sizes.items():
            write_image(root / "images" / f"im{i}.jpg", w, h)
    bm = np.zeros((20, 50), np.uint8, order="F")
    bm[5:10, 20:30] = 1
    rle = mu.encode(bm)
    rle["counts"] = rle["counts"].decode()
    flat = bm.flatten(order="F").astype(int)  # uncompressed RLE of the same mask: run lengths,
    edges = np.flatnonzero(np.diff(flat)) + 1  # starting with a run of zeros
    runs = np.diff(np.r_[0, edges, len(flat)]).tolist()
    data = {
        "images": [{"id": i, "file_name": f"im{i}.jpg", "width": w, "height": h} for i, (w, h) in sizes.items()],
        "categories": [{"id": 1, "name": "person", "keypoints": ["nose", "left_eye", "right_eye"]},
                       {"id": 5, "name": "ball"}],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 1, "bbox": [2, 3, 10, 20], "iscrowd": 0,
             "segmentation": [[2, 3, 12, 3, 12, 23, 2, 23]], "keypoints": [5, 6, 2, 4, 5, 1, 0, 0, 0]},
            {"id": 11, "image_id": 2, "category_id": 5, "bbox": [20, 5, 10, 5], "iscrowd": 0,
             "segmentation": rle},
            {"id": 12, "image_id": 2, "category_id": 5, "bbox": [20, 5, 10, 5], "iscrowd": 0,
             "segmentation": {"size": [20, 50], "counts": runs}},
            {"id": 13, "image_id": 2, "category_id": 1, "bbox": [0, 0, 50, 20], "iscrowd": 1,
             "segmentation": rle},
            {"id": 14, "image_id": 7, "category_id": 5, "bbox": [3, 3, 0, 4], "iscrowd": 0,
             "segmentation": [[3, 3, 3, 7, 3, 3]]},
            {"id": 15, "image_id": 7, "category_id": 9, "bbox": [3, 3, 4, 4], "iscrowd": 0},
        ],
    }
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    path = root / "annotations" / name
    path.write_text(json.dumps(data))
    return path


def test_coco_boxes_masks_keypoints_crowd(tmp_path):
    path = write_coco(tmp_path)
    assert sniff_format(path) == "coco" and sniff_format(tmp_path) == "coco"
    ds = build_dataset(path, split="all")
    assert ds.classes == ["person", "ball"] and ds.task == "keypoints"
    assert ds.keypoint_names == ["nose", "left_eye", "right_eye"] and ds.flip_pairs == [(1, 2)]
    assert ds.n_crowd == 1
    assert set(fields(ds)) == {"instances.json:annotations[id=14].bbox",
                               "instances.json:annotations[id=15].category_id"}
    by_id = {ds.image_ids[i]: i for i in range(len(ds))}
    img, t = ds[by_id[1]]
    assert img.shape == (3, 30, 40) and t["image_id"] == 1
    assert t["boxes"].tolist() == [[2, 3, 12, 23]] and t["labels"].tolist() == [1]
    assert t["masks"].shape == (1, 30, 40) and t["masks"].dtype == torch.uint8
    assert t["masks"].sum() == 200  # the 10x20 polygon
    assert t["keypoints"].shape == (1, 3, 3) and t["keypoints"][0, :, 2].tolist() == [2, 1, 0]
    _, t = ds[by_id[2]]  # compressed and uncompressed RLE of one mask; the crowd left out
    assert t["labels"].tolist() == [2, 2] and t["masks"].sum((1, 2)).tolist() == [50, 50]
    assert torch.equal(t["masks"][0], t["masks"][1])
    assert t["keypoints"][:, :, 2].sum() == 0  # balls have no labelled joints


def test_coco_masks_match_pycocotools(tmp_path):
    coco_mod = pytest.importorskip("pycocotools.coco")
    path = write_coco(tmp_path)
    ref = coco_mod.COCO(str(path))
    ds = build_dataset(path, split="all")
    for i in range(len(ds)):
        _, t = ds[i]
        anns = [a for a in ref.loadAnns(ref.getAnnIds(imgIds=[ds.image_ids[i]], iscrowd=False))
                if a["id"] not in (14, 15)]
        for m, a in zip(t["masks"], anns):
            assert np.array_equal(m.numpy(), ref.annToMask(a))


def test_coco_split_files(tmp_path):
    write_coco(tmp_path, "instances_train2017.json")
    val = write_coco(tmp_path, "instances_val2017.json", with_images=False)
    data = json.loads(val.read_text())
    data["images"] = data["images"][:1]
    val.write_text(json.dumps(data))
    assert len(build_dataset(tmp_path, split="train")) == 3  # own split: train is not re-hashed
    assert len(build_dataset(tmp_path, split="val")) == 1
    assert len(build_dataset(val, split="train")) == 3  # the sibling of a split-named file
    with pytest.raises(ValueError, match="no 'test' split"):
        build_dataset(tmp_path, split="test")


def test_coco_missing_image_is_problem(tmp_path):
    path = write_coco(tmp_path)
    (tmp_path / "images" / "im7.jpg").unlink()
    ds = build_dataset(path, split="all")
    assert len(ds) == 2 and any(p.field == "image" and "im7.jpg" in p.file for p in ds.problems)


# -- PASCAL VOC ------------------------------------------------------------------------------
def voc_xml(filename: str, w: int, h: int, objects: list[tuple]) -> str:
    objs = ""
    for name, box, *rest in objects:
        bb = "".join(f"<{k}>{v}</{k}>" for k, v in zip(("xmin", "ymin", "xmax", "ymax"), box) if v is not None)
        diff = f"<difficult>{rest[0]}</difficult>" if rest else ""
        objs += f"<object><name>{name}</name>{diff}<bndbox>{bb}</bndbox></object>"
    return (f"<annotation><filename>{filename}</filename><size><width>{w}</width><height>{h}</height>"
            f"<depth>3</depth></size>{objs}</annotation>")


def write_voc(root: Path, ann: str = "Annotations", img: str = "JPEGImages", sets: bool = True) -> Path:
    names = {"cat": "raccoon", "dog": "wbc"}  # not both VOC classes, so names come from the files
    (root / ann).mkdir(parents=True, exist_ok=True)
    files = {
        "a": [("cat", (1, 1, 10, 10)), ("dog", (5, 5, 60, 30), 1)],  # 1-based; 2nd past the image, difficult
        "b": [("dog", (20, 20, 20, 25)), ("cat", (3, 4, 19, 18))],  # zero-area box
        "c": [("cat", (1, 1, 5, 5))],  # corrupt JPEG
        "d": [("cat", (1, 1, 5, 5))],  # image missing
        "e": [("cat", (1, 1, None, 5)), ("dog", (2, 2, 20, 20))],  # missing xmax
    }
    for stem, objs in files.items():
        objs = [(names[o[0]], *o[1:]) for o in objs]
        (root / ann / f"{stem}.xml").write_text(voc_xml(f"{stem}.jpg", 48, 32, objs))
        if stem in "abe":
            write_image(root / img / f"{stem}.jpg", 48, 32, mode="L" if stem == "a" else "RGB")
    (root / img / "c.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    if sets:
        (root / "ImageSets" / "Main").mkdir(parents=True)
        (root / "ImageSets" / "Main" / "train.txt").write_text("a\nb\nd\n")
        (root / "ImageSets" / "Main" / "val.txt").write_text("c\ne\n")
    return root


def test_voc_conventions_and_problems(tmp_path):
    root = write_voc(tmp_path / "voc")
    assert sniff_format(root) == "voc"
    ds = build_dataset(root, split="all")
    assert ds.classes == ["raccoon", "wbc"] and ds.task == "detection"
    assert [Path(f).stem for f in ds.files] == ["a", "b", "e"]
    img, t = ds[0]
    assert img.shape == (3, 32, 48)  # grayscale JPEG read as RGB
    assert t["boxes"].tolist() == [[0, 0, 10, 10], [4, 4, 48, 30]]  # x1 -= 1, y1 -= 1; clipped
    assert t["labels"].tolist() == [1, 2] and t["difficult"].tolist() == [False, True]
    assert t["orig_size"].tolist() == [32, 48] and t["boxes"].dtype == torch.float32
    _, t = ds[1]
    assert t["boxes"].tolist() == [[2, 3, 19, 18]]  # the zero-area box is gone
    got = set(fields(ds))
    assert {"a.xml:object[1].bndbox", "b.xml:object[0].bndbox", "c.jpg:image", "d.xml:filename",
            "e.xml:object[0].bndbox.xmax"} == got


def test_voc_splits_from_image_sets(tmp_path):
    root = write_voc(tmp_path / "voc")
    train, val = build_dataset(root, split="train"), build_dataset(root, split="val")
    assert [Path(f).stem for f in train.files] == ["a", "b"]
    assert [Path(f).stem for f in val.files] == ["e"]
    assert all("c.jpg" in p.file or "e.xml" in p.file for p in val.problems)  # only its own problems


@pytest.mark.parametrize("layout", ["lower", "devkit", "beside"])
def test_voc_other_layouts_are_sniffed(tmp_path, layout):
    if layout == "lower":
        data = write_voc(tmp_path / "raccoon", "annotations", "images", sets=False)
        spec = tmp_path / "raccoon"
    elif layout == "devkit":
        data = write_voc(tmp_path / "VOCdevkit" / "VOC2007")
        spec = tmp_path  # two levels above the data
    else:
        data = write_voc(tmp_path / "labelimg", ".", ".", sets=False)
        spec = data
    assert locate(spec) == ("voc", data.resolve() if layout == "beside" else data)
    ds = build_dataset(spec, split="all")
    assert len(ds) == 3 and ds.classes == ["raccoon", "wbc"]


def test_voc_known_classes_and_unknown_label(tmp_path):
    root = tmp_path / "voc"
    write_image(root / "JPEGImages" / "x.jpg", 20, 20)
    (root / "Annotations").mkdir()
    (root / "Annotations" / "x.xml").write_text(voc_xml("x.jpg", 20, 20, [("dog", (1, 1, 5, 5))]))
    assert build_dataset(root, split="all").classes[11] == "dog"  # the 20 VOC classes, VOC order
    (root / "classes.txt").write_text("cat\n")
    ds = build_dataset(root, split="all")
    assert ds.classes == ["cat"] and fields(ds) == ["x.xml:object[0].name"]


def test_voc_segmentation_class(tmp_path):
    root = tmp_path / "VOC2012"
    for stem in ("s1", "s2"):
        write_image(root / "JPEGImages" / f"{stem}.jpg", 16, 12)
        lab = np.zeros((12, 16), np.uint8)
        lab[2:6, 3:9] = 15  # person
        lab[2:6, 9] = 255  # the border: ignore
        im = Image.fromarray(lab, mode="P")
        im.putpalette([0] * 768)
        (root / "SegmentationClass").mkdir(parents=True, exist_ok=True)
        im.save(root / "SegmentationClass" / f"{stem}.png")
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("s1\n")
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("s2\n")
    ds = build_dataset(root, split="val", task="semantic")
    assert len(ds) == 1 and ds.seg_classes[15] == "person" and ds.task == "semantic"
    _, t = ds[0]
    assert t["sem_seg"].dtype == torch.int64 and set(t["sem_seg"].unique().tolist()) == {0, 15, IGNORE_INDEX}


# -- image/label PNG folders -----------------------------------------------------------------
def write_pairs(root: Path, names: dict[str, list[str]], value: int = 3, img: str = "{}", lab: str = "{}annot") -> Path:
    for split, stems in names.items():
        for stem in stems:
            write_image(root / img.format(split) / f"{stem}.png", 12, 8)
            label = np.full((8, 12), value, np.uint8)
            label[0, 0] = 11
            (root / lab.format(split)).mkdir(parents=True, exist_ok=True)
            Image.fromarray(label).save(root / lab.format(split) / f"{stem}.png")
    return root


def test_camvid_layout(tmp_path):
    root = write_pairs(tmp_path / "CamVid", {"train": ["0001TP_006690", "0016E5_00390"], "val": ["0016E5_07959"]})
    assert sniff_format(tmp_path) == "seg_folders"
    train = build_dataset(root, split="train")
    assert len(train) == 2 and len(build_dataset(root, split="val")) == 1
    assert train.seg_classes[-1] == "Bicyclist" and len(train.seg_classes) == 11
    _, t = train[0]
    assert t["sem_seg"][0, 0] == IGNORE_INDEX and t["sem_seg"][1, 1] == 3  # 11 = void -> ignore


def test_generic_pairs_classes_and_size_mismatch(tmp_path):
    root = write_pairs(tmp_path / "d", {"": ["p", "q", "r"]}, value=2, img="images", lab="labels")
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(root / "labels" / "r.png")
    ds = build_dataset(root, split="all")
    assert ds.seg_classes == [f"class_{i}" for i in range(12)]  # values seen: 2 and 11
    assert fields(ds) == ["r.png:size"] and len(ds) == 2
    (root / "classes.txt").write_text("a\nb\nc\n")
    ds = build_dataset(root, split="all")
    _, t = ds[0]
    assert ds.seg_classes == ["a", "b", "c"] and t["sem_seg"][0, 0] == IGNORE_INDEX and t["sem_seg"][1, 1] == 2
    train = build_dataset(root, split="train", val_fraction=0.5)
    val = build_dataset(root, split="val", val_fraction=0.5)
    assert not set(train.files) & set(val.files)


# -- LSP / LSPET -----------------------------------------------------------------------------
def write_lsp(root: Path, layout: str, n: int = 3, n_images: int | None = None) -> np.ndarray:
    import scipy.io

    rng = np.random.default_rng(0)
    xy = rng.uniform(5, 35, size=(n, 14, 2))
    flag = np.zeros((n, 14))
    flag[0, 3] = 1
    xy[1, 13] = (20, -2)  # head top above the image
    for i in range(n if n_images is None else n_images):
        write_image(root / "images" / (f"im{i + 1:04d}.jpg" if layout == "lsp" else f"im{i + 1:05d}.jpg"), 40, 40)
    if layout == "lsp":  # (3, 14, N), row 3: 1 = occluded
        mat = np.concatenate([xy, flag[..., None]], -1).transpose(2, 1, 0)
    else:  # (14, 3, N), row 3: 1 = visible
        mat = np.concatenate([xy, 1 - flag[..., None]], -1).transpose(1, 2, 0)
    scipy.io.savemat(root / "joints.mat", {"joints": mat})
    return xy


@pytest.mark.parametrize("layout", ["lsp", "lspet"])
def test_lsp_layouts_and_visibility(tmp_path, layout):
    xy = write_lsp(tmp_path, layout)
    assert sniff_format(tmp_path) == "lsp"
    ds = build_dataset(tmp_path, split="all")
    assert ds.keypoint_names == list(LSP_KEYPOINTS) and ds.flip_pairs == [tuple(p) for p in LSP_FLIP_PAIRS]
    assert ds.classes == ["person"] and ds.task == "pose"
    _, t = ds[0]
    kp = t["keypoints"]
    assert kp.shape == (1, 14, 3) and t["labels"].tolist() == [1] and t["boxes"].shape == (1, 4)
    flagged = 1 if layout == "lsp" else 0  # LSP: occluded but labelled; LSPET: invisible, masked
    assert kp[0, 3, 2] == flagged and (kp[0, [0, 1, 2, 4], 2] == 2).all()
    assert torch.allclose(kp[0, 0, :2], torch.tensor(xy[0, 0], dtype=torch.float32))
    b = t["boxes"][0]
    assert 0 <= b[0] < b[2] <= 40 and 0 <= b[1] < b[3] <= 40
    assert fields(ds) == ["im0002.jpg:joints[head_top]" if layout == "lsp" else "im00002.jpg:joints[head_top]"]


def test_lsp_count_mismatch(tmp_path):
    write_lsp(tmp_path, "lspet", n=3, n_images=2)
    ds = build_dataset(tmp_path / "joints.mat", split="all")
    assert len(ds) == 2 and any(p.field == "joints" and "3 annotations but 2 images" in p.message for p in ds.problems)


def test_lsp_original_split(tmp_path):
    import scipy.io

    (tmp_path / "images").mkdir()
    for i in range(2000):
        (tmp_path / "images" / f"im{i + 1:04d}.jpg").write_bytes(b"")  # never opened: split only
    scipy.io.savemat(tmp_path / "joints.mat", {"joints": np.ones((3, 14, 2000))})
    from detseg.data.lsp import LSPDataset

    with pytest.raises(ValueError, match="no 'x'|unknown split"):
        LSPDataset(tmp_path, split="x")
    ds = LSPDataset(tmp_path, split="test")
    assert len(ds.split_keys["test"]) == 1000 and ds.split_keys["test"][0] == "im1001.jpg"


# -- Penn-Fudan ------------------------------------------------------------------------------
def write_pennfudan(root: Path) -> Path:
    for k, stem in enumerate(["FudanPed00001", "PennPed00002"]):
        write_image(root / "PNGImages" / f"{stem}.png", 30, 20)
        ids = np.zeros((20, 30), np.uint8)
        ids[2:10, 3:8] = 1
        ids[5:18, 15:25] = 2
        (root / "PedMasks").mkdir(exist_ok=True)
        Image.fromarray(ids).save(root / "PedMasks" / f"{stem}_mask.png")
        second = "(16, 6) - (25, 18)" if k == 0 else "(1, 1) - (3, 3)"  # 1-based; the 2nd file disagrees
        (root / "Annotation").mkdir(exist_ok=True)
        (root / "Annotation" / f"{stem}.txt").write_text(
            'Bounding box for object 1 "PASpersonWalking" (Xmin, Ymin) - (Xmax, Ymax) : (4, 3) - (8, 10)\n'
            f'Bounding box for object 2 "PASpersonWalking" (Xmin, Ymin) - (Xmax, Ymax) : {second}\n')
    return root


def test_pennfudan(tmp_path):
    root = write_pennfudan(tmp_path / "PennFudanPed")
    assert sniff_format(tmp_path) == "pennfudan"
    ds = build_dataset(root, split="all")
    img, t = ds[0]
    assert ds.classes == ["person"] and ds.task == "instance"
    assert t["boxes"].tolist() == [[3, 2, 8, 10], [15, 5, 25, 18]] and t["labels"].tolist() == [1, 1]
    assert t["masks"].shape == (2, 20, 30) and t["masks"].sum((1, 2)).tolist() == [40, 130]
    assert fields(ds) == ["PennPed00002.txt:object 2"]


# -- sniffing and splits ---------------------------------------------------------------------
def test_sniff_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no known dataset format.*COCO json.*Penn-Fudan"):
        sniff_format(tmp_path / "empty")
    with pytest.raises(FileNotFoundError):
        sniff_format(tmp_path / "nope")
    write_pennfudan(tmp_path / "two" / "PennFudanPed")
    write_lsp(tmp_path / "two" / "lsp", "lspet")
    with pytest.raises(ValueError, match="several datasets inside"):
        sniff_format(tmp_path / "two")
    assert locate(tmp_path / "two", format="lsp")[0] == "lsp"


def test_hash_split_is_stable_disjoint_and_order_free():
    keys = [f"img_{i}.jpg" for i in range(1000)]
    train, val = hash_split(keys, 0.2)
    assert not set(train) & set(val) and len(train) + len(val) == 1000
    assert 150 < len(val) < 250
    assert hash_split(list(reversed(keys)), 0.2)[1] == list(reversed(val))
    assert hash_split(keys[:500], 0.2)[1] == [k for k in val if k in set(keys[:500])]  # per file, not per list
    assert hash_split(keys, 0.2, seed=1)[1] != val
    assert hash_fraction("img_1.jpg") == hash_fraction("img_1.jpg")
    splits, _ = resolve_splits(keys, {"trainval": keys[:800], "test": keys[800:]}, 0.25)
    assert set(splits["train"]) | set(splits["val"]) == set(keys[:800]) and splits["test"] == keys[800:]


# -- task adaptation -------------------------------------------------------------------------
def test_cls_loc_crops_keep_the_box_inside(tmp_path):
    root = write_voc(tmp_path / "voc")
    ds = build_dataset(root, split="all", task="cls_loc")
    assert isinstance(ds, ObjectCrops) and ds.task == "cls_loc" and len(ds) == 4
    again = build_dataset(root, split="all", task="cls_loc")
    assert ds.items == again.items  # deterministic
    for i in range(len(ds)):
        img, t = ds[i]
        h, w = img.shape[-2:]
        (x0, y0, x1, y1), = t["boxes"].tolist()
        assert t["boxes"].shape == (1, 4) and t["labels"].shape == (1,)
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h and t["orig_size"].tolist() == [h, w]
    for n in range(50):  # on an unclipped image the box covers 30-80% of the crop side
        x0, y0, x1, y1 = crop_window(np.array([400, 400, 440, 480.0]), 2000, 2000, f"f{n}")
        assert 0.3 - 0.02 <= 40 / (x1 - x0) <= 0.8 + 0.02 and x0 <= 400 and x1 >= 440 and y0 <= 400 and y1 >= 480


def test_semantic_from_instance_masks(tmp_path):
    root = write_pennfudan(tmp_path / "PennFudanPed")
    ds = build_dataset(root, split="all", task="semantic")
    assert isinstance(ds, SemanticFromInstances) and ds.seg_classes == ["background", "person"]
    _, t = ds[0]
    assert set(t) == {"sem_seg", "image_id", "orig_size"} and int((t["sem_seg"] == 1).sum()) == 170
    masks = torch.zeros((2, 4, 4), dtype=torch.uint8)
    masks[0] = 1
    masks[1, :2, :2] = 1
    seg = masks_to_semantic(masks, torch.tensor([1, 2]))
    assert seg[0, 0] == 2 and seg[3, 3] == 1  # the small object stays on top


def test_impossible_task_names_dataset_and_key(tmp_path):
    root = write_voc(tmp_path / "voc")
    with pytest.raises(ValueError, match="voc.*'semantic'.*'masks'"):
        build_dataset(root, task="semantic")
    write_lsp(tmp_path / "lsp", "lspet")
    assert build_dataset(tmp_path / "lsp", task="pose").task == "pose"
    crops = build_dataset(write_coco(tmp_path / "coco"), split="all", task="pose")
    assert isinstance(crops, ObjectCrops) and len(crops) == 1
    _, t = crops[0]
    assert t["keypoints"].shape == (1, 3, 3)
