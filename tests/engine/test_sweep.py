"""detseg sweep: one run per value, the value chosen by the final validation metric."""

from __future__ import annotations

import json
import math

import pytest

from detseg.cli import main
from detseg.engine import sweep as sweep_mod
from detseg.engine.trainer import TrainConfig


class FakeTrainer:
    """Stands in for Trainer: its final metric is a given function of the swept value."""

    metric_of = staticmethod(lambda cfg: 0.0)

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.run_dir = sweep_mod.Path(cfg.out) / cfg.name
        self.train_seconds = 1.0

    def fit(self):
        self.run_dir.mkdir(parents=True)
        return self.run_dir

    def summary(self):
        v = FakeTrainer.metric_of(self.cfg)
        return {"final": {"epoch": 1, "top1": 1.0, "loc_acc": v, "mean_iou": v, "val/loss": -v}}


def test_chooses_by_metric_not_by_order(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep_mod, "Trainer", FakeTrainer)
    # The model option lam: 1 is best; a diverged run (NaN) never wins.
    FakeTrainer.metric_of = staticmethod(
        lambda cfg: {0.1: 0.5, 1.0: 0.9, 10.0: math.nan, 100.0: 0.7}[cfg.model_opts["lam"]])
    base = TrainConfig(model="cls_loc", data="shapes", out=str(tmp_path), quiet=True)
    result = sweep_mod.run_sweep(base, "lam", [0.1, 1.0, 10.0, 100.0])
    assert result["metric"] == "loc_acc" and result["best_value"] == 1.0
    assert [r["value"] for r in result["rows"]] == [0.1, 1.0, 10.0, 100.0]
    d = sweep_mod.Path(result["sweep_dir"])
    assert d.name == "sweep_lam1"
    assert (d / "sweep.png").is_file() and (d / "sweep.csv").read_text().count("\n") == 5
    assert json.loads((d / "sweep.json").read_text())["best_value"] == 1.0


def test_config_params_and_refusals(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep_mod, "Trainer", FakeTrainer)
    FakeTrainer.metric_of = staticmethod(lambda cfg: -abs(cfg.lr - 1e-3))
    base = TrainConfig(model="cls_loc", out=str(tmp_path), quiet=True)
    result = sweep_mod.run_sweep(base, "lr", [1e-4, 1e-3, 1e-2], metric="mean_iou")
    assert result["best_value"] == 1e-3 and result["metric"] == "mean_iou"
    with pytest.raises(ValueError, match="not a loss"):
        sweep_mod.run_sweep(base, "lr", [1e-4, 1e-3], metric="val/loss")
    with pytest.raises(ValueError, match="two distinct"):
        sweep_mod.run_sweep(base, "lr", [1e-3, 1e-3])
    with pytest.raises(ValueError, match="not a training parameter"):
        sweep_mod.run_sweep(base, "data", ["a", "b"])


def test_cli_tiny_real_sweep(tmp_path, capsys):
    """Two real tiny cls_loc runs; the printed choice is the row with the best loc_acc."""
    assert main(["sweep", "cls_loc", "--data", "shapes:size=32,n=16,n_val=8", "--img-size", "32",
                 "--epochs", "1", "--batch", "8", "--device", "cpu", "--out", str(tmp_path),
                 "--quiet", "--param", "lam", "--values", "0.5,5", "--metric", "mean_iou"]) == 0
    result = json.loads((tmp_path / "cls_loc" / "sweep_lam1" / "sweep.json").read_text())
    best = max(result["rows"], key=lambda r: r["mean_iou"])
    assert result["best_value"] == best["value"]
    assert "chosen by mean_iou: lam=" in capsys.readouterr().out
