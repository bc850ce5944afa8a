"""Mean-shift segmentation: the classic, learning-free baseline of semantic segmentation.

Implements the joint spatial-range mean-shift segmentation of Comaniciu & Meer, "Mean Shift: A
Robust Approach Toward Feature Space Analysis", IEEE TPAMI 24(5), 2002
(https://doi.org/10.1109/34.1000236), with scikit-learn's
:class:`~sklearn.cluster.MeanShift` (flat kernel, grid seeding): every pixel is a point
``(x / h_s, y / h_s, L* / h_r, a* / h_r, b* / h_r)`` — position over the spatial bandwidth
``h_s`` (pixels), CIE L*a*b* colour (perceptually uniform, so one colour bandwidth fits every
hue) over the range bandwidth ``h_r`` — so one unit-bandwidth mean shift moves each point to the
mode of its joint neighbourhood; points reaching the same mode form a region.

Speed: mean shift costs roughly (seeds x iterations) neighbourhood queries. Seeds are one pixel
per occupied cell of a grid of ``seed_spacing`` bandwidths (scikit-learn's ``bin_seeding``, with
a coarser grid by default), and images with more than ``max_pixels`` pixels are first shrunk
(antialiased) by ``s = sqrt(max_pixels / (H W))``. The
positions keep *original* pixel units (``x / s``), so the bandwidths mean the same at any size;
the modes found on the small image are then mapped back by giving each original pixel the region
of the nearest mode in the joint feature space (``MeanShift.predict``), so region boundaries follow
the full-resolution colours rather than a blocky upsampling.

Mean shift has no classes. :func:`majority_label_map` names each region by the majority
*ground-truth* label of its pixels, and :func:`evaluate_meanshift` scores that with the semantic
evaluator: an **upper bound** on what any labelling of these regions could reach (it reads the
answers), which shows how much of the segmentation problem good regions alone solve.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from torch import Tensor

from detseg.structures import IGNORE_INDEX

DEFAULT_SPATIAL_BW = 16.0
DEFAULT_COLOR_BW = 8.0
DEFAULT_MAX_PIXELS = 8000
DEFAULT_SEED_SPACING = 2.0


# -- features ------------------------------------------------------------------------------------
def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB ``[..., 3]`` float in [0, 1] -> CIE L*a*b* (D65 white), L* in [0, 100].

    The standard formulas (IEC 61966-2-1 sRGB linearisation, CIE 1976 L*a*b*).
    """
    rgb = np.asarray(rgb, dtype=np.float64)
    lin = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    to_xyz = np.array([[0.4124564, 0.3575761, 0.1804375],
                       [0.2126729, 0.7151522, 0.0721750],
                       [0.0193339, 0.1191920, 0.9503041]])
    xyz = lin @ to_xyz.T / np.array([0.95047, 1.0, 1.08883])
    eps, kappa = 216 / 24389, 24389 / 27
    f = np.where(xyz > eps, np.cbrt(xyz), (kappa * xyz + 16) / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]),
                     200 * (f[..., 1] - f[..., 2])], axis=-1)


def _as_hwc_float(image: Tensor | np.ndarray) -> np.ndarray:
    """``Tensor[3, H, W]`` / ``np.ndarray[H, W, 3]`` (uint8 or float in [0, 1]) -> float ``[H, W, 3]``."""
    from detseg.results import load_image

    if isinstance(image, Tensor) and image.ndim == 3 and image.shape[0] != 3:
        raise ValueError(f"meanshift: image tensor must be [3, H, W], got {list(image.shape)}")
    tensor, _ = load_image(image)
    return tensor.permute(1, 2, 0).numpy().astype(np.float64)


def _features(rgb: np.ndarray, scale: float, spatial_bw: float, color_bw: float,
              color_space: str) -> np.ndarray:
    """``[H*W, 5]`` joint features of an ``[H, W, 3]`` image shrunk by ``scale`` (see module doc)."""
    h, w = rgb.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    # Pixel centres in original-image units, so the spatial bandwidth does not depend on `scale`.
    pos = np.stack([(xs + 0.5) / scale, (ys + 0.5) / scale], axis=-1) / spatial_bw
    colour = rgb_to_lab(rgb) if color_space == "lab" else rgb * 255.0
    return np.concatenate([pos, colour / color_bw], axis=-1).reshape(-1, 5)


def _grid_seeds(features: np.ndarray, spacing: float) -> np.ndarray:
    """One seed per occupied cell of a grid of ``spacing`` (unit-bandwidth features ``[N, D]``).

    The seed is the cell's first point rather than the cell centre (scikit-learn's
    ``get_bin_seeds``): a centre may lie farther than one bandwidth from every point once
    ``spacing > 1``, and such a seed is dropped (all of them dropped is an error).
    """
    cells = np.floor(features / spacing).astype(np.int64)
    _, first = np.unique(cells, axis=0, return_index=True)
    return features[np.sort(first)]


