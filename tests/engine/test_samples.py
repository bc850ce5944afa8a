"""``samples.png``: images spread over the split, each pair titled with its name and score."""

from __future__ import annotations

import numpy as np

from detseg.data import build_dataset
from detseg.engine.hooks import _image_score, draw_samples, sample_indices
from detseg.models.zoo import build_model
from detseg.tasks import get_task


def test_sample_indices_spread_over_the_split():
    assert sample_indices(100, 4) == [0, 33, 66, 99]
    assert sample_indices(3, 8) == [0, 1, 2]
    assert sample_indices(5, 1) == [0] and sample_indices(0, 4) == []


def test_pairs_are_titled_with_name_and_score(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(6):
        (tmp_path / "rgb").mkdir(exist_ok=True)
        (tmp_path / "gt").mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(tmp_path / "rgb" / f"frame{i}.png")
        Image.fromarray((np.arange(24 * 24).reshape(24, 24) % 2).astype(np.uint8)).save(tmp_path / "gt" / f"frame{i}.png")
    ds = build_dataset(tmp_path, split="all", task="semantic")
    task = get_task("semantic")
    model = build_model("fcn", classes=list(ds.seg_classes), img_size=32)
    grid = draw_samples(model, ds, task, n=2, cols=2)
    side = 24 * 11  # 24 px images enlarged 11x to reach 256 px
    assert grid.shape[0] == side + 14 + 2 * 4  # one row of 2 pairs, a 14 px title strip above it
    assert grid.shape[1] == 4 * side + 5 * 4  # prediction | truth | prediction | truth
    title_strip = grid[4:4 + 14]
    assert (title_strip < 128).any()  # text was written above the pictures
    _, target = ds[0]
    assert _image_score(model_evaluator(model, task), "mIoU", {"sem_seg": target["sem_seg"]}, target) == "1.000"


def model_evaluator(model, task):
    from detseg.engine.evaluate import build_task_evaluator

    return build_task_evaluator(model, task)
