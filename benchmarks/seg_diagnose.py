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

from detseg.api import evaluate, load
from detseg.data import build_dataset


def precision_recall(checkpoint: str, data: str, split: str) -> None:
    ds = build_dataset(data, split, task="semantic")
    C = len(ds.seg_classes)
    model = load(checkpoint).eval()
    tp, fp, fn = torch.zeros(C), torch.zeros(C), torch.zeros(C)
    with torch.no_grad():
        for i in range(len(ds)):
            img, t = ds[i]
            y, p = t["sem_seg"], model([img]).predictions[0]["sem_seg"]
            labelled = y < C
            for c in range(C):
                pc, yc = (p == c) & labelled, (y == c) & labelled
                tp[c] += (pc & yc).sum()
                fp[c] += (pc & ~yc).sum()
                fn[c] += (~pc & yc).sum()
    for c, name in enumerate(ds.seg_classes):
        print(f"  {name:12s} precision {tp[c] / (tp[c] + fp[c]).clamp(min=1):.3f} "
              f"recall {tp[c] / (tp[c] + fn[c]).clamp(min=1):.3f} "
              f"IoU {tp[c] / (tp[c] + fp[c] + fn[c]).clamp(min=1):.3f} "
              f"predicted/true {(tp[c] + fp[c]) / (tp[c] + fn[c]).clamp(min=1):.2f}", flush=True)


def train_vs_val(checkpoint: str, data: str) -> None:
    for split in ("train", "val"):
        m = evaluate(checkpoint, data, split=split, device="cpu")
        print(f"  {split}: mIoU {m['mIoU']:.4f} pixel_acc {m['pixel_acc']:.4f}", flush=True)
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
        precision_recall(ck, args.data, args.split)
        train_vs_val(ck, args.data)


if __name__ == "__main__":
    main()
