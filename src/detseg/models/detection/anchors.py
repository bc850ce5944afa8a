"""Anchor generator: reference boxes of several sizes and aspect ratios at every feature position.

Ren et al., "Faster R-CNN: Towards Real-Time Object Detection with Region Proposal Networks",
NeurIPS 2015 (https://arxiv.org/abs/1506.01497), sec. 3.1.1: at each sliding-window position of a
feature map, ``k = len(sizes) * len(aspect_ratios)`` anchors centred on the position. With a
feature pyramid (Lin et al., "Feature Pyramid Networks for Object Detection", CVPR 2017,
https://arxiv.org/abs/1612.03144, sec. 4.1) each level gets its own sizes (32 px on P2 ... 512 px on
P6) and the same ratios.

Written to give exactly torchvision's ``AnchorGenerator`` (``models/detection/anchor_utils.py``),
so torchvision RPN weights predict the same boxes here:

- a cell anchor of size ``s`` and ratio ``r = h / w`` has ``w = s / sqrt(r)``, ``h = s * sqrt(r)``,
  is centred on 0 and rounded to whole pixels: ``round([-w / 2, -h / 2, w / 2, h / 2])``;
  ratios are the outer loop, sizes the inner one;
- the stride of a level is ``padded image size // feature size`` per axis (integer division:
  the extra max-pooled level of an FPN on a 800 px batch has 13 cells and stride 61, not 64);
- position ``(i, j)`` shifts the cell anchors by ``(j * stride_x, i * stride_y)`` -- the top-left
  corner of the cell, no half-cell offset; anchors are ordered (row, column, cell anchor), which is
  the order of an RPN head's ``[A, H, W]`` outputs after ``permute(0, 2, 3, 1)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


def cell_anchors(sizes: Sequence[float], aspect_ratios: Sequence[float],
                 dtype: torch.dtype = torch.float32, device: torch.device | None = None) -> Tensor:
    """``Tensor[len(ratios) * len(sizes), 4]`` zero-centred xyxy anchors, rounded (module docstring)."""
    scales = torch.as_tensor(list(sizes), dtype=dtype, device=device)
    ratios = torch.as_tensor(list(aspect_ratios), dtype=dtype, device=device)
    h_ratios = torch.sqrt(ratios)
    w_ratios = 1 / h_ratios
    ws = (w_ratios[:, None] * scales[None, :]).view(-1)
    hs = (h_ratios[:, None] * scales[None, :]).view(-1)
    return (torch.stack([-ws, -hs, ws, hs], dim=1) / 2).round()


class AnchorGenerator(nn.Module):
    """Anchors for a list of feature levels.

    Args:
        sizes: per level, the anchor sizes in pixels (``((32,), (64,), ...)`` for an FPN; one level
            with several sizes, ``((128, 256, 512),)``, is the paper's single-map RPN).
        aspect_ratios: per level, the ratios ``h / w`` (``((0.5, 1.0, 2.0),) * levels``); a single
            tuple is used for every level.
    """

    def __init__(self, sizes: Sequence[Sequence[float]] = ((128, 256, 512),),
                 aspect_ratios: Sequence[Sequence[float]] | Sequence[float] = ((0.5, 1.0, 2.0),)) -> None:
        super().__init__()
        sizes = [tuple(float(s) for s in level) for level in sizes]
        if aspect_ratios and not isinstance(aspect_ratios[0], (list, tuple)):
            aspect_ratios = [aspect_ratios] * len(sizes)
        ratios = [tuple(float(r) for r in level) for level in aspect_ratios]
        if len(ratios) == 1 and len(sizes) > 1:
            ratios = ratios * len(sizes)
        if len(ratios) != len(sizes):
            raise ValueError(f"AnchorGenerator: {len(sizes)} levels of sizes but {len(ratios)} of "
                             "aspect ratios")
        self.sizes, self.aspect_ratios = sizes, ratios
        self.cell = [cell_anchors(s, r) for s, r in zip(sizes, ratios)]

    def num_anchors_per_location(self) -> list[int]:
        """``k`` per level: ``len(sizes) * len(aspect_ratios)``."""
        return [len(s) * len(r) for s, r in zip(self.sizes, self.aspect_ratios)]

    def grid_anchors(self, grid_sizes: Sequence[tuple[int, int]], strides: Sequence[tuple[int, int]],
                     dtype: torch.dtype = torch.float32,
                     device: torch.device | None = None) -> list[Tensor]:
        """Per level, ``Tensor[H * W * k, 4]`` xyxy anchors in image pixels."""
        if len(grid_sizes) != len(self.cell):
            raise ValueError(f"AnchorGenerator: {len(grid_sizes)} feature maps but anchors for "
                             f"{len(self.cell)} levels")
        out = []
        for (gh, gw), (sh, sw), base in zip(grid_sizes, strides, self.cell):
            base = base.to(dtype=dtype, device=device)
            shifts_x = torch.arange(0, gw, dtype=torch.int32, device=device) * sw
            shifts_y = torch.arange(0, gh, dtype=torch.int32, device=device) * sh
            shift_y, shift_x = torch.meshgrid(shifts_y, shifts_x, indexing="ij")
            shift_x, shift_y = shift_x.reshape(-1), shift_y.reshape(-1)
            shifts = torch.stack((shift_x, shift_y, shift_x, shift_y), dim=1)
            out.append((shifts.view(-1, 1, 4) + base.view(1, -1, 4)).reshape(-1, 4))
        return out

    def forward(self, image_shape: tuple[int, int], feature_maps: Sequence[Tensor]) -> list[Tensor]:
        """Per level, the anchors of a padded batch of shape ``image_shape = (Hp, Wp)``.

        Args:
            image_shape: the padded batch's ``(Hp, Wp)`` (strides are ``Hp // H``, ``Wp // W``).
            feature_maps: ``Tensor[B, C, H_l, W_l]`` per level.

        Returns:
            ``list[Tensor[H_l * W_l * k_l, 4]]``, the same for every image of the batch.
        """
        grids = [(int(f.shape[-2]), int(f.shape[-1])) for f in feature_maps]
        strides = [(int(image_shape[0]) // h, int(image_shape[1]) // w) for h, w in grids]
        f0 = feature_maps[0]
        return self.grid_anchors(grids, strides, f0.dtype, f0.device)
