"""Learnable upsampling: transpose convolution with a bilinear initialisation.

Implements the "learnable upsampling" of CS231n 2017 lecture 11 (slides on transpose convolution)
as used by FCN (Long, Shelhamer, Darrell, "Fully Convolutional Networks for Semantic Segmentation",
CVPR 2015, https://arxiv.org/abs/1411.4038, section 3.3: "in-network upsampling ... initialized to
bilinear interpolation"). The fixed unpoolings (nearest, bed of nails, max-unpooling) live beside
this module once they arrive.

A transpose convolution runs a convolution "backwards": every *input* value scales a copy of the
filter, the copies are placed ``stride`` pixels apart in the output, and where they overlap they are
**summed**. In 1-D, with input ``[a, b]``, filter ``[x, y, z]`` and stride 2::

    a * [x, y, z]                ->  [ax, ay, az,   0,  0]
              b * [x, y, z]      ->  [ 0,  0, bx,  by, bz]
    output (sum of the copies)   ->  [ax, ay, az+bx, by, bz]

With the filter ``[0.5, 1, 0.5]`` the output interpolates linearly between ``a`` and ``b``: that is
why a bilinear kernel is a good starting point, and training then learns a better filter.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def bilinear_kernel(channels: int, kernel_size: int) -> Tensor:
    """A transpose-convolution weight that performs bilinear upsampling channel by channel.

    The 2-D filter is the outer product of a 1-D "tent" centred in the kernel (FCN's
    ``upsample_filt``): for ``kernel_size = 2 * factor`` (or ``2 * factor - 1`` for odd factors) it
    reproduces ``F.interpolate(..., scale_factor=factor, mode="bilinear", align_corners=False)``
    away from the borders.

    Args:
        channels: the number of channels ``C``; channel ``i`` only feeds output channel ``i``.
        kernel_size: the filter side ``k``.

    Returns:
        ``Tensor[C, C, k, k]`` float32 (``ConvTranspose2d`` weight layout ``[in, out, kH, kW]``),
        zero off the channel diagonal.
    """
    if channels < 1 or kernel_size < 1:
        raise ValueError(f"bilinear_kernel: channels and kernel_size must be >= 1, "
                         f"got {channels}, {kernel_size}")
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    og = torch.arange(kernel_size, dtype=torch.float32)
    tent = 1 - (og - center).abs() / factor
    filt = tent[:, None] * tent[None, :]
    weight = torch.zeros(channels, channels, kernel_size, kernel_size)
    idx = torch.arange(channels)
    weight[idx, idx] = filt
    return weight


def upsample_geometry(factor: int) -> tuple[int, int]:
    """``(kernel_size, padding)`` making a stride-``factor`` transpose conv output ``factor * n``.

    ``out = (n - 1) * factor - 2 * padding + kernel`` with ``padding = factor // 2`` and
    ``kernel = 2 * factor`` for even factors, ``2 * factor - 1`` for odd ones.
    """
    if factor < 1:
        raise ValueError(f"upsampling factor must be >= 1, got {factor}")
    kernel = 2 * factor - factor % 2
    return kernel, factor // 2


class TransposeConvUpsample(nn.Module):
    """``Tensor[B, in_ch, H, W] -> Tensor[B, out_ch, factor * H, factor * W]``, learnable.

    A ``nn.ConvTranspose2d`` with stride ``factor`` and the kernel/padding of
    :func:`upsample_geometry`, so the output is *exactly* ``factor`` times the input size. With
    ``bilinear_init`` (the default, as in FCN) the weight starts as :func:`bilinear_kernel` on the
    first ``min(in_ch, out_ch)`` channels (zero elsewhere) and the bias at zero, so an untrained layer
    already upsamples sensibly; otherwise PyTorch's default initialisation is kept.
    """

    def __init__(self, in_ch: int, out_ch: int, factor: int, bilinear_init: bool = True):
        super().__init__()
        kernel, padding = upsample_geometry(factor)
        self.factor = factor
        self.conv = nn.ConvTranspose2d(in_ch, out_ch, kernel, stride=factor, padding=padding)
        if bilinear_init:
            self.reset_bilinear()

    @torch.no_grad()
    def reset_bilinear(self) -> None:
        """Set the weight to bilinear interpolation (channel ``i`` -> ``i``) and the bias to zero."""
        in_ch, out_ch, k, _ = self.conv.weight.shape
        n = min(in_ch, out_ch)
        self.conv.weight.zero_()
        self.conv.weight[:n, :n] = bilinear_kernel(n, k)
        if self.conv.bias is not None:
            self.conv.bias.zero_()

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)

    def extra_repr(self) -> str:
        return f"factor={self.factor}"
