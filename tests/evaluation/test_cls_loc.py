"""Classification + localization: top-1, localization accuracy (class AND IoU >= 0.5), mean IoU."""

from __future__ import annotations

import pytest
import torch

from detseg.evaluation import build_evaluator


def _t(label, box):
    return {"labels": torch.tensor([label]), "boxes": torch.tensor([box], dtype=torch.float32)}


def test_hand_computed_case():
    """image 1: right class, IoU 0.5 (counts); image 2: wrong class, IoU 1;
    image 3: right class, IoU 1/3. -> top1 2/3, loc_acc 1/3, mean IoU (0.5 + 1 + 1/3) / 3."""
    targets = [_t(1, [0, 0, 10, 10]), _t(2, [0, 0, 10, 10]), _t(2, [0, 0, 10, 10])]
    preds = [
        {"class": torch.tensor(1), "box": torch.tensor([0.0, 0, 10, 5])},
        {"class": torch.tensor(1), "box": torch.tensor([0.0, 0, 10, 10])},
        # The labels/boxes form works too.
        {"labels": torch.tensor([2]), "boxes": torch.tensor([[5.0, 0, 15, 10]]),
         "scores": torch.tensor([0.7])},
    ]
    ev = build_evaluator("cls_loc", ["a", "b"])
    ev.update(preds, targets)
    m = ev.compute()
    assert m["top1"] == pytest.approx(2 / 3)
    assert m["loc_acc"] == pytest.approx(1 / 3)
    assert m["mean_iou"] == pytest.approx((0.5 + 1 + 1 / 3) / 3)
    table = ev.table()
    assert "a" in table and "all" in table


def test_empty_and_state_merge():
    ev = build_evaluator("cls_loc", ["a"])
    assert ev.compute() == {"top1": 0.0, "loc_acc": 0.0, "mean_iou": 0.0}
    ev.update([{"class": 1, "box": torch.tensor([0.0, 0, 4, 4])}],
              [{"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros((0, 4))}])
    assert ev.rows == []  # no object: nothing to score
    other = build_evaluator("cls_loc", ["a"])
    other.update([{"class": 1, "box": torch.tensor([0.0, 0, 4, 4])}], [_t(1, [0, 0, 4, 4])])
    ev.merge([other.state()])
    assert ev.compute() == {"top1": 1.0, "loc_acc": 1.0, "mean_iou": 1.0}


def test_missing_guess_is_named():
    ev = build_evaluator("cls_loc", ["a"])
    with pytest.raises(ValueError, match="'class' and 'box'"):
        ev.update([{}], [_t(1, [0, 0, 4, 4])])