def _shrink(rgb: np.ndarray, max_pixels: int) -> tuple[np.ndarray, float]:
    h, w = rgb.shape[:2]
    if h * w <= max_pixels:
        return rgb, 1.0
    from detseg.models.transform import resize_image

    scale = (max_pixels / (h * w)) ** 0.5
    size = (max(1, int(h * scale)), max(1, int(w * scale)))
    small = resize_image(torch.from_numpy(rgb).permute(2, 0, 1).float(), size)
    # The effective scale per axis differs slightly after rounding; their mean is used for both.
    eff = (size[0] / h + size[1] / w) / 2
    return small.clamp(0, 1).permute(1, 2, 0).numpy().astype(np.float64), eff


def meanshift_segment(image: Tensor | np.ndarray, spatial_bandwidth: float = DEFAULT_SPATIAL_BW,
                      color_bandwidth: float = DEFAULT_COLOR_BW,
                      max_pixels: int = DEFAULT_MAX_PIXELS, color_space: str = "lab",
                      seed_spacing: float = DEFAULT_SEED_SPACING) -> np.ndarray:
    """Segment an image into mean-shift regions (see the module docstring).

    Args:
        image: ``Tensor[3, H, W]`` float in [0, 1] (or uint8), or ``np.ndarray[H, W, 3]`` uint8
            (or float in [0, 1]); grayscale is accepted and repeated to RGB.
        spatial_bandwidth: ``h_s`` in pixels of the original image: how far a region's pixels
            may spread around its mode (larger: fewer, bigger regions).
        color_bandwidth: ``h_r`` in L*a*b* units (``color_space="lab"``, a just-noticeable
            difference is about 2.3) or 0..255 RGB units: how different colours may be and still
            merge.
        max_pixels: images with more pixels are clustered at a reduced size and mapped back.
        color_space: ``"lab"`` (default) or ``"rgb"``.
        seed_spacing: mean shift starts from one seed per occupied cell of a grid of this many
            bandwidths (scikit-learn's ``bin_seeding`` uses 1 and the cell centres; the seed
            here is a pixel of the cell). The cost is about linear in
            the seeds: 2 is ~5x faster than 1 on a 240x180 street scene and finds about half
            the modes (larger regions); every pixel still joins its nearest mode.

    Returns:
        ``np.ndarray[H, W]`` int64 region ids ``0..R-1`` (every id used).
    """
    from sklearn.cluster import MeanShift

    if spatial_bandwidth <= 0 or color_bandwidth <= 0:
        raise ValueError(f"meanshift: bandwidths must be > 0 (spatial {spatial_bandwidth}, "
                         f"color {color_bandwidth})")
    if seed_spacing <= 0:
        raise ValueError(f"meanshift: seed_spacing must be > 0, got {seed_spacing}")
    if max_pixels < 1:
        raise ValueError(f"meanshift: max_pixels must be >= 1, got {max_pixels}")
    if color_space not in ("lab", "rgb"):
        raise ValueError(f"meanshift: color_space must be 'lab' or 'rgb', got {color_space!r}")
    rgb = _as_hwc_float(image)
    h, w = rgb.shape[:2]
    small, scale = _shrink(rgb, max_pixels)
    feats = _features(small, scale, spatial_bandwidth, color_bandwidth, color_space)
    # Unit bandwidth: the features are already divided by h_s and h_r.
    ms = MeanShift(bandwidth=1.0, seeds=_grid_seeds(feats, seed_spacing),
                   cluster_all=True).fit(feats)
    if scale == 1.0:
        labels = ms.labels_
    else:
        labels = ms.predict(_features(rgb, 1.0, spatial_bandwidth, color_bandwidth, color_space))
    _, ids = np.unique(labels, return_inverse=True)  # consecutive ids, none unused
    return ids.reshape(h, w).astype(np.int64)


