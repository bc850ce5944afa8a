"""Logging hooks: results.csv (one row per epoch) and TensorBoard event files (--tensorboard)."""

import csv
import json
import sys

from detseg.cli.main import main

TRAIN = ["train", "cls_loc", "--data", "shapes:size=32,n=8", "--img-size", "32", "--batch", "8",
         "--device", "cpu", "--quiet", "--samples", "1", "-o", "hidden=16"]


def test_results_csv_and_tensorboard_events(tmp_path):
    assert main(TRAIN + ["--epochs", "2", "--val-every", "2", "--out", str(tmp_path), "--tensorboard"]) == 0
    run = tmp_path / "cls_loc" / "train1"
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    with open(run / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(history) == 2
    assert list(rows[0]) == list(dict.fromkeys(k for r in history for k in r))  # the jsonl columns
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert rows[0]["loc_acc"] == "" and float(rows[1]["loc_acc"]) == history[1]["loc_acc"]
    assert not list(run.glob(".*"))  # written through a temporary file, renamed

    events = list(run.glob("events.out.tfevents.*"))
    assert events, "no TensorBoard event file next to metrics.jsonl"
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run))
    acc.Reload()
    assert "train/loss" in acc.Tags()["scalars"]
    assert [e.step for e in acc.Scalars("train/loss")] == [1, 2]
    assert [e.step for e in acc.Scalars("loc_acc")] == [2]  # validated epochs only


def test_tensorboard_missing_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    assert main(TRAIN + ["--epochs", "1", "--out", str(tmp_path), "--tensorboard"]) == 2
    err = capsys.readouterr().err
    assert "tensorboard" in err and "pip install" in err
    assert not (tmp_path / "cls_loc").exists()  # refused before any run folder was made
