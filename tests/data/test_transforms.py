"""Transforms keep boxes, masks, keypoints and sem_seg aligned; flips swap left and right joints."""

import pytest
import torch

from detseg.data.shapes import ShapesDataset
from detseg.data.transforms import build_transforms, hflip, random_scale_crop
from detseg.structures import IGNORE_INDEX, LSP_FLIP_PAIRS, LSP_KEYPOINTS, masks_to_boxes

R_ANKLE, L_ANKLE = LSP_KEYPOINTS.index("right_ankle"), LSP_KEYPOINTS.index("left_ankle")
R_WRIST, L_WRIST = LSP_KEYPOINTS.index("right_wrist"), LSP_KEYPOINTS.index("left_wrist")


def _check_aligned(image, t, size):
    """Every invariant a transformed sample must keep."""
    n = len(t["labels"])
    assert image.shape == (3, size, size) and image.dtype == torch.float32
    assert t["boxes"].dtype == torch.float32 and t["boxes"].shape == (n, 4)
    assert t["masks"].dtype == torch.uint8 and t["masks"].shape == (n, size, size)
    assert t["keypoints"].dtype == torch.float32 and t["keypoints"].shape == (n, 14, 3)
    assert t["sem_seg"].dtype == torch.int64 and t["sem_seg"].shape == (size, size)
    w, h = t["boxes"][:, 2] - t["boxes"][:, 0], t["boxes"][:, 3] - t["boxes"][:, 1]
    assert ((w >= 1) & (h >= 1)).all()  # degenerate boxes are gone
    assert torch.equal(masks_to_boxes(t["masks"]), t["boxes"])  # the mask's tight box is the box
    # sem_seg agrees with the masks wherever an instance is; 255 only off the image (padding)
    for m, l in zip(t["masks"], t["labels"]):
        assert (t["sem_seg"][m.bool()] == l).all()
    pad = t["sem_seg"] == IGNORE_INDEX
    assert (image[:, pad] == 0).all()
    kp = t["keypoints"]
    x, y, v = kp[..., 0], kp[..., 1], kp[..., 2]
    outside = (x < -0.5) | (x >= size - 0.5) | (y < -0.5) | (y >= size - 0.5)
    assert (v[outside] == 0).all()


@pytest.mark.parametrize("task,mode", [("detection", "scene"), ("instance", "scene"), ("semantic", "scene"),
                                       ("keypoints", "persons"), ("cls_loc", "single"), ("pose", "person")])
def test_train_transforms_keep_everything_aligned(task, mode):
    ds = ShapesDataset(size=64, n=24, mode=mode)
    tf = build_transforms(task, train=True, flip_pairs=ds.flip_pairs)
    torch.manual_seed(0)
    for i in range(len(ds)):
        image, t = tf(*ds[i])
        _check_aligned(image, t, 64)


def test_keypoints_land_on_their_drawn_pixels_after_scaling():
    ds = ShapesDataset(size=64, n=16, mode="person")
    torch.manual_seed(1)
    for i in range(len(ds)):
        image, t = ds[i]
        _, t2 = random_scale_crop(image, t, (1.0, 1.6))  # zoom in: every source pixel survives
        for x, y, v in t2["keypoints"][0].tolist():
            if v > 0:
                assert t2["masks"][0, round(y), round(x)] == 1


def test_flip_swaps_left_and_right():
    ds = ShapesDataset(size=48, n=6, mode="persons")
    for i in range(len(ds)):
        image, t = ds[i]
        im2, t2 = hflip(image, t, ds.flip_pairs)
        assert torch.equal(im2, image.flip(-1))
        assert torch.equal(t2["masks"], t["masks"].flip(-1))
        assert torch.equal(t2["sem_seg"], t["sem_seg"].flip(-1))
        assert torch.equal(t2["boxes"], masks_to_boxes(t2["masks"]))
        before, after = t["keypoints"], t2["keypoints"]
        for r, l in ((R_ANKLE, L_ANKLE), (R_WRIST, L_WRIST), *LSP_FLIP_PAIRS):
            # right joint after the flip = the mirrored left joint before, and vice versa
            assert torch.equal(after[:, r, 0], 47 - before[:, l, 0])
            assert torch.equal(after[:, r, 1:], before[:, l, 1:])
            assert torch.equal(after[:, l, 0], 47 - before[:, r, 0])
        # mirrored joints still sit on their (mirrored) drawn pixel
        for kp, m in zip(after, t2["masks"]):
            for x, y, v in kp.tolist():
                if v == 2:
                    assert m[int(y), int(x)] == 1
        # twice is the identity
        im3, t3 = hflip(im2, t2, ds.flip_pairs)
        assert torch.equal(im3, image) and torch.equal(t3["keypoints"], t["keypoints"])
        assert torch.equal(t3["boxes"], t["boxes"])


def test_flip_needs_flip_pairs_for_keypoints():
    image, t = ShapesDataset(size=32, n=1, mode="person")[0]
    with pytest.raises(ValueError, match="flip_pairs"):
        hflip(image, t, None)
    t.pop("keypoints")
    hflip(image, t, None)  # fine without keypoints


