"""``samples.png``: images spread over the split, each pair titled with its name and its score."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from detseg.data import build_dataset
from detseg.data.shapes import ShapesDataset
from detseg.engine import samples
from detseg.engine.samples import draw_samples, image_name, image_score, pair_titles, sample_indices
from detseg.tasks import get_task


def test_sample_indices_spread_over_the_split():
    assert sample_indices(100, 4) == [0, 33, 66, 99]
    assert sample_indices(3, 8) == [0, 1, 2]  # fewer when the split is smaller
    assert sample_indices(5, 1) == [0] and sample_indices(0, 4) == [] and sample_indices(7, 0) == []
    for length in range(1, 40):
        for n in range(2, 12):
            idx = sample_indices(length, n)
            assert idx == sorted(set(idx)), (length, n)  # none repeated
            assert len(idx) == min(n, length)
            assert idx[0] == 0 and idx[-1] == length - 1  # first and last of the split
    # spread: no gap is more than one step larger than an even spacing
    idx = sample_indices(701, 16)  # e.g. CamVid's val, 16 frames
    assert max(np.diff(idx)) <= 700 / 15 + 1


def test_image_name_is_the_file_name_else_the_image_id():
    ds = SimpleNamespace(files=["/data/camvid/val/0001TP_008550.png", "b/c.jpg"])
    assert image_name(ds, 0, {"image_id": 7}) == "0001TP_008550.png"
    assert image_name(object(), 3, {"image_id": 7}) == "id 7"
    assert image_name(object(), 3, {}) == "id 3"


def test_pair_titles_name_the_tiles():
    pred, truth = pair_titles("frame_0001.png", "mIoU 0.610")
    assert pred == "prediction  mIoU 0.610" and truth == "ground truth  frame_0001.png"
    assert pair_titles("x" * 40 + ".png", "-")[1].endswith(".png")  # long names keep their end


def test_image_score_per_task():
    seg = torch.tensor([[0, 0], [1, 2]])
    assert image_score("semantic", {"sem_seg": seg}, {"sem_seg": seg}, ["bg", "a", "b", "c"]) == "mIoU 1.000"
    half = torch.tensor([[0, 0], [1, 1]])  # class 2 missed: IoU 1, 0.5, 0 over the present classes
    assert image_score("semantic", {"sem_seg": half}, {"sem_seg": seg}, ["bg", "a", "b", "c"]) == "mIoU 0.500"

    gt = {"boxes": torch.tensor([[0., 0, 10, 10], [20, 20, 30, 30]]), "labels": torch.tensor([1, 2])}
    pred = {"boxes": torch.tensor([[0., 0, 10, 11], [20, 20, 30, 30], [50, 50, 60, 60], [0, 0, 5, 5]]),
            "labels": torch.tensor([1, 1, 1, 2]), "scores": torch.tensor([0.9, 0.8, 0.7, 0.1])}
    # box 2 has the wrong class, box 3 matches nothing, box 4 is below the drawing threshold
    for task in ("detection", "instance", "keypoints"):
        assert image_score(task, pred, gt, ["a", "b"]) == "matched@0.5 1/2 +2 extra"
    assert image_score("detection", gt, gt, ["a", "b"]) == "matched@0.5 2/2"

    kps = torch.zeros(1, 14, 3)
    kps[0, :, 0] = torch.arange(14.) * 5
    kps[0, :, 1] = 50
    kps[0, :, 2] = 1
    moved = kps.clone()
    moved[0, :7, 0] += 60  # half the joints far off
    target = {"keypoints": kps, "boxes": torch.tensor([[0., 0, 70, 100]])}
    assert image_score("pose", {"keypoints": kps}, target, ["person"]) == "PCK@0.2 1.000"
    assert image_score("pose", {"keypoints": moved}, target, ["person"]) == "PCK@0.2 0.500"

    one = {"boxes": torch.tensor([[0., 0, 10, 10]]), "labels": torch.tensor([1])}
    assert image_score("cls_loc", {"class": torch.tensor(1), "box": torch.tensor([0., 0, 10, 10])}, one,
                       ["a", "b"]) == "IoU 1.000, class right"
    assert image_score("cls_loc", {"class": torch.tensor(2), "box": torch.tensor([0., 0, 10, 5])}, one,
                       ["a", "b"]) == "IoU 0.500, class wrong"
    # undefined for this image: a dash, never an exception
    assert image_score("pose", {}, target, ["person"]) == "PCK@0.2 -"
    assert image_score("semantic", {}, {"sem_seg": seg}, ["bg", "a", "b", "c"]) == "mIoU -"


class EchoModel:
    """A stand-in model whose predictions are the ground truth of the images it will be given."""

    def __init__(self, dataset, picked, task: str, classes):
        self.training, self.device, self.classes = True, torch.device("cpu"), classes
        self.preds = [_as_prediction(dataset[i][1], task) for i in picked]

    def eval(self):
        self.training = False

    def train(self, mode: bool = True):
        self.training = mode

    def __call__(self, images):
        assert len(images) == len(self.preds)
        return SimpleNamespace(predictions=self.preds, losses=None)


def _as_prediction(t, task):
    if task == "semantic":
        return {"sem_seg": t["sem_seg"]}
    if task == "cls_loc":
        return {"class": t["labels"][0], "box": t["boxes"][0], "scores": torch.ones(1)}
    p = {k: t[k] for k in ("boxes", "labels", "masks", "keypoints") if k in t}
    return {**p, "scores": torch.ones(len(t["boxes"]))}


@pytest.mark.parametrize("task,perfect", [
    ("semantic", "mIoU 1.000"), ("detection", "matched@0.5"), ("instance", "matched@0.5"),
    ("keypoints", "matched@0.5"), ("pose", "PCK@0.2 1.000"), ("cls_loc", "IoU 1.000, class right")])
def test_every_task_is_drawn_with_titled_pairs(task, perfect, monkeypatch):
    ds = ShapesDataset.from_spec("shapes:size=32,n=9", split="val", task=task)
    classes = list(ds.seg_classes) if task == "semantic" else list(ds.classes)
    picked = sample_indices(len(ds), 3)
    assert picked == [0, 4, 8]
    titles = _spy_titles(monkeypatch)
    grid = draw_samples(EchoModel(ds, picked, task, classes), ds, get_task(task), n=3, cols=2)
    assert grid.ndim == 3 and grid.dtype == np.uint8
    assert [t[1] for t in titles] == [f"ground truth  id {i}" for i in picked]  # shapes: no files
    for pred_title, _ in titles:
        assert pred_title.startswith("prediction  " + perfect) and "extra" not in pred_title


def test_titles_carry_the_file_names_and_the_legend_stays(tmp_path, monkeypatch):
    from PIL import Image

    (tmp_path / "rgb").mkdir()
    (tmp_path / "gt").mkdir()
    for i in range(6):  # light plain images: the only dark pixels are the legend's
        Image.fromarray(np.full((24, 24, 3), 200 + i, np.uint8)).save(tmp_path / "rgb" / f"frame{i}.png")
        Image.fromarray((np.arange(24 * 24).reshape(24, 24) % 2).astype(np.uint8)).save(tmp_path / "gt" / f"frame{i}.png")
    ds = build_dataset(tmp_path, split="all", task="semantic")
    picked = sample_indices(len(ds), 2)
    titles = _spy_titles(monkeypatch)
    model = EchoModel(ds, picked, "semantic", list(ds.seg_classes))
    grid = draw_samples(model, ds, get_task("semantic"), n=2, cols=2)
    assert titles == [("prediction  mIoU 1.000", "ground truth  frame0.png"),
                      ("prediction  mIoU 1.000", "ground truth  frame5.png")]
    side = 24 * 11  # 24 px images enlarged 11x to reach 256 px
    assert grid.shape[0] == side + 14 + 2 * 4  # one row of 2 pairs, a 14 px title strip above it
    assert grid.shape[1] == 4 * side + 5 * 4  # prediction | truth | prediction | truth
    assert (grid[4:4 + 14] < 128).any()  # text was written above the pictures
    # the class legend: a black box in the top-left corner of both pictures of a pair
    for x in (4, 4 + side + 4):
        assert (grid[18 + 2: 18 + 14, x + 2: x + 16].max(-1) < 40).any()
    assert not (grid[18 + 40:, :].max(-1) < 40).any()  # and nowhere else


def test_a_tiny_training_run_writes_titled_samples(tmp_path, monkeypatch):
    from detseg.engine.trainer import TrainConfig, Trainer

    titles = _spy_titles(monkeypatch)
    cfg = TrainConfig(model="fcn", data="shapes:size=32,n=8,n_val=5", epochs=1, img_size=32, batch=8,
                      lr=1e-3, out=str(tmp_path), device="cpu", quiet=True, samples=3)
    run = Trainer(cfg).fit()
    assert (run / "samples.png").is_file()
    assert [t[1] for t in titles] == ["ground truth  id 0", "ground truth  id 2", "ground truth  id 4"]
    assert all(t[0].startswith("prediction  mIoU ") for t in titles)


def _spy_titles(monkeypatch) -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []

    def spy(name, score):
        seen.append(pair_titles(name, score))
        return seen[-1]

    monkeypatch.setattr(samples, "pair_titles", spy)
    return seen
