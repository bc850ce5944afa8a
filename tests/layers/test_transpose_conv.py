"""Transpose convolution equals a from-scratch scatter-add: each input value times the filter,
written at ``stride * i - padding``, overlaps summed, then cropped — in 1-D and 2-D."""

import itertools

import pytest
import torch
from torch import Tensor, nn

from detseg.layers import TransposeConvUpsample

CASES = [  # kernel, stride, padding
    (1, 1, 0), (2, 2, 0), (3, 2, 1), (3, 1, 1), (4, 2, 1), (3, 3, 0), (5, 2, 2), (4, 3, 1),
]


def scatter_add_1d(x: Tensor, w: Tensor, b: Tensor, stride: int, padding: int) -> Tensor:
    """``x[B, Ci, L]``, ``w[Ci, Co, k]`` (ConvTranspose layout) -> ``[B, Co, (L-1)*s - 2p + k]``."""
    batch, cin, length = x.shape
    cout, k = w.shape[1], w.shape[2]
    full = torch.zeros(batch, cout, (length - 1) * stride + k, dtype=x.dtype)
    for n, ci, i in itertools.product(range(batch), range(cin), range(length)):
        full[n, :, stride * i: stride * i + k] += x[n, ci, i] * w[ci]  # stamp, overlaps summed
    out = full[:, :, padding: full.shape[-1] - padding]  # "padding" crops the stamped canvas
    return out + b[None, :, None]


def scatter_add_2d(x: Tensor, w: Tensor, b: Tensor, stride: int, padding: int) -> Tensor:
    """``x[B, Ci, H, W]``, ``w[Ci, Co, k, k]`` -> ``[B, Co, (H-1)s - 2p + k, (W-1)s - 2p + k]``."""
    batch, cin, h, wd = x.shape
    cout, k = w.shape[1], w.shape[2]
    full = torch.zeros(batch, cout, (h - 1) * stride + k, (wd - 1) * stride + k, dtype=x.dtype)
    for n, ci, i, j in itertools.product(range(batch), range(cin), range(h), range(wd)):
        full[n, :, stride * i: stride * i + k, stride * j: stride * j + k] += x[n, ci, i, j] * w[ci]
    out = full[:, :, padding: full.shape[-2] - padding, padding: full.shape[-1] - padding]
    return out + b[None, :, None, None]


@pytest.mark.parametrize("kernel,stride,padding", CASES)
@pytest.mark.parametrize("cin,cout", [(1, 1), (2, 3), (3, 2)])
def test_conv_transpose1d_is_scatter_add(kernel, stride, padding, cin, cout):
    torch.manual_seed(kernel * 10 + stride)
    layer = nn.ConvTranspose1d(cin, cout, kernel, stride=stride, padding=padding).double()
    x = torch.randn(2, cin, 5, dtype=torch.float64)
    ref = scatter_add_1d(x, layer.weight.detach(), layer.bias.detach(), stride, padding)
    torch.testing.assert_close(layer(x).detach(), ref)


@pytest.mark.parametrize("kernel,stride,padding", CASES)
@pytest.mark.parametrize("cin,cout", [(1, 1), (2, 3), (3, 2)])
def test_conv_transpose2d_is_scatter_add(kernel, stride, padding, cin, cout):
    torch.manual_seed(kernel * 10 + stride)
    layer = nn.ConvTranspose2d(cin, cout, kernel, stride=stride, padding=padding).double()
    x = torch.randn(2, cin, 3, 4, dtype=torch.float64)
    ref = scatter_add_2d(x, layer.weight.detach(), layer.bias.detach(), stride, padding)
    torch.testing.assert_close(layer(x).detach(), ref)


def test_lecture_example_3x3_ones_stride_2():
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    full = scatter_add_2d(x, torch.ones(1, 1, 3, 3), torch.zeros(1), 2, 0)
    assert full[0, 0].tolist() == [[1, 1, 3, 2, 2], [1, 1, 3, 2, 2], [4, 4, 10, 6, 6],
                                   [3, 3, 7, 4, 4], [3, 3, 7, 4, 4]]
    layer = nn.ConvTranspose2d(1, 1, 3, stride=2, padding=1, output_padding=1, bias=False)
    with torch.no_grad():
        layer.weight.fill_(1.0)
    assert layer(x)[0, 0].tolist() == [[1, 3, 2, 2], [4, 10, 6, 6], [3, 7, 4, 4], [3, 7, 4, 4]]


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_transpose_conv_upsample_is_scatter_add(factor):
    torch.manual_seed(factor)
    up = TransposeConvUpsample(2, 3, factor, bilinear_init=False).double()
    x = torch.randn(1, 2, 3, 3, dtype=torch.float64)
    conv = up.conv
    ref = scatter_add_2d(x, conv.weight.detach(), conv.bias.detach(), factor, conv.padding[0])
    torch.testing.assert_close(up(x).detach(), ref)
    assert ref.shape[-2:] == (3 * factor, 3 * factor)
