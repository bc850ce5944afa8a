"""Fixed (parameter-free) upsampling: nearest-neighbour, bed-of-nails and max-unpooling.

Implements the "in-network upsampling: unpooling" slides of CS231n 2017 lecture 11. Each layer
multiplies the spatial size by ``factor`` and learns nothing; in a decoder, channel changes are
done by the convolutions around it. Max-unpooling is SegNet's decoder step (Badrinarayanan,
Kendall, Cipolla, "SegNet: A Deep Convolutional Encoder-Decoder Architecture for Image
Segmentation", TPAMI 2017, https://arxiv.org/abs/1511.00561) and Noh et al.'s DeconvNet (ICCV 2015):
the encoder's max-pool remembers *where* each maximum was, the matching decoder layer puts the
value back there. The lecture's 2x2 -> 4x4 example for each::

    input          nearest        bed of nails    max-unpool (argmax of the 4x4 pool input
    [[1, 2],       [[1 1 2 2],    [[1 0 2 0],     [[0 0 2 0],   remembered at (1,0), (0,2),
     [3, 4]]        [1 1 2 2],     [0 0 0 0],      [1 0 0 0],   (3,1), (2,3))
                    [3 3 4 4],     [3 0 4 0],      [0 0 0 4],
                    [3 3 4 4]]     [0 0 0 0]]      [0 3 0 0]]

All layers map ``Tensor[B, C, H, W] -> Tensor[B, C, factor * H, factor * W]`` (max-unpooling:
the size of the pooled input, see :class:`MaxUnpool`).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def _check_factor(who: str, factor: int) -> int:
    if not isinstance(factor, int) or factor < 1:
        raise ValueError(f"{who}: factor must be an integer >= 1, got {factor!r}")
    return factor


class NearestUnpool(nn.Module):
    """Nearest-neighbour unpooling: each value fills its ``factor x factor`` block.

    The inverse of average pooling (``F.avg_pool2d(NearestUnpool(f)(x), f) == x``)::

        [[1, 2],      ->   [[1, 1, 2, 2],
         [3, 4]]            [1, 1, 2, 2],
                            [3, 3, 4, 4],
                            [3, 3, 4, 4]]

    ``Tensor[B, C, H, W] -> Tensor[B, C, factor * H, factor * W]``.
    """

    needs_indices = False

    def __init__(self, factor: int = 2):
        super().__init__()
        self.factor = _check_factor("NearestUnpool", factor)

    def forward(self, x: Tensor) -> Tensor:
        # Exact for integer factors: output pixel i reads input pixel floor(i / factor).
        return F.interpolate(x, scale_factor=self.factor, mode="nearest")

    def extra_repr(self) -> str:
        return f"factor={self.factor}"


class BedOfNailsUnpool(nn.Module):
    """Bed-of-nails unpooling: each value at the top-left of its ``factor x factor`` block, zeros
    elsewhere (max-unpooling with every argmax fixed at the top-left)::

        [[1, 2],      ->   [[1, 0, 2, 0],
         [3, 4]]            [0, 0, 0, 0],
                            [3, 0, 4, 0],
                            [0, 0, 0, 0]]

    ``Tensor[B, C, H, W] -> Tensor[B, C, factor * H, factor * W]``.
    """

    needs_indices = False

    def __init__(self, factor: int = 2):
        super().__init__()
        self.factor = _check_factor("BedOfNailsUnpool", factor)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        f = self.factor
        out = x.new_zeros(b, c, h * f, w * f)
        out[..., ::f, ::f] = x
        return out

    def extra_repr(self) -> str:
        return f"factor={self.factor}"


class MaxPoolWithIndices(nn.Module):
    """Max-pooling that also returns where each maximum was (``nn.MaxPool2d(return_indices=True)``).

    ``Tensor[B, C, H, W] -> (values Tensor[B, C, h, w], indices Tensor[B, C, h, w] int64)``; an
    index is the flat position ``row * W + col`` of the maximum in its ``H x W`` input plane. For the
    4x4 input ``[[0,0,2,0],[1,0,0,0],[0,0,0,4],[0,3,0,0]]`` and ``kernel=stride=2``: values
    ``[[1, 2], [3, 4]]``, indices ``[[4, 2], [13, 11]]``.
    """

    def __init__(self, kernel: int = 2, stride: int | None = None, padding: int = 0):
        super().__init__()
        self.pool = nn.MaxPool2d(kernel, stride if stride is not None else kernel, padding,
                                 return_indices=True)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.pool(x)


class MaxUnpool(nn.Module):
    """Max-unpooling: each value goes back to the position its matching max-pool remembered,
    zeros elsewhere (``nn.MaxUnpool2d``). With the indices of :class:`MaxPoolWithIndices`'s
    example (``[[4, 2], [13, 11]]``, input plane 4x4)::

        [[1, 2],      ->   [[0, 0, 2, 0],
         [3, 4]]            [1, 0, 0, 0],
                            [0, 0, 0, 4],
                            [0, 3, 0, 0]]

    ``forward(x: Tensor[B, C, h, w], indices: Tensor[B, C, h, w], output_size=None) ->
    Tensor[B, C, H, W]``. ``output_size`` (the pool input's ``(H, W)``) defaults to
    ``(stride * h, stride * w)``; give it when the pool dropped a border (odd sizes) or padded.
    ``kernel``/``stride``/``padding`` describe the matching pool. The gradient w.r.t. ``x`` gathers
    the output gradient at the indices (where two windows shared a maximum, both receive it).
    """

    needs_indices = True

    def __init__(self, kernel: int = 2, stride: int | None = None, padding: int = 0):
        super().__init__()
        self.stride = stride if stride is not None else kernel
        self.factor = self.stride
        self.unpool = nn.MaxUnpool2d(kernel, self.stride, padding)

    def forward(self, x: Tensor, indices: Tensor,
                output_size: tuple[int, int] | None = None) -> Tensor:
        if indices is None or indices.shape != x.shape:
            got = None if indices is None else tuple(indices.shape)
            raise ValueError(f"MaxUnpool: indices of shape {tuple(x.shape)} (from the matching "
                             f"max-pool) are required, got {got}")
        if output_size is None:
            output_size = (x.shape[-2] * self.stride, x.shape[-1] * self.stride)
        return self.unpool(x, indices, output_size=tuple(output_size[-2:]))
