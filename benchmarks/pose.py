"""Single-person pose side by side: DeepPose regression and simple-baselines heatmaps, same budget.

    python benchmarks/pose.py --data shapes:size=128,mode=person,n=4000,n_val=300 --img-size 128 \
        --minutes 10 --models pose_regression,pose_heatmap
    python benchmarks/pose.py --data ../shared/datasets/lspet --train-range 0:900 --val-range 900:1000 \
        --person-crop --img-size 128 --minutes 14 --augment flip --models pose_regression,pose_heatmap

Methods: ``pose_regression`` (DeepPose, Toshev & Szegedy, CVPR 2014: pooled CNN features -> 14 x 2
coordinates, L2 over the labelled joints), ``mean_pose`` (the floor: the training set's mean
pose for every image, no network) and ``pose_heatmap`` (Xiao, Wu & Wei, "Simple Baselines
for Human Pose Estimation and Tracking", ECCV 2018: deconvolutions -> one heatmap per joint). Both
share the backbone, the data and the evaluator. Each entry ``NAME[:key=value;key=value]`` is a zoo
model with options (e.g. ``pose_regression:cascade_stages=1``). Every model trains for the same CPU
time (``--minutes``: the cosine schedule decays over the budget and training stops when it is
spent, see detseg/engine/schedule.py) and is evaluated on the validation images.

Splits: by default the data's own split (shapes: its val world; LSPET, which has none: a hash split
of file names, see detseg/data/split.py). ``--train-range A:B --val-range C:D`` instead take the
samples at positions ``[A, B)`` and ``[C, D)`` of the data's ``all`` split, in file order (for LSPET
the image numbers: ``0:900`` is im00001-im00900), the split the issue asks for: they become the
Trainer's ``train_split`` / ``val_split`` (index-range splits of :mod:`detseg.data.split`).
``--person-crop`` serves each sample as a square crop centred on its person box (the labelled
joints' extent plus a margin), ``--crop-scale`` (1.25) times the box's longer side, zero-padded
past the image border: the data option ``crop=person`` of :func:`detseg.data.build_dataset`
(:class:`detseg.data.adapt.PersonCrop`). Validation crops are fixed; ``--crop-jitter`` /
``--crop-shift`` jitter the training crops' scale and centre. On LSPET, whose images are 100-1000
px with the person ~150 px tall, it keeps the person from shrinking to a few pixels when the model
resizes the image to ``--img-size``. The box comes from the ground truth on validation images too
(the usual single-person protocol: the person is given).

Records: params, CPU ms/image (eval mode, batch 1, an ``--img-size`` square), PCK@0.2 (torso-
normalised, the LSP convention) overall and per joint, strict PCP, training seconds and epochs done
-> ``benchmarks/results/pose_<dataset>.json`` (``--results-dir`` writes elsewhere, e.g. for smoke
runs) and docs/BENCHMARKS.md via benchmarks/make_docs.py.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any


sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from common import append_or_replace, dataset_name, model_cost, parse_entry, print_rows, split_entries, stamp  # noqa: E402

from detseg.data.split import split_range  # noqa: E402
from detseg.engine.trainer import TrainConfig, Trainer  # noqa: E402

PCK = "PCK@0.2"


def parse_range(text: str) -> str:
    """``"900:1000"`` checked as an index-range split (a half-open range of sample positions)."""
    try:
        if split_range(text, "range") is None:
            raise ValueError(f"range: {text!r} is a split name, expected START:STOP, e.g. 0:900")
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text.strip()


def data_spec(args) -> str:
    """``--data`` plus the person-crop data options (see detseg.data's module docstring)."""
    if not args.person_crop:
        return args.data
    return (f"{args.data}:crop=person,crop_scale={args.crop_scale},crop_jitter={args.crop_jitter},"
            f"crop_shift={args.crop_shift}")


def splits(args) -> tuple[str, str]:
    """``(train_split, val_split)`` for the Trainer: the ranges, or the data's own train/val."""
    if bool(args.train_range) != bool(args.val_range):
        raise SystemExit("--train-range and --val-range go together")
    if not args.train_range:
        return "train", "val"
    (a, b), (c, d) = split_range(args.train_range), split_range(args.val_range)
    if max(a, c) < min(b, d):
        raise SystemExit(f"--train-range {args.train_range} and --val-range {args.val_range} overlap")
    return args.train_range, args.val_range


def train_budgeted(entry: str, args) -> dict[str, Any]:
    """Train one pose model for at most ``args.minutes`` of training time; its row of the table."""
    name, opts = parse_entry(entry)
    train_split, val_split = splits(args)
    with tempfile.TemporaryDirectory() as out:
        cfg = TrainConfig(model=name, data=data_spec(args), epochs=args.epochs, img_size=args.img_size,
                          batch=args.batch, lr=args.lr, model_opts=opts, out=out, device="cpu",
                          quiet=True, augment=args.augment, rotate=args.rotate, amp=args.amp,
                          time_limit=args.minutes,
                          train_split=train_split, val_split=val_split)
        trainer = Trainer(cfg)
        trainer.fit()
        final = trainer.summary()["final"]
        n_train = len(trainer.train_set)
        n_val = len(trainer.val_set) if trainer.val_set is not None else 0
        params, _, ms = model_cost(trainer.eval_model, args.img_size, args.img_size, repeat=10)
    joints = {k: round(v, 4) for k, v in final.items() if k.startswith(f"{PCK}/") and v == v}
    return {"model": entry, "params": params, "cpu_ms_per_image": round(ms, 1),
            PCK: round(final.get(PCK, float("nan")), 4), "PCP": round(final.get("PCP", float("nan")), 4),
            "train_seconds": round(trainer.train_seconds, 1), "epochs_done": final.get("epoch", 0),
            "train_images": n_train, "val_images": n_val, **joints}


def mean_pose(args) -> dict[str, Any]:
    """The floor: every validation image gets the training set's mean pose (joint positions as
    fractions of the image side, averaged over the labelled joints), scored by the same evaluator."""
    import torch

    from detseg.engine.trainer import build_datasets
    from detseg.evaluation.keypoints import PoseEvaluator

    train_split, val_split = splits(args)
    cfg = TrainConfig(model="pose_heatmap", data=data_spec(args), augment="none", device="cpu",
                      train_split=train_split, val_split=val_split)
    train, val = build_datasets(cfg, "pose")
    total, count = None, None
    for i in range(len(train)):
        image, t = train[i]
        kp = t["keypoints"][0].double()  # [K, 3]: the first person
        H, W = image.shape[-2:]
        frac = kp[:, :2] / torch.tensor([W, H], dtype=torch.float64)
        seen = (kp[:, 2] > 0).double()[:, None]
        total = frac * seen if total is None else total + frac * seen
        count = seen if count is None else count + seen
    mean = total / count.clamp(min=1)
    ev = PoseEvaluator(keypoint_names=getattr(val, "keypoint_names", None))
    for i in range(len(val)):
        image, t = val[i]
        H, W = image.shape[-2:]
        xy = mean * torch.tensor([W, H], dtype=torch.float64)
        kps = torch.cat([xy, torch.ones(len(xy), 1, dtype=torch.float64)], 1)[None]
        ev.update([{"keypoints": kps}], [t])
    final = ev.compute()
    joints = {k: round(v, 4) for k, v in final.items() if k.startswith(f"{PCK}/") and v == v}
    return {"model": "mean_pose", "params": 0, "cpu_ms_per_image": 0.0,
            PCK: round(final.get(PCK, float("nan")), 4), "PCP": round(final.get("PCP", float("nan")), 4),
            "train_seconds": 0.0, "epochs_done": 0, "train_images": len(train), "val_images": len(val),
            **joints}


def split_text(args) -> str:
    split = f"train {args.train_range}, val {args.val_range}" if args.train_range else "the data's train/val"
    if args.person_crop:
        split += f", person crops x{args.crop_scale:g}"
        if args.crop_jitter or args.crop_shift:
            split += f" (train jitter {args.crop_jitter:g}/{args.crop_shift:g})"
    return split


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--models", default="pose_regression,pose_heatmap")
    p.add_argument("--img-size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=200, help="schedule length (the time budget cuts it)")
    p.add_argument("--minutes", type=float, default=10.0, help="CPU training budget per model")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--augment", default="full", help="full | flip | none (flip swaps left/right joints)")
    p.add_argument("--rotate", type=float, default=0.0, help="training rotation in [-DEG, DEG]")
    p.add_argument("--amp", action="store_true", help="bf16 autocast (faster on CPUs with AVX512-BF16)")
    p.add_argument("--train-range", type=parse_range, help="START:STOP positions of the all split")
    p.add_argument("--val-range", type=parse_range, help="START:STOP positions of the all split")
    p.add_argument("--person-crop", action="store_true", help="square crops centred on each person box")
    p.add_argument("--crop-scale", type=float, default=1.25, help="person crop side / box side")
    p.add_argument("--crop-jitter", type=float, default=0.0, help="training crops: relative scale jitter")
    p.add_argument("--crop-shift", type=float, default=0.0, help="training crops: centre shift / side")
    p.add_argument("--results-dir", type=Path, help="write the JSON here instead of benchmarks/results")
    args = p.parse_args(argv)
    if args.results_dir is not None:
        common.RESULTS = args.results_dir
    name = f"pose_{dataset_name(args.data)}"
    splits(args)  # flag errors before any training
    rows = []
    for entry in split_entries(args.models):
        row = mean_pose(args) if entry == "mean_pose" else train_budgeted(entry, args)
        record = stamp({"benchmark": name, "dataset": args.data, "split": split_text(args), **row,
                        "budget_minutes": args.minutes, "img_size": args.img_size}, "torch")
        path = append_or_replace(name, [record], key=("benchmark", "model", "dataset", "split"))
        rows.append(record)
        print({k: v for k, v in row.items() if not k.startswith(f"{PCK}/")}, flush=True)
    if rows:
        print_rows(rows, ("model", "params", "cpu_ms_per_image", PCK, "PCP", "train_seconds",
                          "epochs_done"))
        joints = [k for k in rows[0] if k.startswith(f"{PCK}/")]
        print_rows([{"model": r["model"], **{j.split("/", 1)[1]: r.get(j, "") for j in joints}}
                    for r in rows], ("model", *(j.split("/", 1)[1] for j in joints)))
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
