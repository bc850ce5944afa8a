"""Upsampling layers and a factory choosing one by name.

Learnable upsampling: transpose convolution with a bilinear initialisation; resize-then-convolve;
fixed bilinear interpolation; and :func:`build_upsampler` over these and the fixed unpoolings of
:mod:`detseg.layers.unpooling`.

Implements the "learnable upsampling" of CS231n 2017 lecture 11 (slides on transpose convolution)
as used by FCN (Long, Shelhamer, Darrell, "Fully Convolutional Networks for Semantic Segmentation",
CVPR 2015, https://arxiv.org/abs/1411.4038, section 3.3: "in-network upsampling ... initialized to
bilinear interpolation"). The fixed unpoolings (nearest, bed of nails, max-unpooling) live beside
this module, in :mod:`detseg.layers.unpooling`.

A transpose convolution runs a convolution "backwards": every *input* value scales a copy of the
filter, the copies are placed ``stride`` pixels apart in the output, and where they overlap they are
**summed**. In 1-D, with input ``[a, b]``, filter ``[x, y, z]`` and stride 2::

    a * [x, y, z]                ->  [ax, ay, az,   0,  0]
              b * [x, y, z]      ->  [ 0,  0, bx,  by, bz]
    output (sum of the copies)   ->  [ax, ay, az+bx, by, bz]

With the filter ``[0.5, 1, 0.5]`` the output interpolates linearly between ``a`` and ``b``: that is
why a bilinear kernel is a good starting point, and training then learns a better filter. The
lecture's 2x2 -> 4x4 example (3x3 filter of ones, stride 2): every input value stamps a 3x3
block of itself, 2 pixels apart, and where two stamps overlap (the middle row and column) the values
add up; ``padding=1`` then crops one row/column on each side and ``output_padding=1`` gives one back
at the end, for a 4x4 output::

    [[1, 2],   ->  [[1, 1,  3, 2, 2],   ->  [[1,  3, 2, 2],
     [3, 4]]        [1, 1,  3, 2, 2],        [4, 10, 6, 6],
                    [4, 4, 10, 6, 6],        [3,  7, 4, 4],
                    [3, 3,  7, 4, 4],        [3,  7, 4, 4]]
                    [3, 3,  7, 4, 4]]

Uneven overlaps like these are the source of checkerboard artefacts;
:class:`ResizeConvUpsample` (resize, then an ordinary convolution) is the known fix
(Odena, Dumoulin, Olah, "Deconvolution and Checkerboard Artifacts", Distill 2016,
https://distill.pub/2016/deconv-checkerboard/).

Every upsampler made by :func:`build_upsampler` maps ``Tensor[B, in_ch, H, W]`` to
``Tensor[B, out_ch, factor * H, factor * W]`` and has a ``needs_indices`` attribute; those with
``needs_indices`` (max-unpooling) are called ``up(x, indices, output_size)`` with the indices of
the matching encoder max-pool, the others ``up(x)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detseg.layers.unpooling import BedOfNailsUnpool, MaxUnpool, NearestUnpool

UPSAMPLE_KINDS = ("nearest", "bed_of_nails", "max_unpool", "transpose", "bilinear", "resize_conv")


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

    See the module docstring for the 2x2 -> 4x4 picture (each input value times the filter,
    overlaps summed).
    """

    needs_indices = False

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


