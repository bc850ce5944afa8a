"""RoI feature extractors: one constructor choice between Fast R-CNN, Mask R-CNN and R-CNN.

The "RoI feature extractor" slot of a two-stage detector (DESIGN.md, "Parts of a detector")::

    feats = extractor(features, images, proposals)   # -> Tensor[R, C, h, w], R = sum(N_i)

``features`` is the backbone's ``dict[str, Tensor[B, C, H/s, W/s]]`` (``None`` for R-CNN),
``images`` the normalised, padded ``Tensor[B, 3, Hp, Wp]`` the backbone saw, ``proposals`` a
``list[Tensor[N_i, 4]]`` xyxy in pixels of that batch. Rows follow the proposals' order, image by
image. Every extractor declares ``out_shape = (C, h, w)`` so the box head sizes itself.

- :class:`RoIPool` -- Girshick, "Fast R-CNN", ICCV 2015 (https://arxiv.org/abs/1504.08083),
  sec. 2.1: each RoI is quantised to the feature grid and split into ``k x k`` bins, each bin
  max-pooled (``torchvision.ops.roi_pool``). Like the original Caffe layer, torchvision rounds the
  corners and counts ``x2``/``y2`` inclusively (``+ 1``), so a box is at most one feature cell wider
  than its exclusive-``x2`` extent; at stride 16 that is the paper's own quantisation.
- :class:`RoIAlign` -- He et al., "Mask R-CNN", ICCV 2017 (https://arxiv.org/abs/1703.06870):
  no quantisation, bilinear samples averaged per bin (``torchvision.ops.roi_align``,
  ``aligned=True``: the half-pixel shift of Detectron2).
- :class:`WarpCrops` -- Girshick et al., "Rich feature hierarchies for accurate object detection",
  CVPR 2014 (https://arxiv.org/abs/1311.2524), sec. 2.1 / appendix A: each region, dilated by
  ``context_pad`` pixels of context at the warped size, is cut from the *image* and warped to a fixed
  ``crop_size`` square (anisotropically, bilinear: ``roi_align`` on the image tensor with adaptive
  sampling, which also anti-aliases large regions), then a CNN runs on the crops in chunks. Context
  outside the image reads as zero, i.e. the mean colour after normalisation (the paper pads with the
  image mean too).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.ops import roi_align, roi_pool

from detseg.models.backbones import Backbone


def _check_proposals(proposals: list[Tensor], batch: int, who: str) -> None:
    if len(proposals) != batch:
        raise ValueError(f"{who}: {batch} images but {len(proposals)} proposal tensors")
    for i, p in enumerate(proposals):
        if p.dim() != 2 or p.shape[1] != 4:
            raise ValueError(f"{who}: proposals[{i}]: expected Tensor[N, 4] xyxy, got {tuple(p.shape)}")


def _feature(features: dict[str, Tensor] | None, name: str, who: str) -> Tensor:
    if features is None or name not in features:
        have = ", ".join(features) if features else "none"
        raise ValueError(f"{who}: needs backbone feature {name!r} (the backbone gives: {have})")
    return features[name]


class RoIPool(nn.Module):
    """Fast R-CNN's RoI max pooling of one backbone feature map to ``output_size x output_size``.

    Args:
        feature: the backbone map to pool (e.g. ``"c4"``, stride 16 like VGG16's conv5_3).
        channels: its channel count; ``stride``: its stride (``spatial_scale = 1 / stride``).
        output_size: bins per side (7 in the paper with VGG16).
    """

    def __init__(self, feature: str, channels: int, stride: int, output_size: int = 7) -> None:
        super().__init__()
        self.feature = feature
        self.stride = int(stride)
        self.output_size = int(output_size)
        self.out_shape = (int(channels), self.output_size, self.output_size)

    def forward(self, features: dict[str, Tensor] | None, images: Tensor,
                proposals: list[Tensor]) -> Tensor:
        _check_proposals(proposals, len(images), type(self).__name__)
        x = _feature(features, self.feature, type(self).__name__)
        if x.device.type == "cpu" and x.dtype in (torch.bfloat16, torch.float16):
            # torchvision's CPU roi_pool has no reduced-precision kernel (and, unlike roi_align,
            # no CPU autocast rule): pool in float32 under --amp; the head casts back.
            x = x.float()
        boxes = [p.to(x.dtype) for p in proposals]
        return roi_pool(x, boxes, self.output_size, spatial_scale=1.0 / self.stride)


class RoIAlign(RoIPool):
    """Mask R-CNN's RoIAlign: like :class:`RoIPool` without quantisation (``sampling_ratio``
    bilinear samples per bin side, averaged; ``aligned=True``)."""

    def __init__(self, feature: str, channels: int, stride: int, output_size: int = 7,
                 sampling_ratio: int = 2) -> None:
        super().__init__(feature, channels, stride, output_size)
        self.sampling_ratio = int(sampling_ratio)

    def forward(self, features: dict[str, Tensor] | None, images: Tensor,
                proposals: list[Tensor]) -> Tensor:
        _check_proposals(proposals, len(images), type(self).__name__)
        x = _feature(features, self.feature, type(self).__name__)
        boxes = [p.to(x.dtype) for p in proposals]
        return roi_align(x, boxes, self.output_size, spatial_scale=1.0 / self.stride,
                         sampling_ratio=self.sampling_ratio, aligned=True)


def warp_crops(images: Tensor, proposals: list[Tensor], crop_size: int,
               context_pad: float = 0.0) -> Tensor:
    """Cut each region out of ``images`` and warp it to ``crop_size x crop_size`` (bilinear).

    Args:
        images: ``Tensor[B, C, H, W]``.
        proposals: ``list[Tensor[N_i, 4]]`` xyxy pixels (x2/y2 exclusive) of each image.
        crop_size: side of the warped square.
        context_pad: pixels of context around the region *in the warped crop* (R-CNN's ``p = 16``
            at 227 px): the box is dilated about its centre by ``crop_size / (crop_size - 2p)``.

    Returns:
        ``Tensor[R, C, crop_size, crop_size]``, R = sum(N_i), image by image.
    """
    if not 0 <= 2 * context_pad < crop_size:
        raise ValueError(f"warp_crops: context_pad must be in [0, crop_size / 2), got {context_pad}")
    boxes = []
    for p in proposals:
        p = p.to(images.dtype)
        if context_pad:
            centre = (p[:, :2] + p[:, 2:]) / 2
            half = (p[:, 2:] - p[:, :2]) / 2 * (crop_size / (crop_size - 2 * context_pad))
            p = torch.cat([centre - half, centre + half], dim=1)
        boxes.append(p)
    # aligned=True: box edges are pixel edges, so a crop of an exact-size box reproduces the pixels;
    # sampling_ratio=-1 samples ceil(box / crop) points per output pixel (an area average).
    return roi_align(images, boxes, crop_size, spatial_scale=1.0, sampling_ratio=-1, aligned=True)


class WarpCrops(nn.Module):
    """R-CNN: warp each region of the image to ``crop_size`` px and run ``cnn`` on the crops.

    Args:
        cnn: a :class:`~detseg.models.backbones.Backbone` applied to the crops.
        feature: which of its maps is the region's feature (default: the deepest).
        crop_size: side of the warped crops (227 in the paper; 112 suits CPUs).
        context_pad: pixels of context in the warped crop (the paper: 16 at 227).
        chunk: crops per CNN call (bounds memory when an image has 2000 regions).
    """

    def __init__(self, cnn: Backbone, feature: str | None = None, crop_size: int = 112,
                 context_pad: float = 0.0, chunk: int = 256) -> None:
        super().__init__()
        self.cnn = cnn
        self.feature = feature or cnn.names[-1]
        if self.feature not in cnn.channels:
            raise ValueError(f"WarpCrops: the CNN has no feature {self.feature!r} "
                             f"(it gives: {', '.join(cnn.names)})")
        self.crop_size = int(crop_size)
        self.context_pad = float(context_pad)
        self.chunk = int(chunk)
        self.out_shape = self._probe_shape()

    @torch.no_grad()
    def _probe_shape(self) -> tuple[int, int, int]:
        """``(C, h, w)`` of the CNN's map for one crop (eval mode: no batch-norm side effects)."""
        was = self.cnn.training
        self.cnn.eval()
        try:
            y = self.cnn(torch.zeros(1, 3, self.crop_size, self.crop_size))[self.feature]
        finally:
            self.cnn.train(was)
        return tuple(int(v) for v in y.shape[1:])  # type: ignore[return-value]

    def forward(self, features: dict[str, Tensor] | None, images: Tensor,
                proposals: list[Tensor]) -> Tensor:
        _check_proposals(proposals, len(images), type(self).__name__)
        crops = warp_crops(images, proposals, self.crop_size, self.context_pad)
        if len(crops) == 0:
            return crops.new_zeros((0, *self.out_shape))
        outs = [self.cnn(c)[self.feature] for c in crops.split(self.chunk)]
        return torch.cat(outs)
