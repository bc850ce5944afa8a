"""Fixed unpoolings: the lecture's 2x2 -> 4x4 examples exactly, max-unpooling at the remembered
argmax positions with correct gradients, and the upsampler factory's kinds and sizes."""

import pytest
import torch
import torch.nn.functional as F

from detseg.layers import (
    UPSAMPLE_KINDS,
    BedOfNailsUnpool,
    BilinearUpsample,
    MaxPoolWithIndices,
    MaxUnpool,
    NearestUnpool,
    ResizeConvUpsample,
    build_upsampler,
)

X = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
# The 4x4 map whose 2x2 max-pool gives X, maxima at (1,0), (0,2), (3,1), (2,3).
POOL_INPUT = torch.tensor([[[[0.0, 0.0, 2.0, 0.0],
                             [1.0, 0.0, 0.0, 0.0],
                             [0.0, 0.0, 0.0, 4.0],
                             [0.0, 3.0, 0.0, 0.0]]]])


def test_nearest_example_and_inverse_of_average_pooling():
    out = NearestUnpool(2)(X)
    assert out.tolist() == [[[[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]]]]
    x = torch.randn(2, 3, 5, 7)
    torch.testing.assert_close(F.avg_pool2d(NearestUnpool(3)(x), 3), x)


def test_bed_of_nails_example():
    out = BedOfNailsUnpool(2)(X)
    assert out.tolist() == [[[[1, 0, 2, 0], [0, 0, 0, 0], [3, 0, 4, 0], [0, 0, 0, 0]]]]
    y = BedOfNailsUnpool(3)(torch.randn(2, 3, 4, 5))
    assert y.shape == (2, 3, 12, 15) and (y != 0).sum() <= 2 * 3 * 4 * 5


def test_max_pool_remembers_and_max_unpool_puts_back():
    values, indices = MaxPoolWithIndices(2, 2)(POOL_INPUT)
    assert values.tolist() == X.tolist()
    assert indices.tolist() == [[[[4, 2], [13, 11]]]]
    out = MaxUnpool(2, 2)(values, indices)
    assert torch.equal(out, POOL_INPUT)  # the lecture's picture: values back, zeros elsewhere
    # New values (a decoder's) go to the same remembered positions.
    out = MaxUnpool(2, 2)(X * 10, indices)
    assert out.tolist() == [[[[0, 0, 20, 0], [10, 0, 0, 0], [0, 0, 0, 40], [0, 30, 0, 0]]]]


def test_max_unpool_on_random_maps_and_odd_sizes():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 9, 7) + 0.5  # positive, so a kept maximum beats the zeros around it
    v, i = MaxPoolWithIndices(2)(x)
    out = MaxUnpool(2)(v, i, output_size=x.shape[-2:])
    assert out.shape == x.shape
    kept = out != 0
    assert torch.equal(out[kept], x[kept])
    # every 2x2 window (within the pooled area) keeps exactly its maximum
    assert torch.equal(F.max_pool2d(out[..., :8, :6], 2), v)
    assert int(kept.sum()) == v.numel()
    with pytest.raises(ValueError, match="indices"):
        MaxUnpool(2)(v, None)


def test_max_unpool_gradcheck():
    torch.manual_seed(0)
    x = torch.randn(1, 2, 6, 6, dtype=torch.float64)
    _, idx = MaxPoolWithIndices(2)(x)
    v = torch.randn(1, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: MaxUnpool(2)(t, idx), (v,))
    # through pool and unpool together (distinct values, so the argmax is stable)
    x = torch.randperm(72, dtype=torch.float64).reshape(1, 2, 6, 6).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: MaxUnpool(2)(*MaxPoolWithIndices(2)(t)), (x,))


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
@pytest.mark.parametrize("factor", [2, 3, 4])
def test_resize_conv_output_size_and_learns(mode, factor):
    up = ResizeConvUpsample(4, 6, factor, mode=mode)
    y = up(torch.randn(2, 4, 5, 7))
    assert y.shape == (2, 6, 5 * factor, 7 * factor)
    y.sum().backward()
    assert up.conv.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="mode"):
        ResizeConvUpsample(4, 6, 2, mode="bicubic")


def test_bilinear_upsample_example_and_projection():
    out = BilinearUpsample(1, 1, 2)(X)
    assert out.tolist() == [[[[1, 1.25, 1.75, 2], [1.5, 1.75, 2.25, 2.5],
                              [2.5, 2.75, 3.25, 3.5], [3, 3.25, 3.75, 4]]]]
    assert sum(p.numel() for p in BilinearUpsample(3, 3, 2).parameters()) == 0
    up = BilinearUpsample(3, 5, 4)
    assert up(torch.randn(1, 3, 3, 2)).shape == (1, 5, 12, 8)


@pytest.mark.parametrize("kind", UPSAMPLE_KINDS)
@pytest.mark.parametrize("in_ch,out_ch", [(4, 4), (6, 3)])
def test_factory_kinds_sizes_and_learning(kind, in_ch, out_ch):
    up = build_upsampler(kind, in_ch, out_ch, 2)
    x = torch.randn(2, in_ch, 4, 6)
    if up.needs_indices:
        assert kind == "max_unpool"
        _, idx = MaxPoolWithIndices(2)(torch.randn(2, out_ch, 8, 12))
        y = up(x, idx, (8, 12))
    else:
        y = up(x)
    assert y.shape == (2, out_ch, 8, 12)
    fixed = kind in ("nearest", "bed_of_nails", "max_unpool", "bilinear")
    n_params = sum(p.numel() for p in up.parameters())
    if fixed and in_ch == out_ch:
        assert n_params == 0  # fixed upsampling learns nothing; only channel changes do
    else:
        assert n_params > 0


def test_factory_max_unpool_with_other_index_channels_and_bad_kind():
    up = build_upsampler("max_unpool", 8, 4, 2, unpool_channels=16, kernel=3, padding=1)
    _, idx = F.max_pool2d(torch.randn(1, 16, 10, 10), 3, 2, 1, return_indices=True)
    assert up(torch.randn(1, 8, 5, 5), idx, (10, 10)).shape == (1, 4, 10, 10)
    with pytest.raises(ValueError, match="unknown upsample kind 'cubic'"):
        build_upsampler("cubic", 2, 2, 2)
    with pytest.raises(ValueError, match="factor"):
        NearestUnpool(0)
