"""The COCO evaluator's conversion, empty cases, state/merge, errors and tables."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from detseg.evaluation import BOX_STATS, KP_STATS, MASK_STATS, build_evaluator
from detseg.evaluation.coco_api import coco_detections, coco_ground_truth, make_record
from detseg.evaluation.synthetic import make_case


def _target(boxes, labels, h=50, w=60, **extra):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.int64), "image_id": 0,
            "orig_size": torch.tensor([h, w]), **extra}


def _pred(boxes, labels, scores, **extra):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.int64),
            "scores": torch.tensor(scores, dtype=torch.float32), **extra}


def test_exclusive_boxes_become_xywh_without_plus_one():
    t = _target([[2, 3, 12, 8]], [1])
    p = _pred([[2, 3, 12, 8]], [1], [0.9])
    rec = make_record(p, t, 1)
    gt = coco_ground_truth([rec], ["a"], "bbox")
    ann = gt["annotations"][0]
    assert ann["bbox"] == [2.0, 3.0, 10.0, 5.0] and ann["area"] == 50.0
    assert ann["id"] == 1 and ann["iscrowd"] == 0 and gt["images"][0] == {"id": 1, "height": 50,
                                                                           "width": 60}
    det = coco_detections([rec], "bbox")[0]
    assert det["bbox"] == [2.0, 3.0, 10.0, 5.0] and det["area"] == 50.0 and det["score"] > 0.89


def test_ground_truth_area_is_mask_area_when_masks_exist():
    masks = torch.zeros((1, 50, 60), dtype=torch.uint8)
    masks[0, 3:8, 2:6] = 1  # 20 pixels inside a 10 x 5 box
    rec = make_record(_pred([], [], []), _target([[2, 3, 12, 8]], [1], masks=masks), 1)
    assert rec["gt_area"].tolist() == [20.0]


def test_perfect_predictions_score_one():
    preds, targets, classes = make_case(20, seed=5, masks=True, size=(40, 80))
    perfect = [{"boxes": t["boxes"], "labels": t["labels"], "masks": t["masks"],
                "scores": torch.linspace(1, 0.5, len(t["boxes"]))} for t in targets]
    ev = build_evaluator("instance", classes)
    ev.update(perfect, targets)
    m = ev.compute()
    assert m["mAP"] == pytest.approx(1.0) and m["mask_mAP"] == pytest.approx(1.0)
    assert m["VOC_mAP50"] == pytest.approx(1.0)
    assert all(m[f"AP50/{c}"] == pytest.approx(1.0) for c in classes)


def test_empty_targets_and_predictions_give_minus_one():
    """No ground truth anywhere: COCO has nothing to measure, every AP/AR is -1."""
    for task, keys in (("detection", BOX_STATS), ("instance", BOX_STATS + MASK_STATS),
                       ("keypoints", BOX_STATS + KP_STATS)):
        ev = build_evaluator(task, ["a", "b"])
        assert all(ev.compute()[k] == -1.0 for k in keys)  # nothing seen at all
        t = _target([], [], masks=torch.zeros((0, 50, 60), dtype=torch.uint8),
                    keypoints=torch.zeros((0, 3, 3)))
        p = _pred([], [], [], masks=torch.zeros((0, 50, 60), dtype=torch.uint8),
                  keypoints=torch.zeros((0, 3, 3)))
        ev.update([p], [t])
        m = ev.compute()
        assert all(m[k] == -1.0 for k in keys) and m["VOC_mAP50"] == -1.0
        assert m["AP50/a"] == -1.0
        assert "class" in ev.table()


def test_empty_predictions_give_zero():
    ev = build_evaluator("detection", ["a", "b"])
    ev.update([_pred([], [], [])], [_target([[0, 0, 10, 10]], [1])])
    m = ev.compute()
    assert m["mAP"] == 0.0 and m["AR100"] == 0.0 and m["AP50/a"] == 0.0
    assert m["AP50/b"] == -1.0 and m["VOC_mAP50"] == 0.0  # b has no ground truth: left out


def test_state_merge_equals_single_process():
    preds, targets, classes = make_case(40, seed=6)
    whole = build_evaluator("detection", classes)
    whole.update(preds, targets)
    parts = []
    for lo, hi in ((0, 15), (15, 40)):
        ev = build_evaluator("detection", classes)
        ev.update(preds[lo:hi], targets[lo:hi])
        parts.append(pickle.loads(pickle.dumps(ev.state())))
    merged = build_evaluator("detection", classes)
    merged.merge(parts)
    assert merged.compute() == whole.compute()


def test_bad_input_names_the_field():
    ev = build_evaluator("detection", ["a"])
    with pytest.raises(ValueError, match="labels"):
        ev.update([_pred([[0, 0, 5, 5]], [3], [0.5])], [_target([[0, 0, 5, 5]], [1])])
    with pytest.raises(ValueError, match="scores"):
        ev.update([{"boxes": torch.zeros((1, 4)), "labels": torch.ones(1, dtype=torch.int64)}],
                  [_target([[0, 0, 5, 5]], [1])])
    with pytest.raises(ValueError, match="one prediction dict per image"):
        ev.update([], [_target([[0, 0, 5, 5]], [1])])
    with pytest.raises(ValueError, match="no evaluator"):
        build_evaluator("panoptic", ["a"])


def test_difficult_boxes_are_ignored_by_voc_only():
    t = _target([[0, 0, 10, 10], [20, 20, 30, 30]], [1, 1],
                difficult=torch.tensor([False, True]))
    ev = build_evaluator("detection", ["a"])
    ev.update([_pred([[0, 0, 10, 10]], [1], [0.9])], [t])
    m = ev.compute()
    assert m["AP50/a"] == pytest.approx(1.0)  # the missed difficult box costs nothing
    assert m["mAP50"] < 0.6  # COCO counts it as an ordinary object


def test_table_lists_every_class():
    preds, targets, classes = make_case(10, seed=7)
    ev = build_evaluator("detection", classes)
    ev.update(preds, targets)
    text = ev.table()
    assert all(c in text for c in classes) and "mAP" in text and "VOC_mAP50" in text
    assert np.isfinite(ev.compute()["mAP"])


def test_vectorised_oks_equals_faster_coco_eval_loop():
    from faster_coco_eval import COCO, COCOeval_faster

    from detseg.evaluation.coco_api import _cocoeval_class
    from detseg.evaluation.keypoints import default_sigmas

    preds, targets, classes = make_case(40, seed=8, keypoints=14, num_classes=2)
    records = [make_record(p, t, 2, keypoints=True) for p, t in zip(preds, targets)]
    gt = coco_ground_truth(records, classes, "keypoints")
    dt = {"images": gt["images"], "categories": gt["categories"],
          "annotations": coco_detections(records, "keypoints")}
    evals = [cls(COCO(gt), COCO(dt), "keypoints", kpt_oks_sigmas=list(default_sigmas(14)))
             for cls in (COCOeval_faster, _cocoeval_class())]
    pairs = 0
    for ev in evals:
        ev._prepare()
    for img in evals[0].params.imgIds:
        for cat in evals[0].params.catIds:
            ref, ours = (np.asarray(ev.computeOks(img, cat)) for ev in evals)
            assert ref.shape == ours.shape
            if ref.size:
                assert np.abs(ref - ours).max() <= 1e-12
                pairs += 1
    assert pairs > 20


def test_mask_size_must_match_the_image():
    t = _target([[0, 0, 5, 5]], [1], masks=torch.ones((1, 50, 60), dtype=torch.uint8))
    p = _pred([[0, 0, 5, 5]], [1], [0.9], masks=torch.ones((1, 25, 30), dtype=torch.uint8))
    with pytest.raises(ValueError, match="mapped back to the original image"):
        build_evaluator("instance", ["a"]).update([p], [t])
