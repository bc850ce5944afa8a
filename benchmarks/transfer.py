"""The transfer-learning study: does pre-training on one dataset beat more target data from scratch?

    python benchmarks/transfer.py --minutes 15              # shapes world -> raccoon, faster_rcnn
    python benchmarks/transfer.py --source ../shared/datasets/bccd --source-img-size 416 --minutes 15
    python benchmarks/transfer.py --source-checkpoint runs/transfer/source1/last.pt --minutes 15
    python benchmarks/transfer.py --source shapes:size=64,mode=scene,n=16,n_val=8 --source-img-size 64 \
        --target shapes:size=64,mode=scene,n=16,n_val=8 --img-size 64 --minutes 0.1 \
        --results-dir /tmp/transfer_smoke        # a smoke run (seconds)

CS231n 2017, lecture 11: "transfer learning is hot: less data, same performance" -- measured. A
detector (``--model``, a zoo entry ``NAME[:key=value;...]`` as in ``benchmarks/detection.py``;
default a CPU-friendly Faster R-CNN: alexnet_small under an FPN, 64 FPN channels, 256-wide box
head) is first trained on ``--source`` (default a large shapes scene world; any ``--data`` spec,
e.g. BCCD or Penn-Fudan under ``../shared/datasets``) for ``--source-minutes``. It is then trained
on ``--target`` (default raccoon with the author's 160/40 split, ``data/train_labels.csv`` /
``data/test_labels.csv``, as in the detection benchmark) with 25 %, 50 % and 100 % of the target's
training images (``--fractions``), twice per fraction: from scratch, and from the source
checkpoint through ``detseg train --weights`` (every tensor whose name and shape match; the
class-dependent predictors are re-initialised for the target's classes; ``--freeze-backbone N``
optional). Every target run gets the same CPU budget (``--minutes`` of training; the LR decays over
it) and is evaluated on the full validation split by detseg's COCO evaluator.

A fraction of a split is a seeded subset of its images (``--subset-seed``), nested (the 25 % images
are among the 50 % ones), written as a ``.txt`` list of image names and passed as ``--train-split``
-- detseg's split lists (:mod:`detseg.data.split`), so ``detseg train`` can reproduce any row with
the list file kept in the run folder. The shapes world has no lists: its fraction is ``n=``.

Records -> ``benchmarks/results/transfer_<target>.json`` (one row per (init, fraction), plus the
source run's row; ``--results-dir`` writes elsewhere), the table on stdout, and the plot
``transfer_<target>.png`` beside the JSON (mAP against training-set fraction, scratch vs transfer);
``benchmarks/make_docs.py`` renders both into docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from common import ROOT, append_or_replace, dataset_name, parse_entry, stamp  # noqa: E402
from detection import _row, cpu_ms_per_image  # noqa: E402

from detseg.engine.trainer import TrainConfig, Trainer  # noqa: E402
from detseg.tables import format_table  # noqa: E402

DATASETS = ROOT.parent / "shared" / "datasets"
RACCOON = DATASETS / "raccoon"
# The raccoon author's split (160 / 40 images), the detection benchmark's data spec.
RACCOON_SPLIT = (str(RACCOON / "data" / "train_labels.csv"), str(RACCOON / "data" / "test_labels.csv"))
SOURCE = "shapes:size=128,mode=scene,n=2000,n_val=200"
MODEL = ("faster_rcnn:backbone=alexnet_small_fpn;fpn_channels=64;representation=256;"
         "anchor_sizes=[16,32,64,128,256];rpn_pre_nms_top_n_train=1000;rpn_post_nms_top_n_train=500;"
         "rpn_pre_nms_top_n_test=500;rpn_post_nms_top_n_test=300;box_batch_size_per_image=128")


def subset_split(data: str, split: str, fraction: float, seed: int, workdir: Path,
                 task: str = "detection") -> tuple[str, str, int]:
    """``(data spec, train split, images)`` for ``fraction`` of ``data``'s ``split``: a seeded,
    nested subset of its images written as a list file in ``workdir`` (shapes: ``n=``)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"--fractions: {fraction} is not in (0, 1]")
    from detseg.data import build_dataset
    from detseg.data.shapes import ShapesDataset

    if data.startswith("shapes"):
        n = len(ShapesDataset.from_spec(data, split=split, task=task))
        k = max(1, round(fraction * n))
        head, _, opts = data.partition(":")
        kept = [o for o in opts.split(",") if o and not o.startswith("n=")]
        return ":".join([head, ",".join(kept + [f"n={k}"])]), split, k
    files = list(build_dataset(data, split=split, task=task).files)
    if not files:
        raise ValueError(f"{data}: split {split!r} has no images")
    order = np.random.default_rng(seed).permutation(len(files))  # one order: nested subsets
    k = max(1, round(fraction * len(files)))
    chosen = sorted(Path(files[i]).name for i in order[:k])
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"train_{round(fraction * 100)}pct_seed{seed}.txt"
    path.write_text("".join(f"{name}\n" for name in chosen), encoding="utf-8")
    return data, str(path), k


