"""Box coder (detseg.models.detection.box_coder): hand-computed deltas, round trip, clamp."""

import math

import pytest
import torch

from detseg.models.detection.box_coder import BoxCoder


def test_hand_computed_deltas_with_weights():
    proposal = torch.tensor([[0.0, 0.0, 10.0, 20.0]])   # centre (5, 10), size 10 x 20
    gt = torch.tensor([[2.0, 4.0, 22.0, 24.0]])          # centre (12, 14), size 20 x 20
    d = BoxCoder((10.0, 10.0, 5.0, 5.0)).encode(gt, proposal)
    expected = torch.tensor([[10 * 7 / 10, 10 * 4 / 20, 5 * math.log(2.0), 5 * math.log(1.0)]])
    torch.testing.assert_close(d, expected)
    d1 = BoxCoder().encode(gt, proposal)
    torch.testing.assert_close(d1, torch.tensor([[0.7, 0.2, math.log(2.0), 0.0]]))


def test_identity_is_zero():
    boxes = torch.tensor([[1.0, 2.0, 5.0, 9.0], [0.0, 0.0, 1.0, 1.0]])
    assert torch.equal(BoxCoder((10, 10, 5, 5)).encode(boxes, boxes), torch.zeros(2, 4))


@pytest.mark.parametrize("weights", [(1, 1, 1, 1), (10, 10, 5, 5)])
def test_round_trip(weights):
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(200, 2, generator=g) * 400
    refs = torch.cat([xy, xy + 1 + torch.rand(200, 2, generator=g) * 200], 1)
    xy2 = torch.rand(200, 2, generator=g) * 400
    targets = torch.cat([xy2, xy2 + 1 + torch.rand(200, 2, generator=g) * 200], 1)
    coder = BoxCoder(weights)
    back = coder.decode(coder.encode(targets, refs), refs)
    # float64: exact to 1e-5 px (and far below). float32: within 1e-4 px, about one ulp of the
    # ~600 px coordinates (1e-5 px is below float32's resolution there: ulp(512) = 6e-5).
    back64 = coder.decode(coder.encode(targets.double(), refs.double()), refs.double())
    assert (back64 - targets.double()).abs().max() < 1e-9
    assert (back - targets).abs().max() < 1e-4


def test_class_specific_decoding_keeps_layout():
    refs = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    deltas = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.1, 0.0, 0.0, 0.0, 0.0, 0.0, math.log(2), 0.0]])
    boxes = BoxCoder().decode(deltas, refs)
    assert boxes.shape == (1, 12)
    torch.testing.assert_close(boxes.view(3, 4), torch.tensor(
        [[0.0, 0.0, 10.0, 10.0], [1.0, 0.0, 11.0, 10.0], [-5.0, 0.0, 15.0, 10.0]]))


def test_decode_clamps_huge_scales():
    refs = torch.tensor([[0.0, 0.0, 16.0, 16.0]])
    boxes = BoxCoder().decode(torch.tensor([[0.0, 0.0, 100.0, 100.0]]), refs)
    assert torch.isfinite(boxes).all()
    torch.testing.assert_close(boxes[0, 2] - boxes[0, 0], torch.tensor(1000.0))


def test_shape_errors_are_clear():
    with pytest.raises(ValueError, match="BoxCoder.encode"):
        BoxCoder().encode(torch.zeros(2, 4), torch.zeros(3, 4))
    with pytest.raises(ValueError, match="BoxCoder.decode"):
        BoxCoder().decode(torch.zeros(2, 5), torch.zeros(2, 4))
