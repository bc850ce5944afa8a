"""SSD (detseg.models.detection.ssd): default boxes against hand-computed ones, hard negative
mining at 3:1, the two matching rules, and an image without objects."""

import math

import pytest
import torch

from detseg.models.detection.ssd import hard_negative_mask, ssd_scales
from detseg.models.zoo import build_model
from detseg.structures import empty_target


def _ssd(**kw):
    torch.manual_seed(0)
    return build_model("ssd", ["a", "b"], img_size=64, backbone="simple", **kw)


def test_default_boxes_of_a_tiny_feature_map_by_hand():
    """Two maps (2x2 and 1x1) on a 100 x 100 input, ratios {1, 2, 1/2} each: scales 0.2 and 0.9
    (s_min, s_max), 1.0 closes the list; boxes location-major, then (s_k, s'_k, r = 2, r = 1/2)."""
    assert ssd_scales(2, 0.2, 0.9) == pytest.approx([0.2, 0.9, 1.0])
    model = _ssd(features=["c4", "c5"], extra_levels=0, aspect_ratios=[[2], [2]],
                 min_scale=0.2, max_scale=0.9)
    boxes = model.default_boxes(torch.zeros(1, 3, 100, 100),
                                [torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 1, 1)])
    assert boxes.shape == (2 * 2 * 4 + 1 * 4, 4)

    def box(cx, cy, w, h):
        return [100 * (cx - w / 2), 100 * (cy - h / 2), 100 * (cx + w / 2), 100 * (cy + h / 2)]

    r2 = math.sqrt(2)
    first = [box(0.25, 0.25, 0.2, 0.2), box(0.25, 0.25, math.sqrt(0.18), math.sqrt(0.18)),
             box(0.25, 0.25, 0.2 * r2, 0.2 / r2), box(0.25, 0.25, 0.2 / r2, 0.2 * r2)]
    assert torch.allclose(boxes[:4], torch.tensor(first), atol=1e-4)
    # the second location of the first map is one step (50 px) to the right
    assert torch.allclose(boxes[4:8], torch.tensor(first) + torch.tensor([50.0, 0, 50, 0]), atol=1e-4)
    # the 1x1 map: centre 0.5; s'= sqrt(0.9 * 1.0); the r = 2 box is 1.27 wide, clipped to 1.0
    last = [box(0.5, 0.5, 0.9, 0.9), box(0.5, 0.5, math.sqrt(0.9), math.sqrt(0.9)),
            box(0.5, 0.5, 1.0, 0.9 / r2), box(0.5, 0.5, 0.9 / r2, 1.0)]
    assert torch.allclose(boxes[16:], torch.tensor(last), atol=1e-4)


def test_hard_negative_mining_keeps_three_negatives_per_positive_the_hardest():
    gen = torch.Generator().manual_seed(0)
    loss = torch.rand(3, 40, generator=gen)
    positive = torch.zeros(3, 40, dtype=torch.bool)
    positive[0, [3, 17]] = True                        # 2 positives -> 6 negatives
    positive[2, :38] = True                            # 38 positives, only 2 negatives left
    neg = hard_negative_mask(loss, positive, ratio=3.0, min_positives=0)
    assert neg.sum(1).tolist() == [6, 0, 2]
    assert not (neg & positive).any()
    hardest = loss[0].masked_fill(positive[0], -1).topk(6).indices
    assert sorted(neg[0].nonzero().flatten().tolist()) == sorted(hardest.tolist())
    # an image without objects counts as one positive when asked: 3 negatives
    assert hard_negative_mask(loss, positive, 3.0, min_positives=1).sum(1).tolist() == [6, 3, 2]


def test_matching_at_iou_half_plus_each_objects_best_default_box():
    model = _ssd()
    anchors = torch.tensor([[0.0, 0, 10, 10], [0, 0, 11, 10], [20, 20, 30, 30], [40, 40, 60, 60]])
    gt = torch.tensor([[0.0, 0, 10, 10], [41.0, 41, 50, 50]])  # the second: best IoU 0.2 only
    labels, reg = model.match(anchors, [{"boxes": gt, "labels": torch.tensor([1, 2])}])
    assert labels[0].tolist() == [1, 1, 0, 2]
    decoded = model.box_coder.decode(reg[0], anchors)
    assert torch.allclose(decoded[[0, 1, 3]], gt[[0, 0, 1]], atol=1e-4)


def test_empty_image_gives_zero_box_loss_and_finite_gradients():
    model = _ssd().train()
    out = model([torch.rand(3, 40, 56)], [empty_target(40, 56)])
    assert set(out.losses) == {"loss_cls", "loss_box"}
    assert out.losses["loss_box"].item() == 0.0 and out.losses["loss_cls"] > 0
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
