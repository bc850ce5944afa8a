"""Reusable network layers: upsampling (fixed unpoolings, transpose convolution, resize-convolution,
bilinear) and a factory choosing one by name (CS231n 2017 lecture 11, "in-network upsampling")."""

from detseg.layers.unpooling import BedOfNailsUnpool, MaxPoolWithIndices, MaxUnpool, NearestUnpool
from detseg.layers.upsampling import (
    UPSAMPLE_KINDS,
    BilinearUpsample,
    ProjectedUnpool,
    ResizeConvUpsample,
    TransposeConvUpsample,
    bilinear_kernel,
    build_upsampler,
    upsample_geometry,
)

__all__ = [
    "UPSAMPLE_KINDS", "BedOfNailsUnpool", "BilinearUpsample", "MaxPoolWithIndices", "MaxUnpool",
    "NearestUnpool", "ProjectedUnpool", "ResizeConvUpsample", "TransposeConvUpsample",
    "bilinear_kernel", "build_upsampler", "upsample_geometry",
]
