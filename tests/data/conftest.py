"""Fixtures of the data tests: a generated LSPET-like folder (``joints.mat`` (14, 3, N) +
``images/im00001.jpg``...)."""

from __future__ import annotations

from pathlib import Path

from typing import Callable

import numpy as np
import pytest
from PIL import Image


def write_lspet(root: Path, n: int, size: tuple[int, int] = (48, 40), seed: int = 0,
                near_border: bool = False) -> np.ndarray:
    """Write ``n`` noise JPEGs (``size`` = (w, h)) and their joints; returns the joints
    ``[N, 14, 3]`` as written (v: 1 = visible, 0 = invisible).

    Each person spans about half the image; with ``near_border`` it touches the top-left corner,
    so a centred crop must pad.
    """
    rng = np.random.default_rng(seed)
    w, h = size
    (root / "images").mkdir(parents=True, exist_ok=True)
    joints = np.zeros((n, 14, 3))
    for i in range(n):
        lo = np.array([1.0, 1.0]) if near_border else rng.uniform(0.15, 0.3, 2) * [w, h]
        xy = lo + rng.uniform(0, 0.45, (14, 2)) * [w, h]
        joints[i, :, :2] = xy
        joints[i, :, 2] = 1
        joints[i, 13, 2] = 0  # head top invisible: a placeholder far outside
        joints[i, 13, :2] = (-500, 900)
        pixels = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "images" / f"im{i + 1:05d}.jpg")
    import scipy.io

    scipy.io.savemat(root / "joints.mat", {"joints": joints.transpose(1, 2, 0)})  # (14, 3, N)
    return joints


@pytest.fixture(name="write_lspet")
def write_lspet_fixture() -> Callable[..., np.ndarray]:
    """:func:`write_lspet` (``write_lspet(root, n, ...)``)."""
    return write_lspet
