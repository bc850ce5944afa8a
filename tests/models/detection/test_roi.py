"""RoI feature extractors (detseg.models.detection.roi): output shapes of RoIPool, RoIAlign and R-CNN's
warped crops; RoI pooling equals a slow loop reference of Fast R-CNN's quantised max pooling."""

import math

import numpy as np
import pytest
import torch
from torchvision.ops import roi_pool

from detseg.models.detection.roi import RoIAlign, RoIPool, WarpCrops, warp_crops
from detseg.models.backbones import build_backbone

torch.set_num_threads(1)


def roi_pool_loop(features: torch.Tensor, boxes: list[torch.Tensor], size: int,
                  scale: float) -> torch.Tensor:
    """Fast R-CNN's RoI max pooling, one bin at a time (the Caffe / torchvision CPU kernel).

    Corners are rounded to the feature grid (half away from zero), x2/y2 count inclusively,
    bin edges are floor/ceil of ``k * roi_extent / size`` and an empty bin gives 0. Arithmetic in
    float32 like the kernel, so ties round the same way."""
    f32 = np.float32
    out = []
    _, channels, height, width = features.shape
    for b, image_boxes in enumerate(boxes):
        for box in image_boxes.tolist():
            x1, y1, x2, y2 = (math.floor(float(f32(v) * f32(scale)) + 0.5) for v in box)
            roi_w, roi_h = max(x2 - x1 + 1, 1), max(y2 - y1 + 1, 1)
            bin_w, bin_h = f32(roi_w) / f32(size), f32(roi_h) / f32(size)
            pooled = torch.zeros(channels, size, size)
            for ph in range(size):
                hs = min(max(math.floor(f32(ph) * bin_h) + y1, 0), height)
                he = min(max(math.ceil(f32(ph + 1) * bin_h) + y1, 0), height)
                for pw in range(size):
                    ws = min(max(math.floor(f32(pw) * bin_w) + x1, 0), width)
                    we = min(max(math.ceil(f32(pw + 1) * bin_w) + x1, 0), width)
                    if he > hs and we > ws:
                        pooled[:, ph, pw] = features[b, :, hs:he, ws:we].amax(dim=(1, 2))
            out.append(pooled)
    return torch.stack(out)


def _boxes(gen: torch.Generator, n: int, h: int, w: int) -> torch.Tensor:
    """n random xyxy boxes inside an h x w image, some of them tiny or on the border."""
    xy = torch.rand(n, 2, generator=gen) * torch.tensor([w - 1.0, h - 1.0])
    wh = 0.5 + torch.rand(n, 2, generator=gen) * torch.tensor([w, h]) * 0.7
    return torch.cat([xy, (xy + wh).minimum(torch.tensor([w, h]))], 1)


@pytest.mark.parametrize("stride,size", [(1, 3), (4, 7), (16, 2)])
def test_roi_pool_matches_loop_reference(stride, size):
    gen = torch.Generator().manual_seed(stride)
    feats = torch.randn(2, 3, 9, 11, generator=gen)
    h, w = 9 * stride, 11 * stride
    boxes = [_boxes(gen, 6, h, w), _boxes(gen, 4, h, w)]
    boxes[1] = torch.cat([boxes[1], torch.tensor([[0.0, 0.0, w, h], [2.5 * stride, 1.5 * stride,
                                                                      4.5 * stride, 6.5 * stride]])])
    expected = roi_pool_loop(feats, boxes, size, 1 / stride)
    assert torch.equal(roi_pool(feats, boxes, size, 1 / stride), expected)
    got = RoIPool("c", 3, stride, size)({"c": feats}, torch.zeros(2, 3, h, w), boxes)
    assert torch.equal(got, expected)


def test_extractor_output_shapes():
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(2, 3, 64, 48, generator=gen)
    feats = {"c3": torch.randn(2, 16, 8, 6, generator=gen)}
    props = [_boxes(gen, 3, 64, 48), _boxes(gen, 2, 64, 48)]
    for cls in (RoIPool, RoIAlign):
        ex = cls("c3", 16, 8, output_size=5)
        y = ex(feats, images, props)
        assert y.shape == (5, 16, 5, 5) and ex.out_shape == (16, 5, 5)
    cnn = build_backbone("simple", width=4)
    ex = WarpCrops(cnn, crop_size=40, context_pad=4)
    y = ex(None, images, props)
    assert y.shape == (5, *ex.out_shape) == (5, cnn.channels["c5"], 2, 2)
    assert ex(None, images, [props[0][:0], props[1][:0]]).shape == (0, *ex.out_shape)
    with pytest.raises(ValueError, match="feature 'c9'"):
        RoIPool("c9", 16, 8)(feats, images, props)
    with pytest.raises(ValueError, match="2 images but 1"):
        RoIAlign("c3", 16, 8)(feats, images, props[:1])


def test_warp_crops_reproduces_pixels_and_adds_context():
    img = torch.arange(2 * 3 * 20 * 30, dtype=torch.float32).reshape(2, 3, 20, 30)
    box = torch.tensor([[5.0, 4.0, 13.0, 12.0]])  # an 8 x 8 box warped to 8 x 8: the pixels
    crops = warp_crops(img, [box, box], 8)
    assert torch.allclose(crops[1], img[1, :, 4:12, 5:13])
    # context_pad = 2 at crop 12: the box grows by 12 / 8, i.e. an 12 x 12 window around it.
    padded = warp_crops(img, [box, box], 12, context_pad=2)
    assert torch.allclose(padded[0], img[0, :, 2:14, 3:15])


def test_roi_pool_runs_under_cpu_bfloat16_autocast():
    """--amp on a CPU: the features arrive in bfloat16, which torchvision's CPU roi_pool rejects."""
    pool = RoIPool("c4", 8, 16, 7)
    feats = {"c4": torch.randn(1, 8, 8, 8)}
    boxes = [torch.tensor([[0.0, 0.0, 64.0, 64.0], [16.0, 8.0, 100.0, 120.0]])]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = pool({"c4": feats["c4"].bfloat16()}, torch.zeros(1, 3, 128, 128), boxes)
    assert out.shape == (2, 8, 7, 7) and torch.isfinite(out).all()