def train_run(args, model: str, opts: dict[str, Any], data: str, train_split: str, val_split: str,
              img_size: int, minutes: float, out: str, name: str, weights: str | None = None,
              freeze: int = 0) -> tuple[Trainer, dict[str, Any]]:
    """One budgeted training run; ``(trainer, its table row)``."""
    cfg = TrainConfig(model=model, data=data, epochs=args.epochs, img_size=img_size, batch=args.batch,
                      lr=args.lr, model_opts=dict(opts), out=out, name=name, device=args.device,
                      quiet=True, augment=args.augment, amp=args.amp, time_limit=minutes,
                      train_split=train_split, val_split=val_split, seed=args.seed,
                      val_every=args.val_every, weights=weights, freeze_backbone=freeze, samples=2)
    trainer = Trainer(cfg)
    trainer.fit()
    final = trainer.summary()["final"]
    n_val = len(trainer.val_set) if trainer.val_set is not None else 0
    params = sum(p.numel() for p in trainer.eval_model.parameters())
    ms = (cpu_ms_per_image(trainer.eval_model, trainer.val_set, args.time_images)
          if n_val and args.time_images else float("nan"))
    row = _row(args.model, final, params, ms, trainer.train_seconds, 0.0, len(trainer.train_set), n_val)
    row.pop("proposals_precomputed_seconds", None)
    if trainer.transfer is not None:
        c = trainer.transfer["counts"]
        row.update({"tensors_loaded": c["loaded"], "tensors_reinitialised": c["reinitialised"],
                    "tensors_skipped": c["skipped"], "frozen_stages": len((trainer.transfer["frozen"] or
                                                                           {}).get("stages", []))})
    if args.runs_dir is not None:
        row["run_dir"] = str(trainer.run_dir)
    return trainer, row


def study_table(rows: list[dict[str, Any]]) -> str:
    """mAP / mAP50 per fraction, scratch vs transfer, and the gain."""
    by = {(r["init"], r["fraction"]): r for r in rows if r.get("init") in ("scratch", "transfer")}
    fractions = sorted({f for _, f in by})
    nan = float("nan")
    out = []
    for f in fractions:
        s, t = by.get(("scratch", f), {}), by.get(("transfer", f), {})
        out.append([f"{f:.0%}", s.get("train_images", t.get("train_images", "")), s.get("mAP", nan),
                    t.get("mAP", nan), t.get("mAP", nan) - s.get("mAP", nan), s.get("mAP50", nan),
                    t.get("mAP50", nan)])
    return format_table(["train fraction", "images", "scratch mAP", "transfer mAP", "gain",
                         "scratch mAP50", "transfer mAP50"], out)


