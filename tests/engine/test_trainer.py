"""The training engine on tiny runs: run folder, resume, non-finite stop, DDP (SIGKILL + --resume:
tests/engine/test_faults.py)."""

import json
import os
import subprocess
import sys

import pytest
import torch

from detseg.engine.checkpoint import load_checkpoint, load_model
from detseg.engine.trainer import NonFiniteLossError, TrainConfig, Trainer

TINY = "shapes:size=32,n=24"


def tiny_cfg(tmp_path, **kw) -> TrainConfig:
    base = dict(model="fcn", data=TINY, epochs=2, img_size=32, batch=8, lr=1e-3, out=str(tmp_path),
                device="cpu", quiet=True, samples=2)
    base.update(kw)
    return TrainConfig(**base)


def test_run_folder_contents(tmp_path):
    run = Trainer(tiny_cfg(tmp_path)).fit()
    assert run == tmp_path / "fcn" / "train1"
    for f in ("args.yaml", "last.pt", "best.pt", "metrics.jsonl", "metrics.json", "curves.png", "samples.png"):
        assert (run / f).is_file(), f
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(l)["epoch"] for l in lines] == [1, 2]
    rec = json.loads(lines[-1])
    assert "val/loss" in rec and "mIoU" in rec and "train/loss" in rec
    summary = json.loads((run / "metrics.json").read_text())
    assert summary["epochs"] == 2 and summary["main_metric"] == "mIoU"
    model = load_model(run / "best.pt")
    assert model.task == "semantic" and model.classes[0] == "background"
    # a second run gets the next folder
    assert Trainer(tiny_cfg(tmp_path, epochs=1)).fit() == tmp_path / "fcn" / "train2"


def test_resume_continues_and_extends(tmp_path):
    Trainer(tiny_cfg(tmp_path, epochs=1)).fit()
    run = Trainer(tiny_cfg(tmp_path, epochs=3, resume=True)).fit()
    assert run == tmp_path / "fcn" / "train1"
    epochs = [json.loads(l)["epoch"] for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3]
    assert load_checkpoint(run / "last.pt")["epoch"] == 3


def test_resume_without_run_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="--resume"):
        Trainer(tiny_cfg(tmp_path, resume=True))


def test_non_finite_loss_stops_and_keeps_last_good(tmp_path):
    trainer = Trainer(tiny_cfg(tmp_path, epochs=3))
    model = trainer.model
    real_forward = model.forward
    calls = {"n": 0}

    def forward(images, targets=None, **kw):
        out = real_forward(images, targets, **kw)
        if model.training:
            calls["n"] += 1
            if calls["n"] > 3:  # epoch 1 has 3 iterations (24 images / 8)
                out.losses = {k: v * float("nan") for k, v in out.losses.items()}
        return out

    model.forward = forward
    with pytest.raises(NonFiniteLossError, match="non-finite loss"):
        trainer.fit()
    state = load_checkpoint(trainer.run_dir / "last.pt")
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_torchrun_two_cpu_processes(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           "-m", "detseg", "train", "fcn", "--data", "shapes:size=32,n=32", "--img-size", "32",
           "--epochs", "2", "--batch", "4", "--device", "cpu", "--out", str(tmp_path), "--quiet"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = list((tmp_path / "fcn").iterdir())
    assert [r.name for r in runs] == ["train1"]
    assert sorted(p.name for p in runs[0].glob("*.pt")) == ["best.pt", "last.pt"]
    assert load_checkpoint(runs[0] / "last.pt")["epoch"] == 2
    assert len((runs[0] / "metrics.jsonl").read_text().splitlines()) == 2


def test_time_limit_stops_mid_epoch_annealed(tmp_path):
    trainer = Trainer(tiny_cfg(tmp_path, epochs=5, time_limit=1e-6))
    trainer.fit()
    assert len(trainer.history) == 1  # stopped after the first iteration, then validated
    assert load_checkpoint(trainer.run_dir / "last.pt")["epoch"] == 1
    assert "mIoU" in trainer.history[0]
    # The budget is spent, so the cosine schedule is at its floor.
    assert trainer.history[0]["lr"] == pytest.approx(trainer.cfg.lr * 0.01)
    again = Trainer(tiny_cfg(tmp_path, epochs=5, time_limit=1e-6, resume=str(trainer.run_dir)))
    again.fit()
    assert len(again.history) == 1  # resuming a run whose budget is spent trains nothing


def test_budget_aware_lr_factor():
    from detseg.engine.schedule import lr_factor

    assert lr_factor(10, 100, 0, "cosine", spent=0.0) > 0.9
    assert lr_factor(10, 100, 0, "cosine", spent=0.5) == pytest.approx(0.505)
    assert lr_factor(10, 100, 0, "cosine", spent=1.0) == pytest.approx(0.01)
    assert lr_factor(90, 100, 0, "cosine", spent=0.1) < 0.05  # iterations further along win
    assert lr_factor(10, 100, 0, "step", spent=0.7) == pytest.approx(0.1)


def test_median_frequency_class_weights(tmp_path):
    trainer = Trainer(tiny_cfg(tmp_path, epochs=1, model_opts={"class_weights": "median_frequency"}))
    weights = trainer.eval_model.builder_args["class_weights"]
    assert len(weights) == 5 and all(w > 0 for w in weights)
    assert weights[0] < 1 < max(weights)  # background is the most frequent class
    soft = Trainer(tiny_cfg(tmp_path, epochs=1, model_opts={"class_weights": "sqrt_median_frequency"}))
    assert soft.eval_model.builder_args["class_weights"] == pytest.approx([w ** 0.5 for w in weights])


def test_channels_last_trains_and_checkpoints(tmp_path):
    trainer = Trainer(tiny_cfg(tmp_path, epochs=1, channels_last=True))
    conv = next(m for m in trainer.eval_model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    run = trainer.fit()
    model = load_model(run / "last.pt")  # loads into an ordinary (NCHW) model
    assert model.predict([torch.rand(3, 32, 40)])[0].prediction["sem_seg"].shape == (32, 40)


def test_val_every_validates_every_nth_and_the_last_epoch(tmp_path):
    trainer = Trainer(tiny_cfg(tmp_path, epochs=5, val_every=2))
    run = trainer.fit()
    validated = [r["epoch"] for r in trainer.history if "mIoU" in r]
    assert validated == [2, 4, 5]  # every 2nd epoch, and always the last one
    assert all("train/loss" in r for r in trainer.history)
    assert trainer.best_epoch in validated  # best.pt is chosen among validated epochs only
    assert load_checkpoint(run / "best.pt")["epoch"] in validated
    assert load_checkpoint(run / "last.pt")["epoch"] == 5
    assert (run / "curves.png").is_file() and (run / "samples.png").is_file()


def test_val_every_cli_flag(tmp_path):
    from detseg.cli.main import _train_config, build_parser

    args = build_parser().parse_args(["train", "fcn", "--val-every", "3"])
    assert _train_config(args).val_every == 3


def test_val_every_below_one_is_refused(tmp_path):
    with pytest.raises(ValueError, match="val_every: must be >= 1"):
        Trainer(tiny_cfg(tmp_path, val_every=0))
