"""IoU matcher (detseg.models.detection.matcher) on hand-computed IoU matrices."""

import pytest
import torch
from torchvision.ops import box_iou

from detseg.models.detection.matcher import IGNORE, NEGATIVE, POSITIVE, Matcher


def rcnn_matcher() -> Matcher:
    """R-CNN: >= 0.5 object, [0.1, 0.5) background, < 0.1 ignored."""
    return Matcher([0.1, 0.5], [IGNORE, NEGATIVE, POSITIVE])


def test_rcnn_bands_including_the_boundaries():
    # 2 ground-truth boxes x 6 predictions; the boundaries 0.1 and 0.5 fall in the upper band.
    q = torch.tensor([[0.00, 0.09, 0.10, 0.49, 0.50, 0.20],
                      [0.05, 0.00, 0.00, 0.00, 0.10, 0.90]])
    matches, labels = rcnn_matcher()(q)
    assert labels.tolist() == [IGNORE, IGNORE, NEGATIVE, NEGATIVE, POSITIVE, POSITIVE]
    assert matches.tolist() == [1, 0, 0, 0, 0, 1]
    assert labels.dtype == torch.int8 and matches.dtype == torch.int64


def test_rcnn_thresholds_on_real_boxes():
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    props = torch.tensor([[0.0, 0.0, 10.0, 10.0],   # IoU 1
                          [0.0, 0.0, 10.0, 5.0],    # IoU 0.5
                          [0.0, 0.0, 10.0, 2.0],    # IoU 0.2
                          [0.0, 0.0, 10.0, 0.5],    # IoU 0.05
                          [20.0, 20.0, 30.0, 30.0]])  # IoU 0
    _, labels = rcnn_matcher()(box_iou(gt, props))
    assert labels.tolist() == [POSITIVE, POSITIVE, NEGATIVE, IGNORE, IGNORE]


def test_rpn_bands_and_low_quality_matches():
    q = torch.tensor([[0.40, 0.20, 0.80, 0.00],
                      [0.35, 0.10, 0.00, 0.00]])
    plain = Matcher([0.3, 0.7], [NEGATIVE, IGNORE, POSITIVE])
    assert plain(q)[1].tolist() == [IGNORE, NEGATIVE, POSITIVE, NEGATIVE]
    low = Matcher([0.3, 0.7], [NEGATIVE, IGNORE, POSITIVE], allow_low_quality_matches=True)
    matches, labels = low(q)
    # Prediction 0 is the best of gt 1 (0.35): positive although below 0.7; it matches gt 0 (0.40).
    assert labels.tolist() == [POSITIVE, NEGATIVE, POSITIVE, NEGATIVE]
    assert matches.tolist() == [0, 0, 0, 0]


def test_low_quality_matches_skip_objects_nothing_overlaps():
    q = torch.tensor([[0.0, 0.0, 0.0], [0.1, 0.8, 0.0]])
    _, labels = Matcher([0.3, 0.7], [NEGATIVE, IGNORE, POSITIVE], allow_low_quality_matches=True)(q)
    assert labels.tolist() == [NEGATIVE, POSITIVE, NEGATIVE]


@pytest.mark.parametrize("matcher", [rcnn_matcher(), Matcher([0.3, 0.7], [NEGATIVE, IGNORE, POSITIVE], True)])
def test_no_ground_truth_makes_everything_negative(matcher):
    q = box_iou(torch.zeros((0, 4)), torch.tensor([[0.0, 0.0, 5.0, 5.0], [1.0, 1.0, 3.0, 4.0]]))
    matches, labels = matcher(q)
    assert labels.tolist() == [NEGATIVE, NEGATIVE]
    assert matches.tolist() == [0, 0]


def test_no_predictions():
    matches, labels = rcnn_matcher()(torch.zeros((3, 0)))
    assert matches.shape == labels.shape == (0,)


@pytest.mark.parametrize("thresholds,labels", [([0.7, 0.3], [0, -1, 1]), ([0.5], [0, -1, 1]), ([0.5], [0, 2])])
def test_bad_configuration_is_refused(thresholds, labels):
    with pytest.raises(ValueError, match="Matcher"):
        Matcher(thresholds, labels)
