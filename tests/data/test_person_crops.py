"""Person-centred square crops for single-person pose data (detseg.data.adapt.PersonCrop)."""

import math

import pytest
import torch

from detseg.data import build_dataset
from detseg.data.adapt import PersonCrop


def labelled_inside(t: dict, side: int) -> bool:
    kp = t["keypoints"][0]
    xy = kp[kp[:, 2] > 0, :2]
    return bool(((xy >= -0.5) & (xy <= side - 0.5)).all())


@pytest.mark.parametrize("near_border", [False, True])
def test_validation_crops_are_square_centred_and_keep_every_joint(tmp_path, write_lspet, near_border):
    joints = write_lspet(tmp_path, 6, size=(60, 40), near_border=near_border)
    plain = build_dataset(tmp_path, split="all", task="pose")
    crops = build_dataset(tmp_path, split="all", task="pose", crop="person")
    assert len(crops) == len(plain) == 6 and crops.task == "pose" and crops.flip_pairs == plain.flip_pairs
    for i in range(len(crops)):
        (image, t), (full, ft) = crops[i], plain[i]
        side = image.shape[-1]
        box = ft["boxes"][0]
        longer = float(max(box[2] - box[0], box[3] - box[1]))
        assert image.shape[-2:] == (side, side) and abs(side - 1.25 * longer) <= 2
        cbox = t["boxes"][0]
        centre = ((cbox[0] + cbox[2]) / 2, (cbox[1] + cbox[3]) / 2)
        assert abs(centre[0] - side / 2) <= 1 and abs(centre[1] - side / 2) <= 1  # centred
        assert torch.allclose(cbox[2:] - cbox[:2], box[2:] - box[:2])  # the box moved, not resized
        assert labelled_inside(t, side)
        assert torch.equal(t["keypoints"][0, :, 2] > 0, torch.from_numpy(joints[i, :, 2] > 0))
        # each joint sits on the same pixel as before the crop (crop offset = box shift)
        off = (box[:2] - cbox[:2]).round().long()
        for x, y, v in t["keypoints"][0].tolist():
            if v > 0:
                xi, yi = round(x), round(y)
                assert torch.equal(image[:, yi, xi], full[:, yi + off[1], xi + off[0]])
        if near_border:  # the crop passes the top-left corner: zero padding there
            assert float(image[:, 0, 0].abs().sum()) == 0
    again = build_dataset(tmp_path, split="all", task="pose", crop="person")
    assert all(torch.equal(again[i][0], crops[i][0]) for i in range(len(crops)))  # fixed


def test_spec_option_equals_keyword_and_jitter_is_training_only(tmp_path, write_lspet):
    write_lspet(tmp_path, 4, size=(80, 64))
    spec = f"{tmp_path}:crop=person,crop_scale=1.5,crop_jitter=0.3,crop_shift=0.15"
    val = build_dataset(spec, split="2:4", task="pose")
    ref = build_dataset(tmp_path, split="2:4", task="pose", crop=PersonCrop(1.5))
    assert all(torch.equal(val[i][0], ref[i][0]) for i in range(2))  # no jitter off training
    train = build_dataset(spec, split="0:2", task="pose", train=True)
    torch.manual_seed(0)
    sides = set()
    for _ in range(12):
        image, t = train[0]
        side = image.shape[-1]
        sides.add(side)
        assert image.shape[-2] == side and labelled_inside(t, side)
        b = t["boxes"][0]
        assert float(b[:2].min()) >= 0 and float(b[2:].max()) <= side  # the box stays in the crop
    assert len(sides) > 3  # scale jitter


def test_jittered_crop_never_cuts_the_box():
    from detseg.data.adapt import centred_window

    crop = PersonCrop(1.0, scale_jitter=0.5, shift_jitter=0.4)
    torch.manual_seed(1)
    box = torch.tensor([10.3, 5.7, 40.2, 25.1]).numpy()
    for _ in range(200):
        x0, y0, x1, y1 = centred_window(box, crop, jitter=True)
        assert x1 - x0 == y1 - y0 >= math.ceil(40.2 - 10.3)
        assert x0 <= 10.3 and y0 <= 5.7 and x1 >= 40.2 and y1 >= 25.1


def test_bad_crop_options(tmp_path, write_lspet):
    write_lspet(tmp_path, 2)
    with pytest.raises(ValueError, match="crop_scale"):
        PersonCrop(0.8)
    with pytest.raises(ValueError, match="data option 'crop_size=2'"):
        build_dataset(f"{tmp_path}:crop=person,crop_size=2", split="all", task="pose")
    with pytest.raises(ValueError, match="need crop=person"):
        build_dataset(f"{tmp_path}:crop_scale=2", split="all", task="pose")
    with pytest.raises(ValueError, match="person crops serve the pose task"):
        build_dataset(tmp_path, split="all", task="cls_loc", crop="person")
    with pytest.raises(ValueError, match="unknown crop 'box'"):
        build_dataset(tmp_path, split="all", task="pose", crop="box")
