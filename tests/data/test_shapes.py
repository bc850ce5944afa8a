"""The shapes world: determinism, the target convention, occlusion and keypoint visibility, specs."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from detseg.data.shapes import CLASSES, MODES, PERSON, SEG_CLASSES, ShapesDataset, _Generator, parse_spec
from detseg.structures import LSP_FLIP_PAIRS, LSP_KEYPOINTS, masks_to_boxes

SRC = Path(__file__).resolve().parents[2] / "src"


def _digest(ds: ShapesDataset, i: int) -> int:
    s = ds.generate(i)
    return hash((s.image.tobytes(), s.ids.tobytes(), s.labels.tobytes(), s.keypoints.tobytes()))


def test_random_access_is_deterministic():
    a = ShapesDataset(size=48, n=10, mode="scene", seed=5)
    b = ShapesDataset(size=48, n=10, mode="scene", seed=5, cache=False)
    forward = [a[i] for i in range(10)]
    backward = {i: b[i] for i in reversed(range(10))}
    for i, (im, tg) in enumerate(forward):
        im2, tg2 = backward[i]
        assert torch.equal(im, im2)
        for k in ("boxes", "labels", "masks", "keypoints", "sem_seg"):
            assert torch.equal(tg[k], tg2[k]), k
    # the cache hands out copies: mutating a sample does not change the next read
    im, tg = a[3]
    im.zero_()
    tg["boxes"].zero_()
    assert torch.equal(a[3][0], forward[3][0]) and torch.equal(a[3][1]["boxes"], forward[3][1]["boxes"])
    assert a[-1][1]["image_id"] == 9
    with pytest.raises(IndexError):
        a[10]


def test_same_sample_in_another_process():
    ds = ShapesDataset(size=32, n=5, mode="persons", seed=2)
    code = ("import sys; sys.path.insert(0, sys.argv[1]);"
            "from detseg.data.shapes import ShapesDataset;"
            "s = ShapesDataset(size=32, n=5, mode='persons', seed=2).generate(4);"
            "print(s.image.sum(), s.ids.sum(), s.keypoints.sum())")
    out = subprocess.run([sys.executable, "-c", code, str(SRC)], capture_output=True, text=True, check=True)
    s = ds.generate(4)
    assert out.stdout.split() == [str(s.image.sum()), str(s.ids.sum()), str(s.keypoints.sum())]


def test_splits_and_seeds_differ():
    train, val, test = (ShapesDataset(split=s, size=32, n=6) for s in ("train", "val", "test"))
    other_seed = ShapesDataset(size=32, n=6, seed=1)
    digests = [_digest(d, i) for d in (train, val, test, other_seed) for i in range(6)]
    assert len(set(digests)) == len(digests)
    assert len(ShapesDataset(split="train")) == 2000 and len(ShapesDataset(split="val")) == 300


@pytest.mark.parametrize("mode", MODES)
def test_target_follows_the_convention(mode):
    ds = ShapesDataset(size=64, n=12, mode=mode, max_objects=4)
    assert ds.classes == list(CLASSES) and ds.seg_classes == list(SEG_CLASSES)
    assert ds.keypoint_names == list(LSP_KEYPOINTS) and ds.flip_pairs == [tuple(p) for p in LSP_FLIP_PAIRS]
    assert ds.name == "shapes" and ds.problems == []
    for i in range(len(ds)):
        image, t = ds[i]
        n = len(t["labels"])
        assert image.shape == (3, 64, 64) and image.dtype == torch.float32
        assert 0 <= float(image.min()) and float(image.max()) <= 1
        assert t["boxes"].dtype == torch.float32 and t["boxes"].shape == (n, 4)
        assert t["labels"].dtype == torch.int64 and ((t["labels"] >= 1) & (t["labels"] <= 4)).all()
        assert t["masks"].dtype == torch.uint8 and t["masks"].shape == (n, 64, 64)
        assert t["keypoints"].dtype == torch.float32 and t["keypoints"].shape == (n, 14, 3)
        assert t["sem_seg"].dtype == torch.int64 and t["sem_seg"].shape == (64, 64)
        assert t["image_id"] == i and t["orig_size"].tolist() == [64, 64]
        # boxes are the tight boxes of the visible masks; masks are disjoint and non-empty
        assert torch.equal(t["boxes"], masks_to_boxes(t["masks"]))
        assert t["masks"].sum(0).max() <= 1 and (t["masks"].flatten(1).sum(1) > 0).all()
        # the semantic map is the masks painted with their labels
        sem = torch.zeros(64, 64, dtype=torch.int64)
        for m, l in zip(t["masks"], t["labels"]):
            sem[m.bool()] = l
        assert torch.equal(sem, t["sem_seg"])
        # non-persons have all-zero keypoint rows
        assert (t["keypoints"][t["labels"] != PERSON] == 0).all()
        if mode in ("single", "person"):
            assert n == 1
        else:
            assert 1 <= n <= 4
        if mode in ("person", "persons"):
            assert (t["labels"] == PERSON).all()
        if mode == "person":  # one person, fully in frame, nothing covers it
            assert (t["keypoints"][..., 2] == 2).all()


def test_keypoint_visibility_matches_the_pixels():
    ds = ShapesDataset(size=64, n=40, mode="persons", max_objects=4)
    seen = {0: 0, 1: 0, 2: 0}
    for i in range(len(ds)):
        _, t = ds[i]
        for kp, m in zip(t["keypoints"], t["masks"]):
            for x, y, v in kp.tolist():
                seen[int(v)] += 1
                inside = 0 <= x < 64 and 0 <= y < 64
                assert x == int(x) and y == int(y)  # joints are drawn pixels
                if v == 0:
                    assert not inside
                else:
                    assert inside and bool(m[int(y), int(x)]) == (v == 2)
    assert all(seen.values()), seen  # every visibility kind occurs


def test_person_faces_the_viewer():
    """The person's right joints are on the image left (before any flip)."""
    ds = ShapesDataset(size=96, n=30, mode="person")
    right_is_left = 0
    for i in range(len(ds)):
        kp = ds[i][1]["keypoints"][0]
        right_is_left += int(kp[2, 0] < kp[3, 0]) + int(kp[8, 0] < kp[9, 0])  # hips, shoulders
    assert right_is_left >= 0.9 * 2 * len(ds)