def _corner_target(size=32):
    """Two objects: a 3x3 square in the top-left corner, a big one in the middle; a person-like
    keypoint row on each (joint 0 in the corner, joint 1 in the middle)."""
    masks = torch.zeros(2, size, size, dtype=torch.uint8)
    masks[0, 0:3, 0:3] = 1
    masks[1, 10:22, 10:22] = 1
    kp = torch.zeros(2, 14, 3)
    kp[:, 0] = torch.tensor([1.0, 1.0, 2.0])
    kp[:, 1] = torch.tensor([16.0, 16.0, 2.0])
    sem = masks[0].long() + 2 * masks[1].long()
    t = {"boxes": masks_to_boxes(masks), "labels": torch.tensor([1, 2]), "masks": masks, "keypoints": kp,
         "sem_seg": sem, "image_id": 0, "orig_size": torch.tensor([size, size])}
    return torch.rand(3, size, size), t


def test_cropped_out_joints_and_boxes_are_dropped_or_zeroed():
    zeroed = dropped = 0
    for seed in range(40):
        torch.manual_seed(seed)
        image, t = _corner_target()
        _, t2 = random_scale_crop(image, t, (2.0, 2.0))
        n = len(t2["labels"])
        assert len(t2["boxes"]) == len(t2["masks"]) == len(t2["keypoints"]) == n
        x, y, v = t2["keypoints"][..., 0], t2["keypoints"][..., 1], t2["keypoints"][..., 2]
        outside = (x < -0.5) | (x >= 31.5) | (y < -0.5) | (y >= 31.5)
        assert (v[outside] == 0).all() and (v[~outside & (v > 0)] == 2).all()
        zeroed += int(outside[..., 0].sum())
        if n < 2:
            dropped += 1
            assert t2["labels"].tolist() == [2]  # the corner square went, its label with it
    assert zeroed > 0 and dropped > 0


def test_zoom_out_pads_sem_seg_with_ignore():
    torch.manual_seed(0)
    image, t = _corner_target()
    im2, t2 = random_scale_crop(image, t, (0.5, 0.5))
    pad = t2["sem_seg"] == IGNORE_INDEX
    assert pad.sum() == 32 * 32 - 16 * 16 and (im2[:, pad] == 0).all()
    assert set(t2["sem_seg"][~pad].unique().tolist()) <= {0, 1, 2}
    assert (t2["boxes"][:, 2:] - t2["boxes"][:, :2] >= 1).all()


@pytest.mark.parametrize("task,mode", [("cls_loc", "single"), ("pose", "person")])
def test_single_object_tasks_keep_the_object_in_frame(task, mode):
    ds = ShapesDataset(size=48, n=30, mode=mode, min_size=0.7, max_size=0.95)
    tf = build_transforms(task, train=True, flip_pairs=ds.flip_pairs, scale_jitter=(1.25, 1.25),
                          flip_prob=0.0, photometric=False)
    torch.manual_seed(0)
    for i in range(len(ds)):
        image, t = ds[i]
        im2, t2 = tf(image, t)
        assert len(t2["labels"]) == 1
        if task == "pose":
            assert (t2["keypoints"][..., 2] > 0).all()
        # nothing of the object was cut: its area grows with the scale (which may be lowered to fit)
        b, b2 = t["boxes"][0], t2["boxes"][0]
        s = float((b2[2] - b2[0]) / (b[2] - b[0]))
        assert 0.9 <= s <= 1.3
        area, area2 = float(t["masks"].sum()), float(t2["masks"].sum())
        assert area2 >= 0.8 * area * s * s


def test_pose_targets_without_boxes_keep_the_joints():
    image, t = ShapesDataset(size=48, n=1, mode="person", min_size=0.9, max_size=0.95)[0]
    t = {"keypoints": t["keypoints"], "image_id": 0, "orig_size": t["orig_size"]}
    tf = build_transforms("pose", train=True, flip_pairs=LSP_FLIP_PAIRS, scale_jitter=(1.25, 1.25))
    for seed in range(10):
        torch.manual_seed(seed)
        _, t2 = tf(image, t)
        assert (t2["keypoints"][..., 2] > 0).all() and set(t2) == set(t)


def test_eval_mode_is_identity_and_bad_input_is_clear():
    image, t = ShapesDataset(size=32, n=1)[0]
    tf = build_transforms("instance", train=False)
    im2, t2 = tf(image, t)
    assert im2 is image and t2 is t
    with pytest.raises(ValueError, match="unknown task"):
        build_transforms("panoptic", train=True)
    with pytest.raises(ValueError, match="scale_jitter"):
        build_transforms("detection", train=True, scale_jitter=(1.5, 1.0))


def test_empty_targets_and_sem_seg_only():
    image = torch.rand(3, 40, 30)
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
             "masks": torch.zeros(0, 40, 30, dtype=torch.uint8), "keypoints": torch.zeros(0, 14, 3)}
    sem_only = {"sem_seg": torch.randint(0, 5, (40, 30))}
    for task, t in (("instance", empty), ("semantic", sem_only)):
        tf = build_transforms(task, train=True, flip_pairs=LSP_FLIP_PAIRS)
        for seed in range(5):
            torch.manual_seed(seed)
            im2, t2 = tf(image, t)
            assert im2.shape == (3, 40, 30) and set(t2) == set(t)
            for k, v in t2.items():
                assert v.shape[1:] == t[k].shape[1:] if k != "sem_seg" else v.shape == (40, 30)
