"""The ``detseg bench`` verb: the speed/accuracy trade-off study (:mod:`detseg.engine.bench`).

    detseg bench --data DATA --entries "yolo:img=320,ssd:img=320,faster_rcnn:backbone=alexnet_small_fpn"
                 --minutes M [--checkpoints A.pt,B.pt] [--out DIR]

Every entry trains for the same budget (or is loaded from a checkpoint) and is measured in this
process: COCO mAP / mAP50 by detseg's evaluator, batch-1 latency (2 threads), images/s at batch 8,
parameters, GFLOPs, peak RSS. Writes ``OUT/tradeoff_<dataset>.json``, ``.csv`` and ``.png`` (the
latency-vs-mAP scatter with the Pareto front) and prints the table.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Any

from detseg.cli.common import DATA_HELP

ENTRIES_HELP = (
    "comma-separated entries NAME[:key=value;key=value]: a zoo detector (yolo_v1, yolo, ssd, "
    "faster_rcnn, fast_rcnn, rcnn, sliding_window_det) with builder options, a peer "
    "(tv_fasterrcnn_mobilenet_v3_large_320_fpn, tv_ssdlite320_mobilenet_v3_large, "
    "ultralytics_yolov8n; pip install 'detseg[benchmark]' for Ultralytics) or central_box (the "
    "constant-box floor); img=N sets the entry's input size, ckpt=PATH measures a checkpoint "
    "instead of training. Quote the list: ';' separates options.")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``bench --data DATA --entries E1,E2,... [--minutes M] [--out DIR]``."""
    p = subparsers.add_parser(
        "bench", help="speed/accuracy study: train detectors on one budget, measure, Pareto plot",
        description="Train each entry for the same budget (or load its checkpoint), then measure "
        "every one in this process on the val split: COCO mAP and mAP50 (detseg's evaluator, "
        "also for the peers), median batch-1 latency, images/s at batch 8, parameters, GFLOPs "
        "(FlopCounterMode) and peak RSS. Writes tradeoff_<dataset>.json/.csv/.png under --out.")
    p.add_argument("--data", required=True, help=DATA_HELP)
    p.add_argument("--entries", default="", help=ENTRIES_HELP)
    p.add_argument("--checkpoints", default="", metavar="A.pt,B.pt",
                   help="comma-separated checkpoints, each measured as an entry without training")
    p.add_argument("--minutes", type=float, default=15.0,
                   help="training budget per entry in minutes (0: train --epochs epochs instead)")
    p.add_argument("--epochs", type=int, default=1000, help="schedule length (the budget cuts it)")
    p.add_argument("--img-size", type=int, default=320, help="input size of entries without img=")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--augment", choices=["full", "flip", "none"], default="flip")
    p.add_argument("--amp", action="store_true", help="bf16 autocast in training")
    p.add_argument("--train-split", default="train", help="split name, index range A:B or .txt/.csv list")
    p.add_argument("--val-split", default="val", help="like --train-split")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch threads while timing")
    p.add_argument("--timed-runs", type=int, default=20, help="batch-1 latency runs (at least 10)")
    p.add_argument("--proposal-cache", default=None, metavar="DIR",
                   help="selective-search cache folder for rcnn / fast_rcnn entries")
    p.add_argument("--warm-cache", action="store_true",
                   help="with --proposal-cache: compute every image's proposals before the timed training")
    p.add_argument("--out", default="bench", help="folder of the results files and checkpoints")
    p.add_argument("--name", default=None, help="results-file suffix (default: the dataset's name)")
    p.add_argument("--checkpoint-dir", default=None, metavar="DIR",
                   help="where the trained detseg models are kept as <entry>.pt (default OUT/checkpoints)")
    p.add_argument("--no-checkpoints", action="store_true",
                   help="do not keep the trained detseg models' checkpoints")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def config_from_args(args):
    from detseg.engine.bench import BenchConfig

    return BenchConfig(
        data=args.data, entries=args.entries,
        checkpoints=[c for c in args.checkpoints.split(",") if c.strip()],
        minutes=args.minutes or None, epochs=args.epochs, img_size=args.img_size, batch=args.batch,
        lr=args.lr, augment=args.augment, amp=args.amp, train_split=args.train_split,
        val_split=args.val_split, seed=args.seed, threads=args.threads, timed_runs=args.timed_runs,
        proposal_cache=args.proposal_cache, warm_cache=args.warm_cache, out=args.out, name=args.name,
        keep_checkpoints=not args.no_checkpoints, checkpoint_dir=args.checkpoint_dir, quiet=args.quiet)


def run(args, command: str | None = None) -> int:
    """Run the study; ``command`` is what every row records (default: this ``detseg`` call)."""
    from detseg.engine.bench import run_bench
    from detseg.engine.bench_report import format_rows

    if command is None:
        command = (" ".join(["detseg", *map(shlex.quote, sys.argv[1:])]) if "bench" in sys.argv[1:]
                   else "detseg bench (from Python)")
    rows, paths = run_bench(config_from_args(args), command=command)
    print(format_rows(rows))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0
