"""Strict PCP on hand-computed LSP skeletons, and its place in the pose evaluator."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from detseg.evaluation import build_evaluator
from detseg.evaluation.keypoints import LSP_PCP_PARTS, pcp_correct, pcp_metrics
from detseg.structures import LSP_KEYPOINTS


def upright_person() -> np.ndarray:
    """A 14-joint LSP person ``[14, 3]`` (all labelled) with easy part lengths (pixels)."""
    j = {
        "head_top": (50, 0), "neck": (50, 20),                    # head 20
        "right_shoulder": (40, 20), "left_shoulder": (60, 20),
        "right_elbow": (40, 40), "left_elbow": (60, 40),          # upper arms 20
        "right_wrist": (40, 60), "left_wrist": (60, 60),          # lower arms 20
        "right_hip": (45, 60), "left_hip": (55, 60),              # torso 40: 50,60 -> 50,20
        "right_knee": (45, 90), "left_knee": (55, 90),            # upper legs 30
        "right_ankle": (45, 120), "left_ankle": (55, 120),        # lower legs 30
    }
    return np.array([[*j[n], 2] for n in LSP_KEYPOINTS], dtype=np.float64)


def test_lsp_parts_are_the_ten_standard_sticks():
    names = [n for n, _, _ in LSP_PCP_PARTS]
    assert len(names) == 10 and names.count("head") == names.count("torso") == 1
    for part in ("upper_arm", "lower_arm", "upper_leg", "lower_leg"):
        assert names.count(part) == 2
    idx = {n: i for i, n in enumerate(LSP_KEYPOINTS)}
    head = [p for p in LSP_PCP_PARTS if p[0] == "head"][0]
    assert set(head[1] + head[2]) == {idx["neck"], idx["head_top"]}
    torso = [p for p in LSP_PCP_PARTS if p[0] == "torso"][0]
    assert {LSP_KEYPOINTS[i] for i in torso[1]} == {"right_hip", "left_hip"}
    assert {LSP_KEYPOINTS[i] for i in torso[2]} == {"right_shoulder", "left_shoulder"}


def test_pcp_hand_computed():
    gt = upright_person()
    pred = gt.copy()
    idx = {n: i for i, n in enumerate(LSP_KEYPOINTS)}
    # Right wrist off by 11 px: the right lower arm (length 20, tolerance 10) fails; the right
    # upper arm (elbow-shoulder) is untouched.
    pred[idx["right_wrist"], 0] += 11
    # Left knee off by 14 px: both left leg parts (length 30, tolerance 15) still pass.
    pred[idx["left_knee"], 1] += 14
    # Head top off by 10 px: exactly at the head's tolerance (0.5 * 20) -> correct (<=).
    pred[idx["head_top"], 0] += 10
    # Both shoulders move 21 px right: the shoulder centre is 21 > 20 px off -> torso fails, and
    # the upper arms (shoulder endpoint 21 px off, tolerance 10) fail too.
    pred[[idx["right_shoulder"], idx["left_shoulder"]], 0] += 21
    correct, counted = pcp_correct(pred[None], gt[None])
    assert counted.all()
    by_part = dict(zip([f"{n}{i}" for i, (n, _, _) in enumerate(LSP_PCP_PARTS)], correct[0]))
    expected_wrong = {"lower_arm4", "upper_arm5", "upper_arm6", "torso9"}
    assert {k for k, ok in by_part.items() if not ok} == expected_wrong
    m = pcp_metrics(correct, counted)
    assert m["PCP"] == pytest.approx(6 / 10)
    assert m["PCP/upper_arm"] == 0.0 and m["PCP/lower_arm"] == 0.5
    assert m["PCP/head"] == 1.0 and m["PCP/torso"] == 0.0 and m["PCP/upper_leg"] == 1.0


def test_pcp_skips_parts_with_unlabelled_joints():
    gt = upright_person()
    gt[LSP_KEYPOINTS.index("left_hip"), 2] = 0  # torso and left upper leg are not counted
    gt[LSP_KEYPOINTS.index("head_top"), :] = (np.nan, np.nan, 0)  # nor is the head
    correct, counted = pcp_correct(gt[None], gt[None])
    names = [n for n, _, _ in LSP_PCP_PARTS]
    skipped = {names[i] for i in np.flatnonzero(~counted[0])}
    assert skipped == {"torso", "upper_leg", "head"} and counted.sum() == 7
    m = pcp_metrics(correct, counted)
    assert m["PCP"] == 1.0 and math.isnan(m["PCP/head"]) and m["PCP/upper_leg"] == 1.0


def test_pose_evaluator_reports_pcp_and_keeps_pck():
    gt = upright_person()
    pred = gt.copy()
    pred[LSP_KEYPOINTS.index("right_wrist"), 0] += 11
    ev = build_evaluator("pose", ["person"])
    ev.update([{"keypoints": torch.tensor(pred)[None]}],
              [{"keypoints": torch.tensor(gt)[None], "boxes": torch.tensor([[35.0, 0, 65, 121]])}])
    m = ev.compute()
    assert m["PCP"] == pytest.approx(9 / 10) and m["PCP/lower_arm"] == 0.5
    # PCK: torso reference |left_shoulder - right_hip| = |(60,20) - (45,60)| ~ 42.7 -> 8.5 px:
    # the 11 px wrist error is the only wrong joint.
    assert m["PCK@0.2"] == pytest.approx(13 / 14) and m["PCK@0.2/right_wrist"] == 0.0
    assert "PCP" in ev.table() and "lower_arm" in ev.table()


def test_no_pcp_for_other_joint_counts():
    gt = torch.tensor([[[0.0, 0, 2], [10, 0, 2], [0, 10, 2]]])
    ev = build_evaluator("pose", ["person"], keypoint_names=["a", "b", "c"], sigmas=[.079] * 3)
    ev.update([{"keypoints": gt.clone()}], [{"keypoints": gt}])
    assert not any(k.startswith("PCP") for k in ev.compute())
