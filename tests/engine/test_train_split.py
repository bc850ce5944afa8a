"""TrainConfig.train_split / val_split as index ranges, with person crops, on a tiny LSPET-like set."""

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from detseg.data.split import SplitError
from detseg.engine.trainer import TrainConfig, Trainer, build_datasets


def write_lspet(root: Path, n: int) -> None:
    """``n`` noise images ``im00001.jpg``.. and LSPET joints (14, 3, N), all visible."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    joints = np.ones((14, 3, n))
    joints[:, :2] = rng.uniform(8, 40, (14, 2, n))
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (48, 56, 3), dtype=np.uint8)).save(
            root / "images" / f"im{i + 1:05d}.jpg")
    scipy.io.savemat(root / "joints.mat", {"joints": joints})


def cfg(tmp_path, data: str, **kw) -> TrainConfig:
    base = dict(model="pose_regression", data=data, epochs=1, img_size=32, batch=4,
                out=str(tmp_path / "runs"), device="cpu", quiet=True, samples=2, augment="flip", model_opts={"backbone": "simple"},
                train_split="0:9", val_split="9:12")
    base.update(kw)
    return TrainConfig(**base)


def test_trains_one_epoch_on_ranges_with_person_crops(tmp_path):
    write_lspet(tmp_path / "lspet", 12)
    data = f"{tmp_path / 'lspet'}:crop=person,crop_jitter=0.2"
    trainer = Trainer(cfg(tmp_path, data))
    assert (len(trainer.train_set), len(trainer.val_set)) == (9, 3)
    assert [Path(f.split("#")[0]).name for f in trainer.val_set.files] == \
        ["im00010.jpg", "im00011.jpg", "im00012.jpg"]
    assert trainer.train_set.window.scale_jitter == 0.2 and not trainer.val_set.window.jittered
    run = trainer.fit()
    record = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["epoch"] == 1 and "PCK@0.2" in record
    from detseg.api import evaluate  # `detseg eval --split 9:12` takes the same path

    assert evaluate(run / "best.pt", data, split="9:12", device="cpu", quiet=True)["PCK@0.2"] == \
        pytest.approx(record["PCK@0.2"])


def test_split_errors_name_the_option(tmp_path):
    write_lspet(tmp_path / "lspet", 5)
    data = str(tmp_path / "lspet")
    with pytest.raises(SplitError, match="^train_split: .*'0-9'"):
        build_datasets(cfg(tmp_path, data, train_split="0-9"), "pose")
    with pytest.raises(SplitError, match=r"^val_split='4:9': .*out of range: the data has 5 samples"):
        build_datasets(cfg(tmp_path, data, train_split="0:4", val_split="4:9"), "pose")


def test_overlapping_ranges_warn(tmp_path):
    write_lspet(tmp_path / "lspet", 5)
    with pytest.warns(UserWarning, match="2 sample.* in both the train split '0:4' and the val split '2:5'"):
        build_datasets(cfg(tmp_path, str(tmp_path / "lspet"), train_split="0:4", val_split="2:5"), "pose")


def test_cli_train_split_flag():
    from detseg.cli.main import _train_config, build_parser

    args = build_parser().parse_args(["train", "pose_regression", "--data", "x",
                                      "--train-split", "0:900", "--val-split", "900:1000"])
    c = _train_config(args)
    assert (c.train_split, c.val_split) == ("0:900", "900:1000")
    assert _train_config(build_parser().parse_args(["train", "fcn"])).train_split == "train"


def test_empty_data_and_empty_splits(tmp_path, capsys):
    write_lspet(tmp_path / "lspet", 5)
    data = str(tmp_path / "lspet")
    # an empty val split (5 images hashed with val_fraction=0): trains without validation, to the end
    trainer = Trainer(cfg(tmp_path, data, train_split="train", val_split="val", val_fraction=0.0))
    assert len(trainer.train_set) == 5 and trainer.val_set is None
    assert "the 'val' split of" in capsys.readouterr().out
    run = trainer.fit()
    assert (run / "last.pt").is_file()
    from detseg.api import evaluate

    with pytest.raises(ValueError, match=r"lspet: the 'val' split has no usable samples \(see `detseg data check`\)"):
        evaluate(run / "last.pt", data, split="val", val_fraction=0.0, device="cpu")
    for image in (tmp_path / "lspet" / "images").iterdir():  # every image unreadable: nothing to train on
        image.write_bytes(b"")
    with pytest.raises(ValueError, match="lspet: the train split has no usable samples"):
        build_datasets(cfg(tmp_path, data, train_split="train", val_split="val"), "pose")
