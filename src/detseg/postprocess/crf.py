"""Fully connected (dense) CRF refinement of per-pixel class probabilities.

Implements the post-processing of DeepLab (Chen, Papandreou, Kokkinos, Murphy, Yuille, "Semantic
Image Segmentation with Deep Convolutional Nets and Fully Connected CRFs", ICLR 2015,
https://arxiv.org/abs/1412.7062): a CRF over *every pair* of pixels, made tractable by
Krähenbühl & Koltun's mean-field inference with Gaussian edge potentials ("Efficient Inference in
Fully Connected CRFs with Gaussian Edge Potentials", NeurIPS 2011,
https://arxiv.org/abs/1210.5644), through ``pydensecrf2`` (import name ``pydensecrf``), the
Python binding of Krähenbühl's own C++ code.

The energy of a labelling ``x`` is ``E(x) = sum_i psi_u(x_i) + sum_{i<j} psi_p(x_i, x_j)`` with

- unary ``psi_u(x_i) = -log P(x_i)`` from the network's softmax probabilities;
- pairwise ``psi_p = mu(x_i, x_j) * [w_g k_g + w_b k_b]`` (Potts ``mu``: a cost only when the
  labels differ), with a *smoothness* kernel ``k_g = exp(-|p_i - p_j|^2 / 2 gauss_sxy^2)`` that
  removes small isolated regions, and an *appearance* (bilateral) kernel
  ``k_b = exp(-|p_i - p_j|^2 / 2 bilateral_sxy^2 - |I_i - I_j|^2 / 2 bilateral_srgb^2)`` that
  pulls nearby pixels of similar colour to the same label, so the coarse network output snaps to
  image edges.

``pydensecrf2`` is an optional dependency (it compiles C++): ``pip install detseg[crf]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

CRF_INSTALL_HINT = "dense CRF needs pydensecrf2: pip install detseg[crf]  (or: pip install pydensecrf2)"


def _densecrf_module() -> Any:
    """The ``pydensecrf.densecrf`` extension, or an ImportError that says how to install it."""
    try:
        import pydensecrf.densecrf as dcrf
    except ImportError as e:
        raise ImportError(f"{CRF_INSTALL_HINT} ({e})") from None
    return dcrf


def crf_available() -> bool:
    """Whether ``pydensecrf2`` can be imported (so :func:`dense_crf` will run)."""
    try:
        _densecrf_module()
    except ImportError:
        return False
    return True


def _check_inputs(image: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    image = np.asarray(image)
    probs = np.asarray(probs)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"dense_crf: image must be a uint8 array [H, W, 3], got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"dense_crf: image must be uint8 (0..255), got {image.dtype}")
    if probs.ndim != 3 or probs.shape[1:] != image.shape[:2]:
        raise ValueError(f"dense_crf: probs must be [C, H, W] with H, W = {image.shape[:2]}, "
                         f"got shape {probs.shape}")
    if probs.shape[0] < 1:
        raise ValueError("dense_crf: probs has no class channel")
    if not np.isfinite(probs).all() or (probs < 0).any():
        raise ValueError("dense_crf: probs must be finite and non-negative (softmax probabilities)")
    # The C++ code reads raw buffers: C-contiguous float32 unaries and uint8 image.
    return np.ascontiguousarray(image), probs.astype(np.float32, copy=False)


def dense_crf(image_uint8_hw3: np.ndarray, probs: np.ndarray, iterations: int = 5,
              gauss_sxy: float = 3, gauss_compat: float = 3, bilateral_sxy: float = 80,
              bilateral_srgb: float = 13, bilateral_compat: float = 10) -> np.ndarray:
    """Refine class probabilities with a fully connected CRF (mean-field inference).

    The defaults are the ones of the DeepLab code / pydensecrf examples (Krähenbühl & Koltun's
    settings, for images of a few hundred pixels a side).

    Args:
        image_uint8_hw3: the original image, ``np.ndarray[H, W, 3]`` uint8 RGB; the bilateral
            kernel compares these colours.
        probs: ``np.ndarray[C, H, W]`` per-pixel class probabilities (softmax output, each pixel
            summing to 1) at the image's size; the unary is ``-log(probs)`` (clipped at 1e-8, so a
            zero probability is a large but finite cost).
        iterations: mean-field iterations; 5-10 converge in practice.
        gauss_sxy: spatial standard deviation (pixels) of the smoothness kernel: how far the
            colour-blind smoothing reaches (small: it only cleans isolated pixels).
        gauss_compat: weight ``w_g`` of the smoothness kernel (Potts cost of a label change).
        bilateral_sxy: spatial standard deviation (pixels) of the appearance kernel: how far
            apart two pixels of similar colour still influence each other.
        bilateral_srgb: colour standard deviation (0..255 units) of the appearance kernel:
            how similar two colours must be to count as "the same surface".
        bilateral_compat: weight ``w_b`` of the appearance kernel; larger snaps harder to edges.

    Returns:
        ``np.ndarray[C, H, W]`` float32: the CRF's approximate marginals ``Q`` (each pixel sums
        to 1); ``argmax(0)`` is the refined labelling.

    Raises:
        ImportError: ``pydensecrf2`` is not installed (the message says how to install it).
        ValueError: shapes or dtypes that do not match the above.
    """
    dcrf = _densecrf_module()
    image, probs = _check_inputs(image_uint8_hw3, probs)
    if iterations < 0:
        raise ValueError(f"dense_crf: iterations must be >= 0, got {iterations}")
    c, h, w = probs.shape
    crf = dcrf.DenseCRF2D(w, h, c)
    unary = -np.log(np.clip(probs, 1e-8, 1.0)).reshape(c, -1)
    crf.setUnaryEnergy(np.ascontiguousarray(unary, dtype=np.float32))
    crf.addPairwiseGaussian(sxy=gauss_sxy, compat=gauss_compat)
    crf.addPairwiseBilateral(sxy=bilateral_sxy, srgb=bilateral_srgb, rgbim=image,
                             compat=bilateral_compat)
    q = np.asarray(crf.inference(int(iterations)), dtype=np.float32)
    return q.reshape(c, h, w)
