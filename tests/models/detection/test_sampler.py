"""Balanced positive/negative sampler (detseg.models.detection.sampler)."""

import pytest
import torch

from detseg.models.detection.sampler import BalancedSampler


def _labels(pos: int, neg: int, ignore: int = 0) -> torch.Tensor:
    return torch.cat([torch.ones(pos), torch.zeros(neg), -torch.ones(ignore)]).long()[torch.randperm(pos + neg + ignore)]


def test_rcnn_32_positive_96_background():
    torch.manual_seed(0)
    labels = _labels(200, 2000, 50)
    pos, neg = BalancedSampler(128, 0.25)(labels)
    assert len(pos) == 32 and len(neg) == 96
    assert (labels[pos] == 1).all() and (labels[neg] == 0).all()
    assert len(set(pos.tolist())) == 32 and len(set(neg.tolist())) == 96  # without replacement


def test_few_positives_are_filled_with_negatives():
    labels = _labels(5, 300)
    pos, neg = BalancedSampler(128, 0.25)(labels)
    assert len(pos) == 5 and len(neg) == 123


def test_few_of_both_keeps_everything_and_never_ignored():
    labels = torch.tensor([1, 0, -1, 2, 0, -1])  # class labels >= 1 count as positive
    pos, neg = BalancedSampler(128, 0.25)(labels)
    assert sorted(pos.tolist()) == [0, 3] and sorted(neg.tolist()) == [1, 4]


def test_no_objects_gives_only_negatives():
    pos, neg = BalancedSampler(16, 0.5)(torch.zeros(40, dtype=torch.long))
    assert len(pos) == 0 and len(neg) == 16


def test_deterministic_under_manual_seed_and_generator():
    labels = _labels(100, 1000)
    draws = []
    for _ in range(2):
        torch.manual_seed(7)
        draws.append(BalancedSampler(64, 0.25)(labels))
    assert all(torch.equal(a, b) for a, b in zip(*draws))
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a, b = BalancedSampler(64, 0.25, generator=g1)(labels), BalancedSampler(64, 0.25, generator=g2)(labels)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_masks():
    labels = torch.tensor([1, 0, 0, -1])
    pos, neg = BalancedSampler(2, 0.5).masks(labels)
    assert pos.tolist() == [True, False, False, False] and neg.sum() == 1 and not neg[3]


@pytest.mark.parametrize("args", [(0, 0.25), (128, 1.5)])
def test_bad_configuration_is_refused(args):
    with pytest.raises(ValueError, match="BalancedSampler"):
        BalancedSampler(*args)
