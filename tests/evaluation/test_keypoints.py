"""PCK on toy skeletons, the LSP torso reference, OKS sigmas, the pose and keypoints evaluators."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from detseg.evaluation import build_evaluator
from detseg.evaluation.keypoints import (COCO_SIGMAS, LSP_SIGMAS, LSP_TORSO, default_sigmas, oks,
                                         reference_length)
from detseg.structures import LSP_KEYPOINTS


def test_pck_three_joint_toy():
    """Box 20 x 10 -> reference 20, threshold 0.2 * 20 = 4 px.

    joint 0 off by 3 -> correct; joint 1 off by 5 -> wrong; joint 2 unlabelled -> not counted.
    """
    gt = torch.tensor([[[0.0, 0, 2], [10, 0, 2], [0, 10, 0]]])
    pred = torch.tensor([[[3.0, 0, 1], [10, 5, 1], [100, 100, 1]]])
    ev = build_evaluator("pose", ["person"], keypoint_names=["j0", "j1", "j2"], sigmas=[.079] * 3)
    ev.update([{"keypoints": pred}], [{"keypoints": gt, "boxes": torch.tensor([[0.0, 0, 20, 10]])}])
    m = ev.compute()
    assert m["PCK@0.2"] == pytest.approx(0.5)
    assert m["PCK@0.2/j0"] == 1.0 and m["PCK@0.2/j1"] == 0.0 and math.isnan(m["PCK@0.2/j2"])
    assert "j1" in ev.table()


def test_pck_without_box_uses_labelled_joint_extent():
    gt = np.array([[0.0, 0, 2], [10, 0, 2], [0, 5, 1]])
    assert reference_length(gt, None) == 10.0


def test_lsp_torso_is_left_shoulder_to_right_hip():
    assert [LSP_KEYPOINTS[i] for i in LSP_TORSO] == ["left_shoulder", "right_hip"]
    gt = np.zeros((14, 3))
    gt[:, 2] = 2
    gt[LSP_TORSO[0], :2] = (0, 0)
    gt[LSP_TORSO[1], :2] = (30, 40)  # torso 50 -> threshold 10 px
    box = np.array([0.0, 0, 200, 200])  # would give 40 px: must not be used
    assert reference_length(gt, box) == 50.0
    pred = gt.copy()
    pred[0, 0] += 9.0  # correct
    pred[1, 1] += 11.0  # wrong
    ev = build_evaluator("pose", ["person"])
    ev.update([{"keypoints": torch.tensor(pred)[None]}],
              [{"keypoints": torch.tensor(gt)[None], "boxes": torch.tensor(box)[None]}])
    m = ev.compute()
    assert m["PCK@0.2"] == pytest.approx(13 / 14)
    assert m["PCK@0.2/right_knee"] == 0.0 and m["PCK@0.2/right_ankle"] == 1.0
    gt[LSP_TORSO[0], 2] = 0  # torso joint unlabelled -> fall back to the box
    assert reference_length(gt, box) == 200.0


def test_sigmas():
    assert default_sigmas(17) == COCO_SIGMAS and len(LSP_SIGMAS) == 14
    named = dict(zip(LSP_KEYPOINTS, LSP_SIGMAS))
    assert named["right_ankle"] == 0.089 and named["left_hip"] == 0.107
    assert named["head_top"] == 0.079 and named["neck"] == 0.079
    with pytest.warns(UserWarning, match="sigmas"):
        assert default_sigmas(5) == (0.079,) * 5


def test_oks_matches_definition():
    gt = np.array([[[0.0, 0, 2], [10, 0, 2], [5, 5, 0]]])
    dt = np.array([[[1.0, 0, 1], [10, 2, 1], [50, 50, 1]]])
    s = np.array([0.1, 0.2, 0.3])
    area = np.array([100.0])
    e = np.array([1.0, 4.0]) / (2 * s[:2]) ** 2 / (area + np.spacing(1)) / 2
    assert oks(dt, gt, area, s)[0, 0] == pytest.approx(np.exp(-e).mean())


def test_pose_kp_map_perfect_and_empty():
    gt = torch.rand(3, 14, 3) * 50
    gt[..., 2] = 2
    boxes = torch.tensor([[0.0, 0, 60, 60]] * 3)
    ev = build_evaluator("pose", ["person"])
    assert ev.compute()["PCK@0.2"] == 0.0  # nothing seen: no crash
    ev.update([{"keypoints": g[None].clone(), "scores": torch.ones(1)} for g in gt],
              [{"keypoints": g[None], "boxes": b[None]} for g, b in zip(gt, boxes)])
    m = ev.compute()
    assert m["PCK@0.2"] == 1.0 and m["kp_mAP"] == pytest.approx(1.0)


def test_multi_person_pck_matches_people_one_to_one():
    gt = torch.zeros(2, 14, 3)
    gt[0, :, 0] = torch.arange(14.0)
    gt[1, :, 0] = torch.arange(14.0) + 100
    gt[..., 1] = 10.0
    gt[..., 2] = 2
    boxes = torch.tensor([[0.0, 0, 20, 20], [100, 0, 120, 20]])
    # One prediction, on the second person: person 1 fully right, person 0 fully missed.
    pred = {"boxes": boxes[1:], "labels": torch.ones(1, dtype=torch.int64),
            "scores": torch.ones(1), "keypoints": gt[1:].clone()}
    target = {"boxes": boxes, "labels": torch.ones(2, dtype=torch.int64), "keypoints": gt,
              "orig_size": torch.tensor([50, 150])}
    ev = build_evaluator("keypoints", ["person"])
    ev.update([pred], [target])
    m = ev.compute()
    assert m["PCK@0.2"] == pytest.approx(0.5)
    assert m["kp_mAP"] == pytest.approx(0.5, abs=0.01) and "PCK@0.2" in ev.table()
