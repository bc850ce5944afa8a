"""Drawing predictions and targets for every task; grids; palettes."""

import numpy as np
import pytest
import torch

from detseg.data.shapes import ShapesDataset
from detseg.visualize import LEFT, MIN_SIDE, RIGHT, draw_prediction, draw_target, make_grid, palette

TASKS = {"semantic": "scene", "cls_loc": "single", "pose": "person", "detection": "scene",
         "instance": "scene", "keypoints": "persons"}


def _prediction(t, task):
    p = {k: t[k] for k in ("boxes", "labels", "masks", "keypoints", "sem_seg")}
    p["scores"] = torch.linspace(0.9, 0.1, len(t["labels"]))
    if task == "cls_loc":
        p = {"class": t["labels"][0], "box": t["boxes"][0], "scores": torch.tensor([0.1, 0.2, 0.6, 0.1])}
    return p


@pytest.mark.parametrize("task", TASKS)
def test_every_task_draws(task):
    ds = ShapesDataset(size=64, n=2, mode=TASKS[task])
    classes = ds.seg_classes if task == "semantic" else ds.classes
    image, t = ds[0]
    drawings = (draw_prediction(image, _prediction(t, task), task, classes), draw_target(image, t, task, classes))
    for drawn in drawings:
        assert drawn.dtype == np.uint8 and drawn.shape == (MIN_SIDE, MIN_SIDE, 3)
        plain = np.asarray(image.permute(1, 2, 0).mul(255).round().byte()).repeat(4, 0).repeat(4, 1)
        assert (drawn != plain).any(axis=2).mean() > 0.005  # something was drawn


def test_score_threshold_hides_weak_instances():
    ds = ShapesDataset(size=64, n=1, mode="scene")
    image, t = ds[0]
    p = {"boxes": t["boxes"], "labels": t["labels"], "scores": torch.full((len(t["labels"]),), 0.2)}
    hidden = draw_prediction(image, p, "detection", ds.classes, score_thresh=0.3)
    shown = draw_prediction(image, p, "detection", ds.classes, score_thresh=0.1)
    empty = draw_prediction(image, {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
                                    "scores": torch.zeros(0)}, "detection", ds.classes)
    assert np.array_equal(hidden, empty) and not np.array_equal(shown, empty)


def test_pose_sides_have_their_colours():
    ds = ShapesDataset(size=64, n=1, mode="person")
    image, t = ds[0]
    drawn = draw_target(image, t, "pose", ds.classes)
    f = MIN_SIDE // 64
    for joint, colour in ((0, RIGHT), (5, LEFT)):  # right ankle red, left ankle blue
        x, y = (t["keypoints"][0, joint, :2] * f + f // 2).long().tolist()
        assert tuple(drawn[y, x]) == colour


def test_large_images_are_not_resized():
    image = torch.rand(3, 300, 400)
    p = {"sem_seg": torch.randint(0, 3, (300, 400))}
    assert draw_prediction(image, p, "semantic", ["background", "a", "b"]).shape == (300, 400, 3)


def test_make_grid_pads_and_titles():
    a = np.zeros((10, 20, 3), np.uint8)
    b = np.full((30, 5, 3), 100, np.uint8)
    grid = make_grid([[a, b], [b]], gap=2)
    assert grid.shape == (2 * 30 + 3 * 2, 2 * 20 + 3 * 2, 3)
    assert (grid[2:12, 2:22] == 0).all() and (grid[2:32, 24:29] == 100).all()
    titled = make_grid([[a, b], [b]], titles=[["a", "b"], "row"], gap=2)
    assert titled.shape[0] > grid.shape[0]
    with pytest.raises(ValueError):
        make_grid([])


def test_palette_is_deterministic_and_distinct():
    assert palette(12) == palette(12)
    assert len(set(palette(12))) == 12
    assert palette(3) == palette(12)[:3]