# -- labels, evaluation, drawing -------------------------------------------------------------------
def majority_label_map(regions: np.ndarray | Tensor, sem_seg: np.ndarray | Tensor,
                       num_classes: int) -> Tensor:
    """Name each region by the majority ground-truth class of its labelled pixels.

    This reads the ground truth, so the result is an **upper bound** on any labelling of these
    regions, not a prediction a real system could make.

    Args:
        regions: ``[H, W]`` int region ids (from :func:`meanshift_segment`).
        sem_seg: ``[H, W]`` int ground truth, ``0..num_classes-1`` or ``IGNORE_INDEX`` (255).
        num_classes: ``C``.

    Returns:
        ``Tensor[H, W]`` int64 ``sem_seg`` prediction. A region without labelled pixels gets
        ``IGNORE_INDEX``: it covers no scored pixel, so no metric depends on its value.
    """
    regions = np.asarray(regions, dtype=np.int64)
    gt = np.asarray(sem_seg.cpu() if isinstance(sem_seg, Tensor) else sem_seg, dtype=np.int64)
    if regions.shape != gt.shape:
        raise ValueError(f"majority_label_map: regions {regions.shape} and sem_seg {gt.shape} "
                         "differ in shape")
    keep = gt != IGNORE_INDEX
    bad = keep & ((gt < 0) | (gt >= num_classes))
    if bad.any():
        raise ValueError(f"majority_label_map: sem_seg value {int(gt[bad][0])} is neither a class "
                         f"0..{num_classes - 1} nor {IGNORE_INDEX}")
    n_regions = int(regions.max()) + 1 if regions.size else 0
    counts = np.bincount(regions[keep] * num_classes + gt[keep],
                         minlength=n_regions * num_classes).reshape(n_regions, num_classes)
    names = np.where(counts.sum(1) > 0, counts.argmax(1), IGNORE_INDEX)
    return torch.from_numpy(names[regions]).long()


def evaluate_meanshift(dataset: Any, n_images: int | None = None,
                       spatial_bandwidth: float = DEFAULT_SPATIAL_BW,
                       color_bandwidth: float = DEFAULT_COLOR_BW,
                       max_pixels: int = DEFAULT_MAX_PIXELS,
                       color_space: str = "lab",
                       seed_spacing: float = DEFAULT_SEED_SPACING) -> dict[str, float]:
    """Mean-shift regions + majority labels (an **upper bound**) scored as semantic segmentation.

    Args:
        dataset: ``dataset[i] -> (Tensor[3, H, W], {"sem_seg": Tensor[H, W], ...})`` with
            ``dataset.seg_classes``.
        n_images: the first ``n_images`` samples (all when ``None``).
        spatial_bandwidth, color_bandwidth, max_pixels, color_space, seed_spacing: see
            :func:`meanshift_segment`.

    Returns:
        The semantic evaluator's metrics (``mIoU``, ``pixel_acc``, ``mean_acc``, ``IoU/<class>``)
        plus ``regions_per_image`` and ``seconds_per_image`` (segmentation only).
    """
    from detseg.evaluation import build_evaluator

    classes = list(getattr(dataset, "seg_classes", []) or [])
    if not classes:
        raise ValueError("evaluate_meanshift: the dataset has no seg_classes (is it a "
                         "semantic-segmentation dataset?)")
    n = len(dataset) if n_images is None else min(n_images, len(dataset))
    if n < 1:
        raise ValueError("evaluate_meanshift: no image to evaluate")
    evaluator = build_evaluator("semantic", classes)
    regions_total, seconds = 0, 0.0
    for i in range(n):
        image, target = dataset[i]
        start = time.perf_counter()
        regions = meanshift_segment(image, spatial_bandwidth, color_bandwidth, max_pixels,
                                    color_space, seed_spacing)
        seconds += time.perf_counter() - start
        regions_total += int(regions.max()) + 1
        pred = majority_label_map(regions, target["sem_seg"], len(classes))
        evaluator.update([{"sem_seg": pred}], [target])
    return {**evaluator.compute(), "regions_per_image": regions_total / n,
            "seconds_per_image": seconds / n}


def draw_regions(image: Tensor | np.ndarray, regions: np.ndarray | Tensor,
                 boundary_color: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """Paint each region its mean colour and mark region boundaries.

    Args:
        image: as :func:`meanshift_segment`.
        regions: ``[H, W]`` int region ids of the same size.
        boundary_color: RGB of the pixels whose right or lower neighbour is in another region.

    Returns:
        ``np.ndarray[H, W, 3]`` uint8.
    """
    rgb = _as_hwc_float(image)
    regions = np.asarray(regions, dtype=np.int64)
    if regions.shape != rgb.shape[:2]:
        raise ValueError(f"draw_regions: regions {regions.shape} and image {rgb.shape[:2]} differ")
    flat = regions.ravel()
    n = int(flat.max()) + 1 if flat.size else 0
    size = np.bincount(flat, minlength=n).clip(min=1)
    means = np.stack([np.bincount(flat, rgb[..., c].ravel(), minlength=n) / size
                      for c in range(3)], axis=1)
    out = (means[regions] * 255).round().clip(0, 255).astype(np.uint8)
    edge = np.zeros(regions.shape, dtype=bool)
    edge[:, :-1] |= regions[:, :-1] != regions[:, 1:]
    edge[:-1, :] |= regions[:-1, :] != regions[1:, :]
    out[edge] = boundary_color
    return out


# -- CLI: detseg segment-meanshift -----------------------------------------------------------------
