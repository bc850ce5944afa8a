"""Transpose-convolution upsampling: exact output sizes, the lecture's sum-of-overlaps picture,
and a bilinear initialisation equal to bilinear interpolation away from the borders."""

import pytest
import torch
import torch.nn.functional as F

from detseg.layers.upsampling import TransposeConvUpsample, bilinear_kernel, upsample_geometry


@pytest.mark.parametrize("factor", [1, 2, 3, 4, 5, 8])
@pytest.mark.parametrize("in_ch,out_ch", [(3, 3), (4, 2), (2, 5)])
def test_output_is_exactly_factor_times_input(factor, in_ch, out_ch):
    up = TransposeConvUpsample(in_ch, out_ch, factor)
    y = up(torch.randn(2, in_ch, 7, 5))
    assert y.shape == (2, out_ch, 7 * factor, 5 * factor)


def test_even_factor_geometry_is_the_documented_one():
    for f in (2, 4, 8, 16):
        assert upsample_geometry(f) == (2 * f, f // 2)
    with pytest.raises(ValueError, match="factor"):
        upsample_geometry(0)


@pytest.mark.parametrize("factor", [2, 3, 4, 8])
def test_bilinear_init_reproduces_bilinear_interpolation_in_the_interior(factor):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 6, 9)
    y = TransposeConvUpsample(3, 3, factor)(x)
    ref = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    f = factor
    torch.testing.assert_close(y[..., f:-f, f:-f], ref[..., f:-f, f:-f], atol=1e-5, rtol=1e-5)


def test_each_input_scales_the_filter_and_overlaps_are_summed():
    # The docstring's 1-D example: input [a, b], filter [x, y, z], stride 2.
    a, b, x, y, z = 2.0, 3.0, 1.0, 10.0, 100.0
    out = F.conv_transpose1d(torch.tensor([[[a, b]]]), torch.tensor([[[x, y, z]]]), stride=2)
    assert out.flatten().tolist() == [a * x, a * y, a * z + b * x, b * y, b * z]


def test_bilinear_kernel_is_channel_diagonal_tent():
    w = bilinear_kernel(3, 4)
    assert w.shape == (3, 3, 4, 4)
    tent = torch.tensor([0.25, 0.75, 0.75, 0.25])
    torch.testing.assert_close(w[1, 1], tent[:, None] * tent[None, :])
    assert w[0, 1].abs().sum() == 0 and w[2, 0].abs().sum() == 0
    with pytest.raises(ValueError):
        bilinear_kernel(0, 4)


def test_learnable_and_optionally_not_bilinear():
    up = TransposeConvUpsample(2, 2, 2)
    up(torch.randn(1, 2, 3, 3)).sum().backward()
    assert up.conv.weight.grad is not None and up.conv.weight.grad.abs().sum() > 0
    torch.manual_seed(0)
    plain = TransposeConvUpsample(2, 2, 2, bilinear_init=False)
    assert not torch.equal(plain.conv.weight, bilinear_kernel(2, 4))