def plot_study(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    """mAP (solid) and mAP50 (dashed) against the training-set fraction, scratch vs transfer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from detseg.io import save_figure

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for init, colour in (("scratch", "tab:gray"), ("transfer", "tab:blue")):
        pts = sorted((r["fraction"], r["mAP"], r["mAP50"]) for r in rows if r.get("init") == init)
        if not pts:
            continue
        f, m, m50 = zip(*pts)
        ax.plot([100 * x for x in f], m, "o-", color=colour, label=f"{init} mAP")
        ax.plot([100 * x for x in f], m50, "s--", color=colour, alpha=0.6, label=f"{init} mAP50")
    ax.set_xlabel("training images used (%)")
    ax.set_ylabel("COCO AP on val")
    ax.set_title(title, fontsize=9)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(path, fig)
    plt.close(fig)


def _fractions(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SystemExit(f"--fractions: {text!r} is not a comma-separated list of numbers") from None
    if not values or any(not 0 < v <= 1 for v in values):
        raise SystemExit(f"--fractions: {text!r}: every fraction must be in (0, 1]")
    return values


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=MODEL, help="zoo entry NAME[:key=value;...] (default: %(default)s)")
    p.add_argument("--source", default=SOURCE, help="pre-training data (any --data spec)")
    p.add_argument("--source-img-size", type=int, default=128)
    p.add_argument("--source-minutes", type=float, default=None, help="pre-training budget (default: --minutes)")
    p.add_argument("--source-checkpoint", default=None,
                   help="skip pre-training: fine-tune from this checkpoint (its row is not re-measured)")
    p.add_argument("--target", default=str(RACCOON), help="fine-tuning data (default: raccoon)")
    p.add_argument("--train-split", default=None,
                   help="target train split (default: raccoon's train_labels.csv, else train)")
    p.add_argument("--val-split", default=None, help="target val split (default: raccoon's test_labels.csv, else val)")
    p.add_argument("--img-size", type=int, default=320, help="target image size")
    p.add_argument("--fractions", default="0.25,0.5,1.0")
    p.add_argument("--subset-seed", type=int, default=0)
    p.add_argument("--minutes", type=float, default=15.0, help="CPU training budget per target run")
    p.add_argument("--freeze-backbone", type=int, default=0, metavar="N", help="transfer runs: frozen stages")
    p.add_argument("--epochs", type=int, default=500, help="schedule length (the time budget cuts it)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--augment", default="flip", help="full | flip | none")
    p.add_argument("--amp", action="store_true", help="bf16 autocast on the CPU")
    p.add_argument("--val-every", type=int, default=5, help="validate every N epochs (the last always)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--time-images", type=int, default=0, help="val images timed for cpu_ms_per_image (0: off)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--runs-dir", type=Path, default=None, help="keep the run folders here (default: temporary)")
    p.add_argument("--results-dir", type=Path, help="write the JSON and PNG here instead of benchmarks/results")
    args = p.parse_args(argv)
    if args.results_dir is not None:
        common.RESULTS = args.results_dir
    if args.threads:
        torch.set_num_threads(args.threads)
    fractions = _fractions(args.fractions)
    raccoon = Path(args.target).resolve() == RACCOON.resolve()
    train_split = args.train_split or (RACCOON_SPLIT[0] if raccoon else "train")
    val_split = args.val_split or (RACCOON_SPLIT[1] if raccoon else "val")
    model, opts = parse_entry(args.model)
    target = dataset_name(args.target)
    bench = f"transfer_{target}"
    common_fields = {"benchmark": bench, "dataset": args.target, "split": f"train {train_split}, val {val_split}",
                     "source": args.source, "img_size": args.img_size, "augment": args.augment, "amp": args.amp}
    key = ("benchmark", "model", "dataset", "source", "init", "fraction")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        out = str(args.runs_dir) if args.runs_dir else tmp
        ckpt = args.source_checkpoint
        if ckpt is None:
            minutes = args.source_minutes if args.source_minutes is not None else args.minutes
            trainer, row = train_run(args, model, opts, args.source, "train", "val", args.source_img_size,
                                     minutes, out, "source")
            ckpt = str(trainer.run_dir / "last.pt")
            record = stamp({**common_fields, **row, "init": "source", "fraction": 1.0, "budget_minutes": minutes,
                            "img_size": args.source_img_size, "dataset": args.source}, "torch")
            append_or_replace(bench, [record], key=key)
            print(f"source {args.source}: mAP {row['mAP']:.3f}, mAP50 {row['mAP50']:.3f} "
                  f"({row['epochs_done']} epochs, {row['train_seconds']:.0f} s)", flush=True)
        for fraction in fractions:
            data, split, n = subset_split(args.target, train_split, fraction, args.subset_seed, Path(out) / "splits")
            for init in ("scratch", "transfer"):
                name = f"{init}_{round(fraction * 100)}pct_"
                _, row = train_run(args, model, opts, data, split, val_split, args.img_size, args.minutes, out,
                                   name, weights=ckpt if init == "transfer" else None,
                                   freeze=args.freeze_backbone if init == "transfer" else 0)
                record = stamp({**common_fields, **row, "init": init, "fraction": fraction,
                                "budget_minutes": args.minutes, "subset_seed": args.subset_seed,
                                "source_checkpoint": ckpt if args.source_checkpoint else "pre-trained above",
                                "freeze_backbone": args.freeze_backbone if init == "transfer" else 0}, "torch")
                path = append_or_replace(bench, [record], key=key)
                rows.append(record)
                print(f"{init} {fraction:.0%} ({n} images): mAP {row['mAP']:.3f}, mAP50 {row['mAP50']:.3f} "
                      f"({row['epochs_done']} epochs, {row['train_seconds']:.0f} s)", flush=True)
    print(study_table(rows))
    png = common.RESULTS / f"{bench}.png"
    same = [r for r in common.read_results(bench) if r.get("model") == args.model
            and r.get("source") == args.source and r.get("dataset") == args.target]
    plot_study(same, png,
               f"{re.sub(r':.*', '', args.model)}: {dataset_name(args.source)} -> {target}, "
               f"{args.minutes:g} min per run")
    print(f"wrote {path} and {png}")
    if any(math.isnan(r["mAP"]) for r in rows):
        print("some runs have no mAP (no validation split?)", file=sys.stderr)


if __name__ == "__main__":
    main()