def test_occluded_objects_keep_enough_area():
    ds = ShapesDataset(size=64, n=1, max_objects=6, min_size=0.3, max_size=0.6)
    overlapped = 0
    for i in range(30):
        g = _Generator(ds, np.random.default_rng(i))
        g.run()
        for full, vis in zip(g.full, g.visible):
            assert vis.sum() >= ds.min_visible * full.sum()
            overlapped += int(vis.sum() < full.sum())
    assert overlapped > 0  # occlusion happens


def test_class_is_not_its_colour():
    ds = ShapesDataset(size=48, n=60, mode="single")
    colours = {c: [] for c in range(1, 5)}
    for i in range(len(ds)):
        im, t = ds[i]
        colours[int(t["labels"][0])].append(im[:, t["masks"][0].bool()].mean(1))
    for c, cs in colours.items():
        assert len(cs) >= 3, c
        assert torch.stack(cs).std(0).mean() > 0.1, CLASSES[c - 1]


def test_from_spec():
    ds = ShapesDataset.from_spec("shapes:size=40,n=7,mode=single,seed=3,min_size=0.3", split="val")
    assert (ds.size, len(ds), ds.mode, ds.seed, ds.min_size, ds.split) == (40, 7, "single", 3, 0.3, "val")
    assert ds.root == "shapes:size=40,n=7,mode=single,seed=3,min_size=0.3"
    assert ShapesDataset.from_spec("shapes", task="cls_loc").mode == "single"
    assert ShapesDataset.from_spec("shapes", task="pose").mode == "person"
    assert ShapesDataset.from_spec("shapes", task="keypoints").mode == "persons"
    assert ShapesDataset.from_spec("shapes", task="instance").mode == "scene"
    assert ShapesDataset.from_spec("shapes:mode=scene", task="pose").mode == "scene"
    assert len(ShapesDataset.from_spec("shapes", split="val")) == 300
    assert len(ShapesDataset.from_spec("shapes:n=50,n_val=5", split="val")) == 5
    assert len(ShapesDataset.from_spec("shapes:n=50,n_val=5", split="train")) == 50
    assert parse_spec("shapes: size = 64 , mode=person") == {"size": 64, "mode": "person"}
    with pytest.raises(ValueError, match="valid keys: size, n"):
        ShapesDataset.from_spec("shapes:colour=red")
    with pytest.raises(ValueError, match="mode"):
        ShapesDataset.from_spec("shapes:mode=party")
    with pytest.raises(ValueError, match="size"):
        ShapesDataset.from_spec("shapes:size=9.5")
    with pytest.raises(ValueError, match="key=value"):
        ShapesDataset.from_spec("shapes:size")
    with pytest.raises(ValueError, match="not a shapes spec"):
        ShapesDataset.from_spec("circles:size=3")
    with pytest.raises(ValueError, match="split"):
        ShapesDataset(split="dev")


def test_small_images_and_stats():
    for mode in MODES:
        ds = ShapesDataset(size=16, n=4, mode=mode)
        assert all(len(ds[i][1]["labels"]) >= 1 for i in range(4))
    s = ShapesDataset(size=32, n=8).stats()
    assert s["n_images"] == 8 and s["image_sizes"]["most_common"] == "32x32"
    assert set(s["objects_per_class"]) == set(CLASSES) and s["problems"] == []
    assert s["n_objects"] == sum(s["objects_per_class"].values()) >= 8
    p = ShapesDataset(size=32, n=4, mode="person").stats()
    assert p["extra"]["keypoints visible (v=2)"] == 4 * 14 and p["objects_per_class"]["person"] == 4
