"""VOC AP50: a PR example computed by hand, and the vectorised matcher against the devkit loop."""

from __future__ import annotations

import numpy as np
import pytest

from detseg.evaluation.synthetic import make_case
from detseg.evaluation.voc import mean_ap, voc_ap, voc_ap_per_class


def _img(boxes, labels, extra=None):
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    third = np.asarray(extra if extra is not None else [False] * len(boxes))
    return boxes, np.asarray(labels, dtype=np.int64), third


def test_hand_computed_pr_curve():
    """Class 1, 3 positives. Ranked detections: TP, FP (duplicate), FP, TP, FP.

    recall    1/3  1/3  1/3  2/3  2/3
    precision 1    1/2  1/3  1/2  2/5
    envelope: 1 up to recall 1/3, then 1/2 up to 2/3 -> AP = 1/3 * 1 + 1/3 * 1/2 = 1/2.
    A difficult box hit by a detection changes nothing (neither TP nor FP, not a positive).
    """
    gts = [_img([[0, 0, 10, 10], [20, 20, 30, 30]], [1, 1]),
           _img([[0, 0, 10, 10], [30, 30, 40, 40]], [1, 1], [False, True])]
    dts = [
        (np.array([[0, 0, 10, 10], [0, 0, 10, 10], [50, 50, 60, 60.]]), np.array([1, 1, 1]),
         np.array([0.9, 0.8, 0.5])),
        (np.array([[50, 50, 60, 60], [0, 0, 10, 10], [30, 30, 40, 40.]]), np.array([1, 1, 1]),
         np.array([0.7, 0.6, 0.65])),
    ]
    res = voc_ap_per_class(gts, dts, [1, 2])
    assert res[1].ap == pytest.approx(0.5)
    assert res[1].n_gt == 3 and res[1].n_det == 6
    assert res[2].ap == -1.0 and res[2].n_gt == 0  # no ground truth: undefined, left out
    assert mean_ap(res) == pytest.approx(0.5)


def test_all_point_interpolation():
    # Precision dips then recovers: the envelope takes the later, higher value.
    assert voc_ap(np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2 / 3])) == pytest.approx(
        0.5 * 1 + 0.5 * 2 / 3)
    assert voc_ap(np.array([]), np.array([])) == 0.0


def test_iou_threshold_inclusive_and_boxes_exclusive():
    # IoU exactly 0.5 counts (devkit: ovmax >= minoverlap).
    res = voc_ap_per_class([_img([[0, 0, 10, 10]], [1])],
                           [(np.array([[0, 0, 10, 5.]]), np.array([1]), np.array([0.9]))], [1])
    assert res[1].ap == pytest.approx(1.0)
    # [0,0,2,2] vs [1,0,3,2] with x2 exclusive: IoU 2/6 -> miss (a +1 convention would give 0.5).
    res = voc_ap_per_class([_img([[0, 0, 2, 2]], [1])],
                           [(np.array([[1, 0, 3, 2.]]), np.array([1]), np.array([0.9]))], [1])
    assert res[1].ap == 0.0


def _devkit_loop(gts, dts, label, thr=0.5):
    """VOCevaldet.m transcribed literally: global ranking, one detection at a time."""
    dets = [(s, i, b) for i, (db, dl, ds) in enumerate(dts) for b, l, s in zip(db, dl, ds)
            if l == label]
    order = np.argsort([-d[0] for d in dets], kind="stable")
    taken = [np.zeros(len(g[0]), dtype=bool) for g in gts]
    npos = sum(int(((g[1] == label) & ~g[2]).sum()) for g in gts)
    tp, fp = np.zeros(len(dets)), np.zeros(len(dets))
    for rank, k in enumerate(order):
        _, i, b = dets[k]
        gb, gl, gd = gts[i]
        ovmax, jmax = -np.inf, -1
        for j in range(len(gb)):
            if gl[j] != label:
                continue
            iw = min(b[2], gb[j][2]) - max(b[0], gb[j][0])
            ih = min(b[3], gb[j][3]) - max(b[1], gb[j][1])
            if iw > 0 and ih > 0:
                ua = (b[2] - b[0]) * (b[3] - b[1]) + (gb[j][2] - gb[j][0]) * (gb[j][3] - gb[j][1])
                ov = iw * ih / (ua - iw * ih)
                if ov > ovmax:
                    ovmax, jmax = ov, j
        if ovmax >= thr:
            if not gd[jmax]:
                if not taken[i][jmax]:
                    tp[rank], taken[i][jmax] = 1, True
                else:
                    fp[rank] = 1
        else:
            fp[rank] = 1
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    return voc_ap(tp / npos, tp / np.maximum(tp + fp, np.finfo(float).eps))


def test_vectorised_matching_equals_devkit_loop():
    preds, targets, classes = make_case(80, seed=11)
    rng = np.random.default_rng(0)
    gts = [(t["boxes"].double().numpy(), t["labels"].numpy(),
            rng.uniform(0, 1, len(t["boxes"])) < 0.1) for t in targets]
    dts = [(p["boxes"].double().numpy(), p["labels"].numpy(), p["scores"].double().numpy())
           for p in preds]
    res = voc_ap_per_class(gts, dts, list(range(1, len(classes) + 1)))
    for label in res:
        assert res[label].ap == pytest.approx(_devkit_loop(gts, dts, label), abs=1e-12)
