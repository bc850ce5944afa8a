"""The model-side transform: resize policies, padding to the stride, mapping back."""

import pytest
import torch

from detseg.models.transform import (IMAGENET_MEAN, boxes_to_original, maps_to_original,
                                     preprocess, resized_size)


def test_resized_size_policies():
    assert resized_size(100, 80, 64, keep_aspect=True) == (64, 51)
    assert resized_size(80, 100, 64, keep_aspect=True) == (51, 64)
    assert resized_size(100, 80, 64, keep_aspect=False) == (64, 64)


def test_preprocess_pads_to_stride_and_normalises():
    ims = [torch.rand(3, 100, 80), torch.full((3, 64, 64), 0.5)]
    b = preprocess(ims, 64, keep_aspect=True, stride=32)
    assert b.tensor.shape == (2, 3, 64, 64)
    assert b.image_sizes == [(64, 51), (64, 64)] and b.original_sizes == [(100, 80), (64, 64)]
    assert b.tensor[0, :, :, 51:].abs().sum() == 0  # zero padding = the mean colour
    expected = (0.5 - IMAGENET_MEAN[0]) / 0.229
    torch.testing.assert_close(b.tensor[1, 0], torch.full((64, 64), expected))
    b = preprocess([torch.rand(3, 40, 40)], 40, keep_aspect=False, stride=32)
    assert b.tensor.shape == (1, 3, 64, 64)


def test_maps_to_original_crops_padding_and_resizes():
    ims = [torch.rand(3, 100, 80), torch.rand(3, 64, 64)]
    b = preprocess(ims, 64, keep_aspect=True, stride=32)
    maps = torch.zeros(2, 1, 64, 64)
    maps[0, :, :, 51:] = 100.0  # padding region must not leak into the image
    out = maps_to_original(maps, b)
    assert [tuple(m.shape) for m in out] == [(1, 100, 80), (1, 64, 64)]
    assert out[0].abs().max() == 0


def test_boxes_to_original_per_axis():
    box = torch.tensor([[0.1, 0.2, 0.5, 1.2]])
    torch.testing.assert_close(boxes_to_original(box, (100, 80)), torch.tensor([[8.0, 20.0, 40.0, 100.0]]))


def test_bad_images_are_named():
    with pytest.raises(TypeError, match="list"):
        preprocess(torch.rand(2, 3, 8, 8), 32, True, 32, who="fcn")
    with pytest.raises(ValueError, match=r"images\[1\]"):
        preprocess([torch.rand(3, 8, 8), torch.rand(1, 8, 8)], 32, True, 32)
    with pytest.raises(ValueError, match="uint8"):
        preprocess([torch.zeros(3, 8, 8, dtype=torch.uint8)], 32, True, 32)
    with pytest.raises(ValueError, match="empty"):
        preprocess([], 32, True, 32)
