"""detseg's COCO numbers equal pycocotools' (the reference implementation) on generated cases.

bbox: 500 images (~2,800 objects, ~3,300 detections); segm and keypoints: smaller cases. Every
one of the 12 (10 for keypoints) summary stats must agree within 1e-9. Both sides read the same
in-memory dicts, so the test isolates the evaluation itself; a separate test pins the conversion.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from detseg.evaluation import BOX_STATS, KP_STATS, MASK_STATS, build_evaluator
from detseg.evaluation.keypoints import default_sigmas
from detseg.evaluation.synthetic import make_case

pytest.importorskip("pycocotools", reason="pycocotools (dev extra) is the reference")
from detseg.evaluation.reference import pycocotools_evaluate  # noqa: E402

TOL = 1e-9


def _ours(task: str, preds, targets, classes, keys, **kwargs) -> np.ndarray:
    ev = build_evaluator(task, classes, **kwargs)
    ev.update(preds, targets)
    metrics = ev.compute()
    return np.array([metrics[k] for k in keys])


def test_bbox_500_images_equal_pycocotools():
    preds, targets, classes = make_case(500, seed=0)
    assert len(targets) >= 500 and len(classes) >= 3
    ours = _ours("detection", preds, targets, classes, BOX_STATS)
    ref = pycocotools_evaluate(preds, targets, classes, "bbox")
    assert np.abs(ours - ref).max() <= TOL, (ours, ref)
    # A real mix of outcomes, not a degenerate all-0 / all-1 case.
    assert 0.1 < ours[0] < 0.9 and (ours > 0).all()


def test_segm_equal_pycocotools():
    preds, targets, classes = make_case(120, seed=1, masks=True, size=(40, 100))
    ours = _ours("instance", preds, targets, classes, BOX_STATS + MASK_STATS)
    ref = np.concatenate([pycocotools_evaluate(preds, targets, classes, "bbox"),
                          pycocotools_evaluate(preds, targets, classes, "segm")])
    assert np.abs(ours - ref).max() <= TOL, (ours, ref)
    assert ours[12] > 0.1


@pytest.mark.parametrize("k", [17, 14])
def test_keypoints_equal_pycocotools(k):
    preds, targets, classes = make_case(120, seed=2, keypoints=k, num_classes=2)
    ours = _ours("keypoints", preds, targets, classes, KP_STATS)
    ref = pycocotools_evaluate(preds, targets, classes, "keypoints", sigmas=default_sigmas(k))
    assert np.abs(ours - ref).max() <= TOL, (ours, ref)
    assert ours[0] > 0.1


def test_custom_sigmas_equal_pycocotools():
    preds, targets, classes = make_case(60, seed=3, keypoints=5, num_classes=1)
    sigmas = [0.05, 0.06, 0.07, 0.08, 0.09]
    ours = _ours("keypoints", preds, targets, classes, KP_STATS, sigmas=sigmas)
    ref = pycocotools_evaluate(preds, targets, classes, "keypoints", sigmas=sigmas)
    assert np.abs(ours - ref).max() <= TOL


def test_no_predictions_equal_pycocotools():
    """Targets but no detections: COCO gives AP = AR = 0 where there is ground truth, else -1."""
    preds, targets, classes = make_case(30, seed=4)
    empty = [{"boxes": torch.zeros((0, 4)), "labels": torch.zeros(0, dtype=torch.int64),
              "scores": torch.zeros(0)} for _ in preds]
    ours = _ours("detection", empty, targets, classes, BOX_STATS)
    ref = pycocotools_evaluate(empty, targets, classes, "bbox")
    assert np.abs(ours - ref).max() <= TOL
    assert set(ours.tolist()) <= {0.0, -1.0} and ours[0] == 0.0
