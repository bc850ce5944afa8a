"""Why a segmentation checkpoint scores what it scores: per-class precision / recall on a split, and
train vs val (underfitting or overfitting), with the run's val curve.

    python benchmarks/seg_diagnose.py --data ../shared/datasets/camvid CKPT [CKPT ...]

- ``predicted/true`` per class: pixels predicted as the class over its labelled pixels. Far
  above 1 with low precision means the class is painted over its neighbours (class weights too
  strong); below 1 with low recall means it is missed.
- train vs val mIoU: both low = the model has not fit its own training images (under-training or
  too little capacity); train far above val = overfitting.
Prints only; the figures it gave are quoted in the closing notes beside this command.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from detseg.api import load
from detseg.data import build_dataset
from detseg.evaluation import build_evaluator


def run_split(model, data: str, split: str):
    """The semantic evaluator (its confusion matrix and metrics) of ``model`` over ``split``."""
    ds = build_dataset(data, split, task="semantic")
    ev = build_evaluator("semantic", list(ds.seg_classes))
    with torch.no_grad():
        for i in range(len(ds)):
            img, target = ds[i]
            ev.update(model([img]).predictions, [target])
    return ev


def print_precision_recall(ev) -> None:
    cm = ev.confusion.double()  # row: true class, column: predicted (last column: invalid)
    C = len(ev.classes)
    tp = cm.diagonal()[:C]
    predicted, true = cm[:, :C].sum(0), cm.sum(1)
    for c, name in enumerate(ev.classes):
        print(f"  {name:12s} precision {tp[c] / max(predicted[c], 1):.3f} "
              f"recall {tp[c] / max(true[c], 1):.3f} "
              f"IoU {tp[c] / max(predicted[c] + true[c] - tp[c], 1):.3f} "
              f"predicted/true {predicted[c] / max(true[c], 1):.2f}", flush=True)


def print_curve(checkpoint: str) -> None:
    log = Path(checkpoint).parent / "metrics.jsonl"
    if log.is_file():
        rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        print("  val curve:", [(r["epoch"], round(r["mIoU"], 3)) for r in rows if "mIoU" in r])
        print("  train loss every 5th epoch:", [round(r["train/loss"], 3) for r in rows if "train/loss" in r][::5])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="val", help="split of the precision/recall count")
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    for ck in args.checkpoints:
        print(ck, flush=True)
        model = load(ck).eval()
        # One pass per split: the --split pass gives both its precision/recall and its mIoU.
        evs = {split: run_split(model, args.data, split) for split in dict.fromkeys([args.split, "train", "val"])}
        print_precision_recall(evs[args.split])
        for split in ("train", "val"):
            m = evs[split].compute()
            print(f"  {split}: mIoU {m['mIoU']:.4f} pixel_acc {m['pixel_acc']:.4f}", flush=True)
        print_curve(ck)


if __name__ == "__main__":
    main()
