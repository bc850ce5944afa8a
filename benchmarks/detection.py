"""Region-based detectors side by side: each trained with the same CPU budget, evaluated on val.

    python benchmarks/detection.py --data shapes:size=128,mode=scene,n=2000,n_val=200 --img-size 128 \
        --minutes 15 --models fast_rcnn,rcnn:crop_size=64 --proposal-cache /tmp/ss_cache
    python benchmarks/detection.py --data ../shared/datasets/raccoon --img-size 320 --minutes 15 \
        --models fast_rcnn,rcnn:crop_size=64 --augment flip --proposal-cache /tmp/ss_cache
    python benchmarks/detection.py --data ../shared/datasets/bccd --img-size 320 --minutes 15 \
        --models fast_rcnn,rcnn:crop_size=64 --augment flip --proposal-cache /tmp/ss_cache

Models: ``fast_rcnn`` (Girshick, ICCV 2015), ``rcnn`` (Girshick et al., CVPR 2014) and
``sliding_window_det`` from the zoo (:mod:`detseg.models.detection.builders`); each entry
``NAME[:key=value;key=value]`` is a zoo model with builder options (e.g. ``rcnn:crop_size=64``,
``fast_rcnn:roi=align``). Every model trains for the same CPU time (``--minutes``: the cosine
schedule decays over the budget and training stops when it is spent, see
detseg/engine/schedule.py) and is evaluated on the validation split by the COCO evaluator of
:mod:`detseg.evaluation` (``mAP50``, ``mAP`` = AP@[.5:.95], VOC AP50 per class).
``--proposal-cache DIR`` gives R-CNN and Fast R-CNN an on-disk selective-search cache (keyed by
image content), so each distinct image is searched once, not once per epoch; with augmentation
every jittered image is new to the cache. ``--warm-cache`` fills it for every (un-augmented)
train and val image before each model's timed training, as both papers precomputed proposals
offline: the budget then pays for learning, not for the search (the time is recorded apart).
``--train-split`` / ``--val-split`` take a split name, an index range ``A:B`` of the data's
``all`` split or a ``.txt``/``.csv`` list of image names (:mod:`detseg.data.split`).
``--svm``: after an ``rcnn`` entry trains, R-CNN's per-class SVMs are fitted on the un-augmented
train split with hard-negative mining (:mod:`detseg.models.detection.svm`, the paper's settings) and a
second row ``<entry>+svm`` records the same network scored by the SVMs (fit time apart).

Records: params, CPU ms/image (eval mode, batch 1, ``torch.inference_mode``, on the first
``--time-images`` val images, proposals included and never served from the cache), mAP50, mAP,
AP50 per class, training seconds and epochs done -> ``benchmarks/results/detection_<dataset>.json``
(``--results-dir`` writes elsewhere, e.g. for smoke runs) and docs/BENCHMARKS.md via
benchmarks/make_docs.py.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from common import append_or_replace, dataset_name, parse_entry, print_rows, split_entries, stamp  # noqa: E402

from detseg.engine.bench_measure import proposal_cache_off, warm_proposal_cache  # noqa: E402,F401
from detseg.engine.trainer import TrainConfig, Trainer  # noqa: E402

CACHED = ("rcnn", "fast_rcnn")  # builders with a selective-search proposal_cache option
TASK_EXTRAS = ("mask_mAP50", "mask_mAP", "kp_mAP50", "kp_mAP")


def cpu_ms_per_image(model, dataset, n: int) -> float:
    """Mean CPU ms of ``model([image])`` over the first ``n`` images of ``dataset``, eval mode,
    proposals computed afresh (any proposal cache switched off while timing); warm-up untimed."""
    model = model.to("cpu").eval()
    with proposal_cache_off(model):
        images = [dataset[i][0] for i in range(min(n, len(dataset)))]
        if not images:
            return float("nan")
        with torch.inference_mode():
            model([images[0]])
            t = time.perf_counter()
            for image in images:
                model([image])
            return (time.perf_counter() - t) / len(images) * 1000


def train_budgeted(entry: str, args) -> list[dict[str, Any]]:
    """Train one detector for at most ``args.minutes`` of training time; its rows of the table
    (two for ``rcnn`` with ``--svm``: softmax and SVM scoring)."""
    name, opts = parse_entry(entry)
    if args.proposal_cache and name in CACHED:
        opts.setdefault("proposal_cache", str(args.proposal_cache))
    with tempfile.TemporaryDirectory() as tmp:
        out = str(args.runs_dir) if args.runs_dir else tmp
        cfg = TrainConfig(model=name, data=args.data, epochs=args.epochs, img_size=args.img_size,
                          batch=args.batch, lr=args.lr, model_opts=opts, out=out, device="cpu",
                          quiet=True, augment=args.augment, amp=args.amp, time_limit=args.minutes,
                          train_split=args.train_split, val_split=args.val_split, seed=args.seed,
                          val_every=args.val_every)
        trainer = Trainer(cfg)
        warm_s, warmed = (warm_proposal_cache(trainer.eval_model, (trainer.train_set, trainer.val_set))
                          if args.warm_cache else (0.0, 0))
        if warmed:
            print(f"{entry}: proposals of {warmed} images precomputed in {warm_s:.0f} s", flush=True)
        trainer.fit()
        final = trainer.summary()["final"]
        n_train = len(trainer.train_set)
        n_val = len(trainer.val_set) if trainer.val_set is not None else 0
        params = sum(p.numel() for p in trainer.eval_model.parameters())
        ms = cpu_ms_per_image(trainer.eval_model, trainer.val_set, args.time_images) if n_val else float("nan")
        row = _row(entry, final, params, ms, trainer.train_seconds, warm_s, n_train, n_val)
        if not (args.svm and name == "rcnn" and n_val):
            return [row]
        return [row, svm_row(entry, trainer, row, args)]


def _row(entry: str, metrics: dict[str, Any], params: int, ms: float, train_s: float, warm_s: float,
         n_train: int, n_val: int) -> dict[str, Any]:
    per_class = {k: round(v, 4) for k, v in metrics.items() if k.startswith("AP50/") and v == v}
    nan = float("nan")
    return {"model": entry, "params": params, "cpu_ms_per_image": round(ms, 1),
            "mAP50": round(metrics.get("mAP50", nan), 4), "mAP": round(metrics.get("mAP", nan), 4),
            "VOC_mAP50": round(metrics.get("VOC_mAP50", nan), 4),
            "train_seconds": round(train_s, 1), "epochs_done": metrics.get("epoch", 0),
            "proposals_precomputed_seconds": round(warm_s, 1), "train_images": n_train,
            "val_images": n_val, **per_class,
            # Mask R-CNN's mask AP and Keypoint R-CNN's keypoint AP, for the tasks that have them.
            **{k: round(metrics[k], 4) for k in TASK_EXTRAS if k in metrics}}


def svm_row(entry: str, trainer: Trainer, row: dict[str, Any], args) -> dict[str, Any]:
    """Fit R-CNN's SVMs on the trained network (un-augmented train split); the ``+svm`` row."""
    from detseg.data import build_dataset
    from detseg.models.detection.svm import SVMConfig, fit_svms, report_table
    from detseg.engine.evaluate import evaluate

    model = trainer.eval_model
    train = build_dataset(args.data, split=args.train_split, task="detection")  # the trainer's split
    report = fit_svms(model, train, SVMConfig(C=args.svm_c), progress=False)
    print(f"{entry}+svm: fc7 features of {report.images} images {report.feature_seconds:.0f} s, "
          f"mining + fits {report.mining_seconds:.0f} s", flush=True)
    print(report_table(report), flush=True)
    metrics, _ = evaluate(model, trainer.val_set, trainer.task, batch=args.batch, device="cpu", quiet=True)
    metrics["epoch"] = row["epochs_done"]
    out = _row(f"{entry}+svm", metrics, row["params"], row["cpu_ms_per_image"], trainer.train_seconds,
               row["proposals_precomputed_seconds"], row["train_images"], row["val_images"])
    out["svm_seconds"] = round(report.feature_seconds + report.mining_seconds, 1)
    out["svm_C"] = args.svm_c
    out["softmax_mAP50"], out["softmax_mAP"] = row["mAP50"], row["mAP"]
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--models", default="fast_rcnn,rcnn:crop_size=64")
    p.add_argument("--img-size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=200, help="schedule length (the time budget cuts it)")
    p.add_argument("--minutes", type=float, default=15.0, help="CPU training budget per model")
    p.add_argument("--val-every", type=int, default=1, metavar="N",
                   help="validate every N epochs (the final epoch always is; the table uses it)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--augment", default="flip", help="full | flip | none")
    p.add_argument("--amp", action="store_true", help="bf16 autocast (faster on CPUs with AVX512-BF16)")
    p.add_argument("--train-split", default="train", help="split name, index range A:B or .txt/.csv list")
    p.add_argument("--val-split", default="val", help="split name, index range A:B or .txt/.csv list")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--proposal-cache", type=Path, default=None, help="selective-search cache folder")
    p.add_argument("--warm-cache", action="store_true",
                   help="with --proposal-cache: compute every image's proposals before the timed training")
    p.add_argument("--svm", action="store_true",
                   help="rcnn entries: also fit R-CNN's per-class SVMs and record an '+svm' row")
    p.add_argument("--svm-c", type=float, default=1e-3, help="the SVMs' C (default %(default)s, the paper's)")
    p.add_argument("--runs-dir", type=Path, default=None,
                   help="keep the run folders (checkpoints, curves) here instead of a temporary folder")
    p.add_argument("--time-images", type=int, default=10, help="val images timed for cpu_ms_per_image")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--results-dir", type=Path, help="write the JSON here instead of benchmarks/results")
    args = p.parse_args(argv)
    if args.results_dir is not None:
        common.RESULTS = args.results_dir
    if args.threads:
        torch.set_num_threads(args.threads)
    name = f"detection_{dataset_name(args.data)}"
    split = f"train {args.train_split}, val {args.val_split}"
    rows, path = [], None
    for entry in split_entries(args.models):
        for row in train_budgeted(entry, args):
            record = stamp({"benchmark": name, "dataset": args.data, "split": split, **row,
                            "budget_minutes": args.minutes, "img_size": args.img_size,
                            "augment": args.augment, "amp": args.amp}, "torch")
            path = append_or_replace(name, [record], key=("benchmark", "model", "dataset", "split"))
            rows.append(record)
            print({k: v for k, v in row.items() if not k.startswith("AP50/")}, flush=True)
    if rows:
        print_rows(rows, ("model", "params", "cpu_ms_per_image", "mAP50", "mAP", "train_seconds",
                          "epochs_done"))
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
