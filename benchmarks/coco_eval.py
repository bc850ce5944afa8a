"""detseg's COCO evaluator against pycocotools: same inputs, same process, seconds and stat difference.

    python benchmarks/coco_eval.py --images 500 --seed 0 --repeat 3

For each task (detection -> bbox; instance -> bbox + segm; keypoints -> bbox + keypoints) one
generated case (``detseg.evaluation.synthetic.make_case``) is evaluated by

- ``detseg``: ``build_evaluator(task, classes)``, ``update(predictions, targets)``, ``compute()``
  -- everything a user pays: conversion of the tensors, building the COCO ground truth and
  detections, evaluate, accumulate, summarize, plus the VOC AP50 and PCK detseg adds;
- ``pycocotools``: the same conversion (masks RLE-encoded by pycocotools' own encoder) and the
  same COCO dicts (built once per case), then pycocotools' evaluate / accumulate / summarize for
  each IoU type;
- ``faster-coco-eval (eval only)``: the COCO dicts -> stats stage of the detseg path alone, to
  show where the time goes.

Each path runs once untimed (imports, lazy initialisation), then ``--repeat`` times interleaved;
the best time is reported (``seconds``), the median beside it. ``ratio`` is pycocotools' seconds
divided by the row's seconds (the speed-up). ``max_stat_diff`` is the largest absolute difference
of any COCO summary stat from pycocotools'. Results go to ``benchmarks/results/coco_eval.json``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any, Callable

import numpy as np
import torch

from common import append_or_replace, print_rows, stamp

from detseg.evaluation import build_evaluator
from detseg.evaluation.coco_api import (STAT_KEYS, coco_detections, coco_ground_truth, make_record,
                                    run_cocoeval)
from detseg.evaluation.keypoints import default_sigmas
from detseg.evaluation.reference import pycocotools_encoder, pycocotools_stats
from detseg.evaluation.synthetic import make_case

TASKS: dict[str, dict[str, Any]] = {
    "detection": {"iou_types": ("bbox",), "case": {}},
    "instance": {"iou_types": ("bbox", "segm"), "case": {"masks": True, "size": (48, 128)}},
    "keypoints": {"iou_types": ("bbox", "keypoints"), "case": {"keypoints": 17, "num_classes": 2}},
}


def detseg_path(task: str, preds: list, targets: list, classes: list[str]) -> np.ndarray:
    ev = build_evaluator(task, classes)
    ev.update(preds, targets)
    m = ev.compute()
    return np.array([m[k] for t in TASKS[task]["iou_types"] for k in STAT_KEYS[t]])


def _records(task: str, preds: list, targets: list, classes: list[str],
             encoder: Any = None) -> list[dict]:
    return [make_record(p, t, len(classes), masks=task == "instance",
                        keypoints=task == "keypoints", encoder=encoder)
            for p, t in zip(preds, targets)]


def pycocotools_path(task: str, preds: list, targets: list, classes: list[str]) -> np.ndarray:
    # Masks are encoded with pycocotools' own encoder: each side pays its own library's price.
    records = _records(task, preds, targets, classes, pycocotools_encoder())
    out = []
    for iou_type in TASKS[task]["iou_types"]:
        gt = coco_ground_truth(records, classes, iou_type)
        out.append(pycocotools_stats(gt, coco_detections(records, iou_type), iou_type,
                                     default_sigmas(17) if iou_type == "keypoints" else None))
    return np.concatenate(out)


def faster_only(task: str, dicts: list[tuple[str, dict, list]]) -> np.ndarray:
    sig = default_sigmas(17)
    return np.concatenate([run_cocoeval(gt, dt, t, sig if t == "keypoints" else None)[0]
                           for t, gt, dt in dicts])


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def bench_task(task: str, n_images: int, seed: int, repeat: int) -> list[dict[str, Any]]:
    preds, targets, classes = make_case(n_images, seed=seed, **TASKS[task]["case"])
    records = _records(task, preds, targets, classes)

    def fresh_dicts() -> list[tuple[str, dict, list]]:
        # faster-coco-eval annotates the dicts it reads: every run gets new ones (not timed).
        return [(t, coco_ground_truth(records, classes, t), coco_detections(records, t))
                for t in TASKS[task]["iou_types"]]

    small = make_case(20, seed=seed + 1, **TASKS[task]["case"])
    detseg_path(task, *small)  # warm-up: imports and first-call initialisation
    pycocotools_path(task, *small)

    times: dict[str, list[float]] = {"detseg": [], "pycocotools": [], "faster": []}
    stats: dict[str, np.ndarray] = {}
    for _ in range(repeat):
        t, stats["detseg"] = timed(lambda: detseg_path(task, preds, targets, classes))
        times["detseg"].append(t)
        t, stats["pycocotools"] = timed(lambda: pycocotools_path(task, preds, targets, classes))
        times["pycocotools"].append(t)
        dicts = fresh_dicts()
        t, stats["faster"] = timed(lambda: faster_only(task, dicts))
        times["faster"].append(t)

    ref_s = min(times["pycocotools"])
    n_obj = sum(len(t["boxes"]) for t in targets)
    n_det = sum(len(p["boxes"]) for p in preds)
    case = TASKS[task]["case"]
    dataset = f"synthetic (make_case seed {seed}{', masks' if case.get('masks') else ''}" \
              f"{', 17 keypoints' if case.get('keypoints') else ''})"
    names = {"detseg": "detseg", "pycocotools": "pycocotools",
             "faster": "faster-coco-eval (eval only)"}
    rows = []
    for key, name in names.items():
        best = min(times[key])
        rows.append(stamp({
            "benchmark": "coco_eval", "evaluator": name, "task": task,
            "iou_types": "+".join(TASKS[task]["iou_types"]), "dataset": dataset,
            "n_images": n_images, "n_objects": n_obj, "n_detections": n_det,
            "seconds": round(best, 4), "median_seconds": round(statistics.median(times[key]), 4),
            "repeat": repeat, "ratio": round(ref_s / best, 2),
            "max_stat_diff": float(np.abs(stats[key] - stats["pycocotools"]).max()),
        }, "torch", "numpy", "faster-coco-eval", "pycocotools"))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=500, help="images per generated case")
    ap.add_argument("--seed", type=int, default=0, help="seed of the generated case")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per path (best is reported)")
    ap.add_argument("--tasks", default="detection,instance,keypoints",
                    help="comma-separated subset of detection, instance, keypoints")
    ap.add_argument("--no-write", action="store_true", help="print only, do not write results")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    rows: list[dict[str, Any]] = []
    for task in args.tasks.split(","):
        if task not in TASKS:
            ap.error(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
        rows += bench_task(task, args.images, args.seed, args.repeat)

    print_rows(rows, ("task", "evaluator", "n_images", "seconds", "median_seconds", "ratio",
                      "max_stat_diff"))
    print(f"({rows[0]['machine']})")
    if not args.no_write:
        path = append_or_replace("coco_eval", rows, key=("benchmark", "evaluator", "task"))
        print(f"wrote {path}")
    worst = min(r["ratio"] for r in rows if r["evaluator"] == "detseg")
    diff = max(r["max_stat_diff"] for r in rows)
    print(f"detseg speed-up over pycocotools: >= {worst}x; max stat difference {diff:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
