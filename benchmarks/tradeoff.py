"""The speed/accuracy trade-off study of issue 15 on raccoon: ``detseg bench`` with the default
configuration list, results into benchmarks/results/ (-> docs/BENCHMARKS.md via make_docs.py).

    python benchmarks/tradeoff.py                      # the study: 10 entries x 15 CPU minutes
    python benchmarks/tradeoff.py --minutes 1 --entries yolo:img=320,central_box --out /tmp/t

Every detseg detector family (``yolo_v1``, ``yolo``, ``ssd``, ``faster_rcnn``, ``fast_rcnn``,
``rcnn``) at 320 px, the three peers (torchvision's Faster R-CNN MobileNetV3-Large 320 FPN and
SSDlite320 MobileNetV3-Large, Ultralytics YOLOv8n; all from scratch) and the constant-central-box
floor, each trained for the same budget on the author's 160/40 split
(``data/train_labels.csv`` / ``data/test_labels.csv``) and measured by
:mod:`detseg.engine.bench` (whose docstring defines every column). Any ``detseg bench`` flag
given here overrides the default (``--minutes``, ``--entries``, ``--out``, ...). Writes
``tradeoff_raccoon.json``, ``.csv`` and ``.png`` to benchmarks/results; the trained detseg
checkpoints and the selective-search cache of ``rcnn`` / ``fast_rcnn`` (filled before their timed
training, ``proposals_precomputed_seconds``) go to a temporary folder unless ``--checkpoint-dir``
/ ``--proposal-cache`` name others.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, command_line  # noqa: E402

# Relative to the working directory where possible: the recorded command stays portable.
RACCOON = Path(os.path.relpath(ROOT.parent / "shared" / "datasets" / "raccoon"))
ENTRIES = ",".join([
    "yolo_v1:img=320",
    "yolo:img=320",
    "ssd:img=320",
    "faster_rcnn:img=320;backbone=alexnet_small_fpn;fpn_channels=64;representation=256",
    "fast_rcnn:img=320",
    "rcnn:img=320;crop_size=64;rois_per_image=64",
    "tv_fasterrcnn_mobilenet_v3_large_320_fpn:img=320",
    "tv_ssdlite320_mobilenet_v3_large",
    "ultralytics_yolov8n:img=320",
    "central_box",
])


def defaults(tmp: str) -> list[str]:
    return ["--data", str(RACCOON), "--train-split", str(RACCOON / "data" / "train_labels.csv"),
            "--val-split", str(RACCOON / "data" / "test_labels.csv"), "--img-size", "320",
            "--minutes", "15", "--batch", "8", "--augment", "flip", "--entries", ENTRIES,
            "--out", str(ROOT / "benchmarks" / "results"), "--checkpoint-dir", tmp,
            # rcnn / fast_rcnn: selective search once per image before the clock, as both papers
            # (and benchmarks/detection.py --warm-cache); timing never reads the cache.
            "--proposal-cache", str(Path(tmp) / "ss_cache"), "--warm-cache"]


def main(argv: list[str] | None = None) -> int:
    from detseg.cli.bench import add_parser, run

    parser = argparse.ArgumentParser(prog="tradeoff.py")
    add_parser(parser.add_subparsers(dest="verb"))
    with tempfile.TemporaryDirectory(prefix="tradeoff_ckpt_") as tmp:
        # argparse keeps the last value of a repeated flag: the caller's win over the defaults.
        args = parser.parse_args(["bench", *defaults(tmp), *(sys.argv[1:] if argv is None else argv)])
        return run(args, command=command_line())


if __name__ == "__main__":
    sys.exit(main())
