"""Sliding-window segmentation window by window vs the same classifier convolutionalized: time, same labels.

    python benchmarks/sliding_window.py --repeat 3 --train-steps 20

CS231n 2017 lecture 11: classifying the window around every pixel "works but is very inefficient:
not reusing shared features between overlapping patches"; the fully convolutional form of the same
classifier computes every window's scores in one pass. On one 128x128 image of the shapes world
(``shapes:size=128,n=4``, val split), one ``sliding_window_seg`` model (zoo defaults: 17x17
windows, 7 unpadded 3x3 convs of width 32, two fully connected layers run as convolutions;
briefly trained on the split's images with ``--train-steps`` Adam steps so the labels are not
arbitrary) predicts the image twice per round, interleaved:

- ``mode=window``: all 128 * 128 windows extracted (a strided view), classified in chunks of
  4096, each score written at its window's centre (:func:`detseg.models.segmentation.sliding_window.window_logits`);
- ``mode=fcn``: the convolutionalized network, one pass over the padded image.

Both time the whole ``model([image])`` call a user pays (preprocessing and postprocessing
included, identical for both). Each mode runs once untimed (the window path on a small crop), then
``--repeat`` times; the best time is ``seconds``, ``ratio`` is the window path's seconds over the
row's (the FCN's speed-up). The two logits must agree (max abs difference < 1e-4) and the labels
must be identical, or the script fails. Results go to ``benchmarks/results/sliding_window.json``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

import torch

from common import append_or_replace, print_rows, stamp

from detseg.data import build_dataset
from detseg.models.segmentation.sliding_window import build_sliding_window_seg

SPEC = "shapes:size=128,n=4"


def brief_training(model: torch.nn.Module, dataset: Any, steps: int, lr: float = 3e-3) -> None:
    """``steps`` Adam steps on all the dataset's images at once (the FCN path, as training is)."""
    if steps <= 0:
        return
    images, targets = zip(*(dataset[i] for i in range(len(dataset))))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        loss = model(list(images), list(targets)).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


def predict(model: Any, image: torch.Tensor, mode: str) -> tuple[float, dict[str, torch.Tensor]]:
    model.mode = mode
    t0 = time.perf_counter()
    with torch.no_grad():
        pred = model([image], with_logits=True).predictions[0]
    return time.perf_counter() - t0, pred


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per path (best is reported)")
    ap.add_argument("--train-steps", type=int, default=20,
                    help="Adam steps on the split's images before timing (0: random init)")
    ap.add_argument("--image", type=int, default=0, help="index of the timed val image")
    ap.add_argument("--seed", type=int, default=0, help="seed of the model's initial weights")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--no-write", action="store_true", help="print only, do not write results")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    dataset = build_dataset(SPEC, split="val", task="semantic")
    classes = list(getattr(dataset, "seg_classes", None) or ["background", *dataset.classes])
    torch.manual_seed(args.seed)
    model = build_sliding_window_seg(classes, img_size=128)
    brief_training(model, dataset, args.train_steps)
    model.eval()
    image = dataset[args.image][0]

    predict(model, image, "fcn")  # warm-up: first-call initialisation, allocator
    predict(model, image[:, :32, :32], "window")
    times: dict[str, list[float]] = {"window": [], "fcn": []}
    preds: dict[str, dict[str, torch.Tensor]] = {}
    for _ in range(args.repeat):
        for mode in times:
            t, preds[mode] = predict(model, image, mode)
            times[mode].append(t)

    diff = float((preds["window"]["sem_seg_logits"] - preds["fcn"]["sem_seg_logits"]).abs().max())
    same = bool(torch.equal(preds["window"]["sem_seg"], preds["fcn"]["sem_seg"]))
    differing = int((preds["window"]["sem_seg"] != preds["fcn"]["sem_seg"]).sum())
    ref_s = min(times["window"])
    clf = model.classifier
    rows = []
    for mode in ("window", "fcn"):
        best = min(times[mode])
        rows.append(stamp({
            "benchmark": "sliding_window", "model": f"sliding_window_seg (mode={mode})",
            "dataset": f"{SPEC} val[{args.image}]", "image_size": "x".join(map(str, image.shape[1:])),
            "patch": clf.patch, "width": clf.feature_channels, "hidden": clf.fc1.out_features,
            "train_steps": args.train_steps, "threads": args.threads,
            "seconds": round(best, 4), "median_seconds": round(statistics.median(times[mode]), 4),
            "repeat": args.repeat, "ratio": round(ref_s / best, 1), "same_labels": same,
            "max_logit_diff": diff,
        }, "torch"))

    print_rows(rows, ("model", "seconds", "median_seconds", "ratio", "same_labels",
                      "max_logit_diff"))
    print(f"({rows[0]['machine']}; {differing} pixels with different labels)")
    if not same or diff >= 1e-4:
        print(f"FAILED: the two paths disagree (max logit diff {diff:.3g}, {differing} labels)",
              file=sys.stderr)
        return 1
    if not args.no_write:
        path = append_or_replace("sliding_window", rows, key=("benchmark", "model", "dataset"))
        print(f"wrote {path}")
    print(f"convolutionalized FCN speed-up over window by window: {rows[1]['ratio']}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
