"""LSP joints as they come: invisible joints with junk coordinates, labelled joints at NaN or inf."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from detseg.data import build_dataset


def test_invisible_junk_is_ignored_and_non_finite_labelled_joints_are_unlabelled(tmp_path, write_lspet):
    write_lspet(tmp_path, 4)  # head top invisible at (-500, 900) in every image: LSPET's placeholders
    import scipy.io

    joints = scipy.io.loadmat(tmp_path / "joints.mat")["joints"]  # (14, 3, N), v: 1 visible
    joints[5, :2, 0] = np.nan  # labelled, NaN
    joints[6, :2, 1] = (np.inf, 3)
    joints[7, :, 2] = (np.nan, 1e12, 0)  # invisible: anything goes
    scipy.io.savemat(tmp_path / "joints.mat", {"joints": joints})
    ds = build_dataset(tmp_path, split="all")
    got = sorted((Path(p.file).name, p.field, p.message) for p in ds.problems)
    assert got == [
        ("im00001.jpg", "joints[left_ankle]", "labelled point (nan, nan) is not finite: unlabelled (v = 0)"),
        ("im00002.jpg", "joints[right_wrist]", "labelled point (inf, 3.0) is not finite: unlabelled (v = 0)")]
    for i in range(len(ds)):
        _, t = ds[i]
        kp, box = t["keypoints"][0], t["boxes"][0]
        assert torch.isfinite(kp).all() and torch.isfinite(box).all()
        assert kp[13].tolist() == [0, 0, 0]  # the (-500, 900) placeholder is not a coordinate
        assert 0 <= box[0] < box[2] <= 48 and 0 <= box[1] < box[3] <= 40  # not stretched to the junk
    assert ds[0][1]["keypoints"][0, 5].tolist() == [0, 0, 0] and ds[1][1]["keypoints"][0, 6].tolist() == [0, 0, 0]
    assert ds[2][1]["keypoints"][0, 7].tolist() == [0, 0, 0]