class ResizeConvUpsample(nn.Module):
    """Resize, then convolve: ``Tensor[B, in_ch, H, W] -> Tensor[B, out_ch, factor*H, factor*W]``.

    ``F.interpolate`` by ``factor`` (``mode`` ``"nearest"`` or ``"bilinear"``), then a learnable 3x3
    convolution (padding 1). Every output pixel sees the same number of input pixels, so unlike
    a transpose convolution whose kernel is not a multiple of its stride there is no uneven
    overlap and no checkerboard (Odena et al., Distill 2016). With ``nearest``, the 2x2 -> 4x4
    example first becomes ``[[1,1,2,2],[1,1,2,2],[3,3,4,4],[3,3,4,4]]``, then is convolved.
    """

    needs_indices = False

    def __init__(self, in_ch: int, out_ch: int, factor: int, mode: str = "nearest"):
        super().__init__()
        if mode not in ("nearest", "bilinear"):
            raise ValueError(f"ResizeConvUpsample: mode must be 'nearest' or 'bilinear', "
                             f"got {mode!r}")
        upsample_geometry(factor)  # validates factor
        self.factor, self.mode = factor, mode
        self.conv = nn.Conv2d(in_ch, out_ch, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        kw = {"align_corners": False} if self.mode == "bilinear" else {}
        return self.conv(F.interpolate(x, scale_factor=self.factor, mode=self.mode, **kw))

    def extra_repr(self) -> str:
        return f"factor={self.factor}, mode={self.mode!r}"


class BilinearUpsample(nn.Module):
    """Fixed bilinear interpolation by ``factor`` (``align_corners=False``), with a 1x1 convolution
    first when ``in_ch != out_ch`` (the two are linear and commute — interpolation weights sum to
    one, so even the bias passes through — and the 1x1 is cheaper at the low resolution).

    ``Tensor[B, in_ch, H, W] -> Tensor[B, out_ch, factor * H, factor * W]``. The 2x2 -> 4x4
    example ``[[1, 2], [3, 4]]`` gives the rows ``[1, 1.25, 1.75, 2]``, ``[1.5, 1.75, 2.25, 2.5]``,
    ``[2.5, 2.75, 3.25, 3.5]``, ``[3, 3.25, 3.75, 4]``.
    """

    needs_indices = False

    def __init__(self, in_ch: int, out_ch: int, factor: int):
        super().__init__()
        upsample_geometry(factor)  # validates factor
        self.factor = factor
        self.proj = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return F.interpolate(self.proj(x), scale_factor=self.factor, mode="bilinear",
                             align_corners=False)

    def extra_repr(self) -> str:
        return f"factor={self.factor}"


class ProjectedUnpool(nn.Module):
    """A fixed unpooling with the 1x1 convolutions that change its channels around it.

    ``in_ch -> mid_ch`` (1x1, at the low resolution, skipped when equal), the unpooling, then
    ``mid_ch -> out_ch`` (1x1, skipped when equal). ``mid_ch`` is ``out_ch`` for nearest and
    bed-of-nails; for max-unpooling it is the channel count of the matching pool's indices.
    ``forward(x)``, or ``forward(x, indices, output_size)`` when the unpooling ``needs_indices``.
    """

    def __init__(self, unpool: nn.Module, in_ch: int, out_ch: int, mid_ch: int | None = None):
        super().__init__()
        mid_ch = out_ch if mid_ch is None else mid_ch
        self.pre = nn.Conv2d(in_ch, mid_ch, 1) if in_ch != mid_ch else nn.Identity()
        self.unpool = unpool
        self.post = nn.Conv2d(mid_ch, out_ch, 1) if mid_ch != out_ch else nn.Identity()
        self.needs_indices = bool(getattr(unpool, "needs_indices", False))
        self.factor = unpool.factor

    def forward(self, x: Tensor, indices: Tensor | None = None,
                output_size: tuple[int, int] | None = None) -> Tensor:
        x = self.pre(x)
        x = self.unpool(x, indices, output_size) if self.needs_indices else self.unpool(x)
        return self.post(x)


def build_upsampler(kind: str, in_ch: int, out_ch: int, factor: int, *,
                    unpool_channels: int | None = None, kernel: int | None = None,
                    padding: int = 0) -> nn.Module:
    """An upsampler ``Tensor[B, in_ch, H, W] -> Tensor[B, out_ch, factor * H, factor * W]`` by name.

    Args:
        kind: one of :data:`UPSAMPLE_KINDS`:
            ``nearest`` / ``bed_of_nails`` (:mod:`~detseg.layers.unpooling`, fixed; a 1x1 conv
            changes channels), ``max_unpool`` (fixed, needs the matching pool's indices: call
            ``up(x, indices, output_size)``), ``transpose`` (:class:`TransposeConvUpsample`,
            bilinear init), ``bilinear`` (:class:`BilinearUpsample`, fixed interpolation) or
            ``resize_conv`` (:class:`ResizeConvUpsample`, nearest resize + 3x3 conv).
        in_ch, out_ch: channels in and out.
        factor: the integer scale (for ``max_unpool``: the matching pool's stride).
        unpool_channels: ``max_unpool`` only: channels of the pool indices (default ``out_ch``);
            1x1 convs map ``in_ch`` to it before and it to ``out_ch`` after the unpooling.
        kernel, padding: ``max_unpool`` only: the matching pool's kernel (default ``factor``) and
            padding.

    Returns:
        an ``nn.Module`` with ``factor`` and ``needs_indices`` attributes.
    """
    if kind not in UPSAMPLE_KINDS:
        raise ValueError(f"unknown upsample kind {kind!r}; known: {', '.join(UPSAMPLE_KINDS)}")
    if kind == "transpose":
        return TransposeConvUpsample(in_ch, out_ch, factor)
    if kind == "bilinear":
        return BilinearUpsample(in_ch, out_ch, factor)
    if kind == "resize_conv":
        return ResizeConvUpsample(in_ch, out_ch, factor)
    if kind == "nearest":
        return ProjectedUnpool(NearestUnpool(factor), in_ch, out_ch)
    if kind == "bed_of_nails":
        return ProjectedUnpool(BedOfNailsUnpool(factor), in_ch, out_ch)
    unpool = MaxUnpool(kernel if kernel is not None else factor, factor, padding)
    return ProjectedUnpool(unpool, in_ch, out_ch, mid_ch=unpool_channels)
