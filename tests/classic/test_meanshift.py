"""Mean-shift segmentation (detseg.classic.meanshift): regions, majority labels (an upper bound),
drawing, evaluation through the semantic evaluator, and the segment-meanshift CLI pair."""

import argparse

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("sklearn")

from detseg.classic.meanshift import (  # noqa: E402
    draw_regions,
    evaluate_meanshift,
    majority_label_map,
    meanshift_segment,
    rgb_to_lab,
)
from detseg.cli.classic import add_parser, run  # noqa: E402
from detseg.structures import IGNORE_INDEX  # noqa: E402


def _two_blobs(h: int = 32, w: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """A flat green background with a flat red square: uint8 [H, W, 3] and its truth mask."""
    image = np.zeros((h, w, 3), np.uint8)
    image[:] = (30, 160, 40)
    mask = np.zeros((h, w), np.int64)
    mask[8:24, 10:30] = 1
    image[mask == 1] = (210, 30, 30)
    return image, mask


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = set(zip(a.ravel().tolist(), b.ravel().tolist()))
    return len(pairs) == len(np.unique(a)) == len(np.unique(b))


@pytest.mark.parametrize("as_tensor", [False, True])
def test_two_flat_blobs_give_two_regions(as_tensor):
    image, mask = _two_blobs()
    x = torch.from_numpy(image).permute(2, 0, 1).float() / 255 if as_tensor else image
    regions = meanshift_segment(x, spatial_bandwidth=64, color_bandwidth=10)
    assert regions.shape == mask.shape and regions.dtype == np.int64
    assert set(np.unique(regions)) == {0, 1}
    assert _same_partition(regions, mask)


def test_large_image_is_shrunk_and_mapped_back_at_full_resolution():
    image, mask = _two_blobs(96, 120)
    regions = meanshift_segment(image, spatial_bandwidth=200, color_bandwidth=10, max_pixels=500)
    assert regions.shape == (96, 120)
    assert _same_partition(regions, mask)  # boundaries from full-resolution colours, not blocks


def test_smaller_bandwidth_gives_more_regions():
    rng = np.random.default_rng(0)
    image = (rng.random((24, 24, 3)) * 255).astype(np.uint8)
    few = meanshift_segment(image, spatial_bandwidth=32, color_bandwidth=60).max()
    many = meanshift_segment(image, spatial_bandwidth=4, color_bandwidth=10).max()
    assert many > few


def test_bad_arguments_raise_clear_errors():
    image, _ = _two_blobs()
    with pytest.raises(ValueError, match="bandwidths must be > 0"):
        meanshift_segment(image, spatial_bandwidth=0)
    with pytest.raises(ValueError, match="color_space"):
        meanshift_segment(image, color_space="hsv")
    with pytest.raises(ValueError, match=r"\[3, H, W\]"):
        meanshift_segment(torch.rand(4, 8, 8))


def test_rgb_to_lab_reference_colours():
    lab = rgb_to_lab(np.array([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]))
    np.testing.assert_allclose(lab[0], [100, 0, 0], atol=0.01)
    np.testing.assert_allclose(lab[1], [0, 0, 0], atol=0.01)
    np.testing.assert_allclose(lab[2], [53.24, 80.09, 67.20], atol=0.05)  # sRGB red


def test_majority_labels_map_each_region_to_its_most_common_class():
    regions = np.array([[0, 0, 1, 1],
                        [0, 0, 1, 1],
                        [2, 2, 3, 3]])
    gt = torch.tensor([[1, 1, 2, 0],
                       [1, 0, 2, 2],
                       [IGNORE_INDEX, 0, IGNORE_INDEX, IGNORE_INDEX]])
    pred = majority_label_map(regions, gt, num_classes=3)
    assert pred.dtype == torch.int64 and pred.shape == (3, 4)
    expected = torch.tensor([[1, 1, 2, 2],
                             [1, 1, 2, 2],
                             [0, 0, IGNORE_INDEX, IGNORE_INDEX]])  # region 3: no labelled pixel
    assert torch.equal(pred, expected)
    with pytest.raises(ValueError, match="neither a class"):
        majority_label_map(regions, torch.full((3, 4), 7), num_classes=3)


def test_draw_regions_mean_colours_and_boundaries():
    image, mask = _two_blobs()
    out = draw_regions(image, mask)
    assert out.shape == (32, 40, 3) and out.dtype == np.uint8
    assert tuple(out[0, 0]) == (30, 160, 40) and tuple(out[15, 20]) == (210, 30, 30)
    assert tuple(out[7, 20]) == (255, 255, 255)  # last background row above the square


class _TinySegDataset:
    seg_classes = ["grass", "paint"]

    def __len__(self):
        return 2

    def __getitem__(self, i):
        image, mask = _two_blobs()
        sem = torch.from_numpy(mask)
        sem[0, :] = IGNORE_INDEX
        return torch.from_numpy(image).permute(2, 0, 1).float() / 255, {"sem_seg": sem, "image_id": i}


def test_evaluate_meanshift_is_perfect_on_flat_blobs():
    metrics = evaluate_meanshift(_TinySegDataset(), n_images=1, spatial_bandwidth=64,
                                 color_bandwidth=10)
    assert metrics["mIoU"] == pytest.approx(1.0) and metrics["pixel_acc"] == pytest.approx(1.0)
    assert metrics["regions_per_image"] == 2 and metrics["seconds_per_image"] > 0


def test_cli_run_writes_drawing_and_ids(tmp_path, capsys):
    image, mask = _two_blobs()
    Image.fromarray(image).save(tmp_path / "blobs.png")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="verb"))
    args = parser.parse_args(["segment-meanshift", str(tmp_path / "blobs.png"),
                              str(tmp_path / "broken.png"), "--out", str(tmp_path / "out"),
                              "--spatial-bw", "64", "--color-bw", "10"])
    assert run(args) == 1  # the broken file is reported and skipped
    assert "broken.png" in capsys.readouterr().err
    drawn = np.asarray(Image.open(tmp_path / "out" / "blobs_regions.png"))
    ids = np.load(tmp_path / "out" / "blobs_regions.npy")
    assert drawn.shape == (32, 40, 3) and ids.shape == (32, 40) and ids.dtype == np.int64
    assert _same_partition(ids, mask)
