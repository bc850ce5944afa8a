"""Faults during training (issue 17): SIGKILL + --resume reproduces the uninterrupted run exactly,
a checkpoint write that fails midway keeps the previous checkpoint, a non-finite loss names its
batch's images, a data-loader worker that crashes gives a clear error instead of a hang."""

import errno
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from detseg.engine.checkpoint import load_checkpoint
from detseg.engine.trainer import (DataLoaderError, NonFiniteLossError, TrainConfig, Trainer,
                                   describe_batch)

TIMING = ("epoch_seconds", "train_seconds")


def tiny_cfg(tmp_path, **kw) -> TrainConfig:
    base = dict(model="fcn", data="shapes:size=32,n=24", epochs=2, img_size=32, batch=8, lr=1e-3,
                out=str(tmp_path), device="cpu", quiet=True, samples=2)
    base.update(kw)
    return TrainConfig(**base)


# -- SIGKILL at random points, then --resume ------------------------------------------------------
def _train_cmd(out: Path, name: str, epochs: int, workers: int) -> list[str]:
    # Full augmentation (flip, scale jitter, colour jitter): every random stream matters.
    return [sys.executable, "-m", "detseg", "train", "fcn", "--data", "shapes:size=32,n=128",
            "--img-size", "32", "--epochs", str(epochs), "--batch", "8", "--device", "cpu",
            "--workers", str(workers), "--samples", "2", "--seed", "3", "--out", str(out),
            "--name", name, "--quiet"]


def _env() -> dict[str, str]:
    src = str(Path(__file__).resolve().parents[2] / "src")
    path = os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def _ckpt_epoch(path: Path) -> int:
    try:
        return int(load_checkpoint(path)["epoch"])
    except Exception:  # not there yet
        return 0


def _epoch_seconds(run: Path, default: float = 1.0) -> float:
    """The slowest epoch so far of a run (from its metrics.jsonl), to place kills inside epochs."""
    try:
        lines = (run / "metrics.jsonl").read_text().splitlines()
        return max(json.loads(l)["epoch_seconds"] for l in lines if l.strip())
    except (OSError, ValueError, KeyError):
        return default


def _outcome(run: Path) -> dict:
    """Everything a run ends with, less wall-clock times: history, summary, weights of both files."""
    last, best = load_checkpoint(run / "last.pt"), load_checkpoint(run / "best.pt")
    drop = lambda r: {k: v for k, v in r.items() if k not in TIMING}  # noqa: E731
    summary = json.loads((run / "metrics.json").read_text())
    return {
        "history": [drop(r) for r in last["history"]],
        "jsonl": [drop(json.loads(l)) for l in (run / "metrics.jsonl").read_text().splitlines()],
        "final": drop(summary["final"]), "best_epoch": summary["best_epoch"],
        "optimizer_steps": last["scheduler"]["last_epoch"],
        "last": last["model"], "best": best["model"], "best_file_epoch": best["epoch"],
    }


def _same(a: dict, b: dict) -> list[str]:
    """Names of the fields that differ (weights compared bit for bit)."""
    diff = [k for k in ("history", "jsonl", "final", "best_epoch", "optimizer_steps",
                        "best_file_epoch") if a[k] != b[k]]
    for k in ("last", "best"):
        if a[k].keys() != b[k].keys() or any(not torch.equal(a[k][n], b[k][n]) for n in a[k]):
            diff.append(f"{k}.pt weights")
    return diff


def kill_and_resume(tmp_path: Path, kills: int, epochs: int, workers: int = 0, seed: int = 0):
    """Train once uninterrupted and once SIGKILLed ``kills`` times at seeded random points (a
    random fraction of an epoch after a new last.pt appeared), each followed by ``--resume``.
    Returns (differing fields, kill log)."""
    env, rng = _env(), random.Random(seed)
    ref = subprocess.Popen(_train_cmd(tmp_path, "ref", epochs, workers), env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    run = tmp_path / "fcn" / "kill1"
    cmd = _train_cmd(tmp_path, "kill", epochs, workers)
    log, done = [], 0
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for k in range(kills):
        deadline = time.time() + 300
        while _ckpt_epoch(run / "last.pt") <= done and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)  # wait for progress: each resumed segment finishes >= 1 epoch
        frac = rng.random()
        time.sleep(frac * _epoch_seconds(tmp_path / "fcn" / "ref1"))
        assert proc.poll() is None, f"kill {k + 1}: the run ended before it (make epochs larger)"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        done = _ckpt_epoch(run / "last.pt")
        log.append((done, round(frac, 3)))
        proc = subprocess.Popen(cmd + ["--resume", str(run)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    _, err = ref.communicate(timeout=600)
    assert ref.returncode == 0, err[-3000:]
    assert not (tmp_path / "fcn" / "kill2").exists()
    assert len(load_checkpoint(run / "last.pt")["history"]) == epochs
    return _same(_outcome(tmp_path / "fcn" / "ref1"), _outcome(run)), log


def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path):
    diff, log = kill_and_resume(tmp_path, kills=1, epochs=3, seed=1)
    assert diff == [], f"resumed run differs in {diff} (kills after epoch, fraction: {log})"


@pytest.mark.slow
def test_five_sigkills_then_resume_match_uninterrupted_run(tmp_path):
    """The issue's acceptance figure: 5 of 5 kills, two loader workers (their seeds count too)."""
    diff, log = kill_and_resume(tmp_path, kills=5, epochs=12, workers=2, seed=17)
    print(f"kills (last.pt epoch, fraction of an epoch): {log}")
    assert len(log) == 5
    assert diff == [], f"resumed run differs in {diff} (kills: {log})"


def test_epoch_rng_does_not_depend_on_the_past(tmp_path):
    """Whatever ran before an epoch (a different process, validation), its random draws agree."""
    trainer = Trainer(tiny_cfg(tmp_path, epochs=1))
    trainer._set_epoch(1)
    a = (random.random(), float(torch.rand(())), list(trainer.train_loader.sampler))
    torch.rand(100), random.random()  # consume the global streams
    trainer._set_epoch(1)
    assert (random.random(), float(torch.rand(())), list(trainer.train_loader.sampler)) == a
    trainer._set_epoch(2)
    assert list(trainer.train_loader.sampler) != a[2]


# -- a checkpoint write that fails midway ----------------------------------------------------------
def _failing_save(mode: str):
    real = torch.save
    calls = {"n": 0}

    def save(obj, f, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] <= 2:  # epoch 1: best.pt and last.pt go through
            return real(obj, f, *args, **kwargs)
        buf = io.BytesIO()
        real(obj, buf)
        Path(f).write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])  # half a file on disk
        if mode == "enospc":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        raise RuntimeError("serialisation failed midway")

    return save


