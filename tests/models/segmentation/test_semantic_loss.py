"""SemanticLoss and median-frequency balancing on hand-computed cases."""

import math

import pytest
import torch

from detseg.models.segmentation.semantic import SemanticLoss, class_frequencies, median_frequency_weights


def test_mean_over_labelled_pixels_and_sum():
    logits = [torch.zeros(2, 1, 3)]  # uniform: CE = log 2 per pixel
    tgt = [{"sem_seg": torch.tensor([[0, 1, 255]])}]
    assert SemanticLoss(2)(logits, tgt).item() == pytest.approx(math.log(2))
    assert SemanticLoss(2, "sum")(logits, tgt).item() == pytest.approx(2 * math.log(2))


def test_class_weights_weighted_mean():
    logits = [torch.tensor([[[2.0, 0.0]], [[0.0, 0.0]]])]  # pixel0 favours class 0
    tgt = [{"sem_seg": torch.tensor([[0, 1]])}]
    ce0 = -torch.log_softmax(torch.tensor([2.0, 0.0]), 0)[0]
    ce1 = -torch.log_softmax(torch.tensor([0.0, 0.0]), 0)[1]
    got = SemanticLoss(2, class_weights=[1.0, 3.0])(logits, tgt).item()
    assert got == pytest.approx(float((1 * ce0 + 3 * ce1) / 4))


def test_median_frequency():
    class DS:
        def __len__(self):
            return 2

        def __getitem__(self, i):
            seg = [torch.tensor([[0, 0, 0, 1]]), torch.tensor([[0, 2, 2, 255]])][i]
            return None, {"sem_seg": seg}

    f = class_frequencies(DS(), 3)
    # class 0: 4 px of the 7 labelled px of both images; 1: 1 of 4; 2: 2 of 3
    assert f.tolist() == pytest.approx([4 / 7, 1 / 4, 2 / 3])
    w = median_frequency_weights(f)
    assert w == pytest.approx([(4 / 7) / (4 / 7), (4 / 7) / (1 / 4), (4 / 7) / (2 / 3)])
    with pytest.raises(ValueError, match="class_weights"):
        SemanticLoss(3, class_weights=[1.0])
