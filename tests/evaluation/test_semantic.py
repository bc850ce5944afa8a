"""Semantic segmentation metrics on hand-computed maps: ignore pixels, absent classes, merge."""

from __future__ import annotations

import math

import pytest
import torch

from detseg.evaluation import build_evaluator

CLASSES = ["bg", "a", "b", "c"]


def _case():
    # Row 1, columns 0-1 are ignored (255); their predictions (2 and 0) must not count, so class
    # "b" -- predicted only there -- and class "c" -- never seen -- are absent.
    gt = torch.tensor([[0, 0, 1, 1], [255, 255, 1, 0]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 0, 1, 0]])
    return {"sem_seg": pred}, {"sem_seg": gt, "image_id": 0}


def test_miou_with_ignore_and_absent_classes():
    """bg: TP 2, GT 3, predicted 2 -> IoU 2/3; a: TP 3, GT 3, predicted 4 -> IoU 3/4."""
    ev = build_evaluator("semantic", CLASSES)
    p, t = _case()
    ev.update([p], [t])
    m = ev.compute()
    assert m["IoU/bg"] == pytest.approx(2 / 3)
    assert m["IoU/a"] == pytest.approx(3 / 4)
    assert math.isnan(m["IoU/b"]) and math.isnan(m["IoU/c"])
    assert m["mIoU"] == pytest.approx((2 / 3 + 3 / 4) / 2)
    assert m["pixel_acc"] == pytest.approx(5 / 6)
    assert m["mean_acc"] == pytest.approx((2 / 3 + 1) / 2)
    assert "bg" in ev.table()


def test_class_only_predicted_counts_as_zero_and_invalid_predictions_are_wrong():
    ev = build_evaluator("semantic", CLASSES)
    gt = torch.tensor([[0, 0], [0, 255]])
    pred = torch.tensor([[3, 0], [7, 3]])  # 7 is no class: wrong; the 3 on ignore is dropped
    ev.update([{"sem_seg": pred}], [{"sem_seg": gt}])
    m = ev.compute()
    assert m["IoU/c"] == 0.0  # predicted once, never true: IoU 0, and it lowers the mean
    assert m["IoU/bg"] == pytest.approx(1 / 3)
    assert m["mIoU"] == pytest.approx((1 / 3 + 0) / 2)
    assert m["pixel_acc"] == pytest.approx(1 / 3)


def test_logits_state_merge_and_empty():
    ev = build_evaluator("semantic", CLASSES)
    assert math.isnan(ev.compute()["mIoU"])  # nothing seen: undefined, no crash
    p, t = _case()
    logits = torch.nn.functional.one_hot(p["sem_seg"], 4).permute(2, 0, 1).float()
    ev.update([{"sem_seg_logits": logits}], [t])
    other = build_evaluator("semantic", CLASSES)
    other.update([p], [t])
    ev.merge([other.state()])
    m = ev.compute()
    assert m["IoU/a"] == pytest.approx(3 / 4) and ev.confusion.sum() == 12


def test_bad_target_value_is_named():
    ev = build_evaluator("semantic", CLASSES)
    with pytest.raises(ValueError, match="sem_seg"):
        ev.update([{"sem_seg": torch.zeros(2, 2, dtype=torch.long)}],
                  [{"sem_seg": torch.full((2, 2), 9)}])