@pytest.mark.parametrize("mode", ["enospc", "exception"])
def test_failed_checkpoint_write_keeps_previous(tmp_path, monkeypatch, mode):
    trainer = Trainer(tiny_cfg(tmp_path, epochs=3))
    monkeypatch.setattr(torch, "save", _failing_save(mode))
    if mode == "enospc":
        with pytest.raises(OSError, match=r"last\.pt|best\.pt") as info:
            trainer.fit()
        assert info.value.errno == errno.ENOSPC and "previous checkpoint is kept" in str(info.value)
    else:
        with pytest.raises(RuntimeError, match="midway"):
            trainer.fit()
    run = trainer.run_dir
    for name in ("last.pt", "best.pt"):  # the epoch-1 files, whole and loadable
        assert load_checkpoint(run / name)["epoch"] == 1
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]
    monkeypatch.undo()  # space freed: --resume carries on from epoch 1
    again = Trainer(tiny_cfg(tmp_path, epochs=3, resume=str(run)))
    again.fit()
    assert [r["epoch"] for r in again.history] == [1, 2, 3]


# -- a non-finite loss ------------------------------------------------------------------------------
def test_non_finite_loss_names_the_batch_images(tmp_path):
    trainer = Trainer(tiny_cfg(tmp_path, epochs=1))
    model, real_forward, seen = trainer.model, trainer.model.forward, {}

    def forward(images, targets=None, **kw):
        out = real_forward(images, targets, **kw)
        if model.training and targets is not None:
            seen["ids"] = [int(t["image_id"]) for t in targets]
            out.losses = {k: v * float("inf") for k, v in out.losses.items()}
        return out

    model.forward = forward
    with pytest.raises(NonFiniteLossError) as info:
        trainer.fit()
    assert f"image ids {seen['ids']}" in str(info.value)
    assert "epoch 1, iteration 1" in str(info.value)


def test_describe_batch_adds_file_names():
    class FileSet:
        files, image_ids = ["a/x.jpg", "a/y.jpg", "a/z.jpg"], [10, 20, 30]

    text = describe_batch([{"image_id": 30}, {"image_id": torch.tensor(10)}], FileSet())
    assert text == "image ids [30, 10] (a/z.jpg, a/x.jpg)"
    assert describe_batch([{"image_id": 4}], object()) == "image ids [4]"


# -- a data-loader worker that crashes --------------------------------------------------------------
class CrashingSet(torch.utils.data.Dataset):
    """Wraps a dataset; sample ``bad`` fails inside a loader worker: raises, or kills the worker."""

    def __init__(self, inner, mode: str, bad: int = 5):
        self.inner, self.mode, self.bad = inner, mode, bad

    def __len__(self):
        return len(self.inner)

    def __getattr__(self, name):  # classes, warn_problems, ...: the wrapped dataset's
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __getitem__(self, i):
        if i == self.bad and torch.utils.data.get_worker_info() is not None:
            if self.mode == "exit":
                os._exit(3)  # a worker dying without a Python exception (segfault, OOM killer)
            raise ValueError("shapes/000005.png: image: cannot decode (truncated file)")
        return self.inner[i]


@pytest.mark.parametrize("mode", ["raise", "exit"])
def test_crashing_loader_worker_is_a_clear_error(tmp_path, mode):
    trainer = Trainer(tiny_cfg(tmp_path, epochs=1, workers=2))
    trainer.train_set = CrashingSet(trainer.train_set, mode)
    trainer.train_loader = trainer._train_loader()
    t0 = time.time()
    if mode == "raise":  # torch re-raises the worker's exception: its type and message survive
        with pytest.raises(ValueError, match=r"000005\.png: image: cannot decode"):
            trainer.fit()
    else:
        with pytest.raises(DataLoaderError, match=r"--workers 2.*exited unexpectedly.*--workers 0"):
            trainer.fit()
    assert time.time() - t0 < 60  # an error, not a hang
