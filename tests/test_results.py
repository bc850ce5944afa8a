"""Results: image loading, plotting/saving, label PNGs and the COCO results format."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from detseg.data.shapes import ShapesDataset
from detseg.results import Results, load_image


def test_load_image_accepts_every_kind(tmp_path):
    arr = (np.arange(4 * 5 * 3) % 256).astype(np.uint8).reshape(4, 5, 3)
    expected = torch.from_numpy(arr).permute(2, 0, 1).float() / 255
    Image.fromarray(arr).save(tmp_path / "a.png")
    Image.fromarray(arr[..., 0]).save(tmp_path / "g.png")
    for x, name in ((tmp_path / "a.png", "a.png"), (str(tmp_path / "a.png"), "a.png"),
                    (Image.fromarray(arr), None), (arr, None), (expected, None),
                    (torch.from_numpy(arr).permute(2, 0, 1), None)):
        t, n = load_image(x)
        assert t.dtype == torch.float32 and torch.allclose(t, expected), type(x)
        assert n == name
    gray, _ = load_image(tmp_path / "g.png")
    assert gray.shape == (3, 4, 5) and torch.equal(gray[0], gray[2])
    assert load_image(arr[..., 0])[0].shape == (3, 4, 5)
    with pytest.raises(ValueError, match="missing.png"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(TypeError):
        load_image(42)
    with pytest.raises(ValueError):
        load_image(torch.zeros(5, 4, 4))


def _instance_result():
    ds = ShapesDataset(size=32, n=1, mode="persons")
    image, t = ds[0]
    p = {k: t[k] for k in ("boxes", "labels", "masks", "keypoints")}
    p["scores"] = torch.linspace(0.9, 0.5, len(t["labels"]))
    return Results(image, p, "keypoints", ds.classes, name="x.png"), t


def test_to_coco_matches_the_prediction():
    from faster_coco_eval.core import mask as mask_utils

    r, t = _instance_result()
    recs = r.to_coco(7, category_ids=[11, 12, 13, 14])
    json.dumps(recs)  # JSON-ready
    assert len(recs) == len(t["labels"])
    for rec, box, m, kp, s in zip(recs, t["boxes"], t["masks"], t["keypoints"], r.scores):
        assert rec["image_id"] == 7 and rec["category_id"] == 14
        x1, y1, x2, y2 = box.tolist()
        assert rec["bbox"] == [x1, y1, x2 - x1, y2 - y1]
        assert rec["score"] == pytest.approx(float(s))
        rle = {"size": rec["segmentation"]["size"], "counts": rec["segmentation"]["counts"].encode()}
        assert np.array_equal(mask_utils.decode(rle), m.numpy())
        assert rec["keypoints"] == kp.reshape(-1).tolist()
    assert r.to_coco(1)[0]["category_id"] == 4


def test_cls_loc_and_pose_results():
    box = torch.tensor([2.0, 3.0, 10.0, 20.0])
    r = Results(torch.rand(3, 32, 32), {"class": torch.tensor(3), "box": box,
                                        "scores": torch.tensor([0.1, 0.2, 0.6, 0.1])},
                "cls_loc", ["circle", "rectangle", "triangle", "person"])
    assert r.labels.tolist() == [3] and r.boxes.tolist() == [box.tolist()]
    assert r.scores.tolist() == pytest.approx([0.6]) and r.names == ["triangle"]
    (rec,) = r.to_coco(1)
    assert rec["bbox"] == [2.0, 3.0, 8.0, 17.0] and rec["category_id"] == 3
    assert "triangle" in repr(r)
    kp = torch.zeros(1, 14, 3)
    kp[0, :, 0], kp[0, :, 1], kp[0, :, 2] = torch.arange(14.0), 5.0, 2.0
    pose = Results(torch.rand(3, 32, 32), {"keypoints": kp}, "pose", ["person"])
    (rec,) = pose.to_coco(2)
    assert rec["bbox"] == [0.0, 5.0, 14.0, 1.0] and len(rec["keypoints"]) == 42 and rec["score"] == 1.0
    assert pose.plot().shape == (256, 256, 3)


def test_plot_save_and_semantic_label_png(tmp_path):
    r, _ = _instance_result()
    out = r.save(tmp_path / "sub" / "x.png")
    assert np.array_equal(np.asarray(Image.open(out)), r.plot())
    assert "instance(s)" in repr(r) and "person" in repr(r) and len(r) == len(r.labels)
    with pytest.raises(ValueError, match="sem_seg"):
        r.save_label_png(tmp_path / "no.png")
    json.dumps(r.to_dict())

    ds = ShapesDataset(size=32, n=1)
    image, t = ds[0]
    sem = Results(image, {"sem_seg": t["sem_seg"]}, "semantic", ds.seg_classes, name="s")
    sem.save_label_png(tmp_path / "label.png")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "label.png")), t["sem_seg"].numpy())
    assert sem.to_coco(1) == [] and "classes present" in repr(sem)
    assert sum(sem.to_dict()["pixels_per_class"].values()) == 32 * 32
    assert sem.plot().shape == (256, 256, 3)
