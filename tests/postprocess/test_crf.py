"""Dense CRF (detseg.postprocess.crf): refines noisy probabilities towards the image's regions."""

import numpy as np
import pytest

from detseg.postprocess import crf as crf_module
from detseg.postprocess.crf import dense_crf


def _two_regions(h: int = 48, w: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A flat red left half / flat blue right half, and probabilities that are right only on
    average: each pixel's class-1 probability is its true value + strong noise."""
    rng = np.random.default_rng(seed)
    truth = np.zeros((h, w), dtype=np.int64)
    truth[:, w // 2:] = 1
    image = np.zeros((h, w, 3), dtype=np.uint8)
    image[truth == 0] = (200, 40, 40)
    image[truth == 1] = (40, 40, 200)
    p1 = np.clip(np.where(truth == 1, 0.65, 0.35) + rng.normal(0, 0.25, (h, w)), 0.01, 0.99)
    probs = np.stack([1 - p1, p1]).astype(np.float32)
    return image, probs, truth


def test_crf_agrees_with_regions_better_than_input():
    pytest.importorskip("pydensecrf.densecrf")
    image, probs, truth = _two_regions()
    before = (probs.argmax(0) == truth).mean()
    q = dense_crf(image, probs, iterations=5)
    after = (q.argmax(0) == truth).mean()
    assert q.shape == probs.shape and q.dtype == np.float32
    np.testing.assert_allclose(q.sum(0), 1.0, atol=1e-4)
    assert before < 0.9  # the noise really hurts the input
    assert after > before + 0.05 and after > 0.97


def test_zero_iterations_keeps_unary_argmax():
    pytest.importorskip("pydensecrf.densecrf")
    image, probs, _ = _two_regions()
    q = dense_crf(image, probs, iterations=0)
    np.testing.assert_array_equal(q.argmax(0), probs.argmax(0))


@pytest.mark.parametrize("image, probs, match", [
    (np.zeros((8, 8, 3), np.float32), np.full((2, 8, 8), 0.5, np.float32), "uint8"),
    (np.zeros((8, 8), np.uint8), np.full((2, 8, 8), 0.5, np.float32), r"\[H, W, 3\]"),
    (np.zeros((8, 8, 3), np.uint8), np.full((2, 8, 9), 0.5, np.float32), r"\[C, H, W\]"),
    (np.zeros((8, 8, 3), np.uint8), np.full((2, 8, 8), np.nan, np.float32), "finite"),
])
def test_bad_inputs_raise_clear_errors(image, probs, match):
    pytest.importorskip("pydensecrf.densecrf")
    with pytest.raises(ValueError, match=match):
        dense_crf(image, probs)


def test_missing_package_says_how_to_install(monkeypatch):
    def missing():
        raise ImportError(f"{crf_module.CRF_INSTALL_HINT} (No module named 'pydensecrf')")

    monkeypatch.setattr(crf_module, "_densecrf_module", missing)
    with pytest.raises(ImportError, match=r"pip install detseg\[crf\]"):
        dense_crf(np.zeros((4, 4, 3), np.uint8), np.full((2, 4, 4), 0.5, np.float32))
    assert not crf_module.crf_available()
