"""Single-person pose side by side: DeepPose regression and simple-baselines heatmaps, same budget.

    python benchmarks/pose.py --data shapes:size=128,mode=person,n=4000,n_val=300 --img-size 128 \
        --minutes 10 --models pose_regression,pose_heatmap
    python benchmarks/pose.py --data ../shared/datasets/lspet --train-range 0:900 --val-range 900:1000 \
        --person-crop --img-size 128 --minutes 14 --augment flip --models pose_regression,pose_heatmap

Methods: ``pose_regression`` (DeepPose, Toshev & Szegedy, CVPR 2014: pooled CNN features -> 14 x 2
coordinates, L2 over the labelled joints) and ``pose_heatmap`` (Xiao, Wu & Wei, "Simple Baselines
for Human Pose Estimation and Tracking", ECCV 2018: deconvolutions -> one heatmap per joint). Both
share the backbone, the data and the evaluator. Each entry ``NAME[:key=value;key=value]`` is a zoo
model with options (e.g. ``pose_regression:cascade_stages=1``). Every model trains for the same CPU
time (``--minutes``: the cosine schedule decays over the budget and training stops when it is
spent, see detseg/engine/schedule.py) and is evaluated on the validation images.

Splits: by default the data's own split (shapes: its val world; LSPET, which has none: a hash split
of file names, see detseg/data/split.py). ``--train-range A:B --val-range C:D`` instead take the
samples at positions ``[A, B)`` and ``[C, D)`` of the data's ``all`` split, in file order (for LSPET
the image numbers: ``0:900`` is im00001-im00900), the split the issue asks for.
``--person-crop`` serves each sample as a context crop around its person box (the labelled joints'
extent plus a margin), the box covering a fixed-per-image 30-80% of the crop side --
:class:`detseg.data.adapt.ObjectCrops`, the crops the library already serves for multi-person data.
On LSPET, whose images are 100-1000 px with the person ~150 px tall, it keeps the person from
shrinking to a few pixels when the model resizes the image to ``--img-size``. The box comes from
the ground truth on validation images too (the usual single-person protocol: the person is given).

Records: params, CPU ms/image (eval mode, batch 1, an ``--img-size`` square), PCK@0.2 (torso-
normalised, the LSP convention) overall and per joint, strict PCP, training seconds and epochs done
-> ``benchmarks/results/pose_<dataset>.json`` (``--results-dir`` writes elsewhere, e.g. for smoke
runs) and docs/BENCHMARKS.md via benchmarks/make_docs.py.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from common import append_or_replace, print_rows, stamp  # noqa: E402

from detseg.data.base import DetsegDataset  # noqa: E402
from detseg.engine.trainer import TrainConfig, Trainer  # noqa: E402

PCK = "PCK@0.2"


def parse_entry(entry: str) -> tuple[str, dict[str, Any]]:
    """``"name:key=value;key=value"`` -> ``("name", {key: yaml value})``."""
    import yaml

    name, _, rest = entry.partition(":")
    opts = {}
    for item in filter(None, re.split(r"[;]", rest)):
        k, _, v = item.partition("=")
        opts[k] = yaml.safe_load(v)
    return name, opts


def dataset_name(data: str) -> str:
    if data.startswith("shapes"):
        return "shapes"
    return Path(data.rstrip("/")).name.lower()


def parse_range(text: str) -> tuple[int, int]:
    """``"900:1000"`` -> ``(900, 1000)`` (a half-open range of sample positions)."""
    lo, sep, hi = text.partition(":")
    try:
        a, b = int(lo), int(hi)
    except ValueError:
        raise argparse.ArgumentTypeError(f"range {text!r}: expected START:STOP, e.g. 0:900") from None
    if not sep or not 0 <= a < b:
        raise argparse.ArgumentTypeError(f"range {text!r}: expected 0 <= START < STOP")
    return a, b


class IndexRange(DetsegDataset):
    """Samples ``[start, stop)`` of a reader, in its order; names, crops' annotations shared.

    Exposes what :class:`~detseg.data.adapt.ObjectCrops` reads of a file reader (``files``,
    ``sizes``, ``annotation``), so a range can be cropped like a whole reader.
    """

    def __init__(self, inner: DetsegDataset, start: int, stop: int):
        super().__init__(transforms=None)
        if stop > len(inner):
            raise ValueError(f"{inner.root}: range {start}:{stop} past its {len(inner)} samples")
        self.inner, self.start, self.stop = inner, start, stop
        self.name, self.root = inner.name, inner.root
        self.task = getattr(inner, "task", None)
        self.target_keys = getattr(inner, "target_keys", ())
        self.classes, self.seg_classes = list(inner.classes), list(inner.seg_classes)
        self.keypoint_names, self.flip_pairs = list(inner.keypoint_names), list(inner.flip_pairs)
        self.split = f"{start}:{stop}"
        self.files = list(getattr(inner, "files", [])[start:stop])
        self.sizes = list(getattr(inner, "sizes", [])[start:stop])
        mine = set(self.files)
        self.problems = [p for p in inner.problems if p.file in mine]

    def __len__(self) -> int:
        return self.stop - self.start

    def load(self, index: int) -> tuple[Tensor, dict[str, Any]]:
        return self.inner.load(self.start + index)

    def annotation(self, index: int) -> dict[str, Any]:
        return self.inner.annotation(self.start + index)  # type: ignore[attr-defined]


def range_datasets(args) -> tuple[DetsegDataset, DetsegDataset]:
    """Train and val sets of ``--train-range`` / ``--val-range`` over the ``all`` split."""
    from detseg.data import build_dataset

    full = build_dataset(args.data, split="all", task="pose")
    train, val = IndexRange(full, *args.train_range), IndexRange(full, *args.val_range)
    if max(train.start, val.start) < min(train.stop, val.stop):
        raise SystemExit(f"--train-range {train.split} and --val-range {val.split} overlap")
    return train, val


def person_crops(ds: DetsegDataset) -> DetsegDataset:
    from detseg.data.adapt import ObjectCrops

    return ObjectCrops(ds, task="pose", need_keypoints=True)


def build_data(args) -> tuple[DetsegDataset, DetsegDataset] | None:
    """The benchmark's own train/val sets, or None to let the Trainer build them from ``--data``."""
    from detseg.data import build_dataset

    if not (args.train_range or args.val_range or args.person_crop):
        return None
    if args.train_range and args.val_range:
        train, val = range_datasets(args)
    elif args.train_range or args.val_range:
        raise SystemExit("--train-range and --val-range go together")
    else:
        train = build_dataset(args.data, split="train", task="pose")
        val = build_dataset(args.data, split="val", task="pose")
    if args.person_crop:
        train, val = person_crops(train), person_crops(val)
    return train, val


@contextlib.contextmanager
def given_datasets(data: tuple[DetsegDataset, DetsegDataset] | None, augment: str) -> Iterator[None]:
    """Have :class:`Trainer` train and validate on ``data`` instead of building it from its config.

    The Trainer takes no datasets (it calls ``detseg.engine.trainer.build_datasets``), so that
    function is swapped for the duration; the training set gets the same augmentation
    ``build_datasets`` would give it.
    """
    import detseg.engine.trainer as trainer_module
    from detseg.data.transforms import build_transforms

    if data is None:
        yield
        return
    train, val = data
    train.transforms = None if augment == "none" else build_transforms(
        "pose", train=True, flip_pairs=train.flip_pairs, **trainer_module.AUGMENT[augment])
    original = trainer_module.build_datasets
    trainer_module.build_datasets = lambda cfg, task: (train, val)
    try:
        yield
    finally:
        trainer_module.build_datasets = original


def cost(model, img_size: int, repeat: int = 10) -> tuple[int, float]:
    """(params, CPU ms per image) of ``model`` in eval mode, batch 1, an ``img_size`` square."""
    model = model.to("cpu").eval()
    params = sum(p.numel() for p in model.parameters())
    image = [torch.rand(3, img_size, img_size)]
    with torch.no_grad():
        for _ in range(2):  # warm-up: first-call allocations and oneDNN kernel choice
            model(image)
        t = time.perf_counter()
        for _ in range(repeat):
            model(image)
    return params, (time.perf_counter() - t) / repeat * 1000


def train_budgeted(entry: str, args, data) -> dict[str, Any]:
    """Train one pose model for at most ``args.minutes`` of training time; its row of the table."""
    name, opts = parse_entry(entry)
    with tempfile.TemporaryDirectory() as out, given_datasets(data, args.augment):
        cfg = TrainConfig(model=name, data=args.data, epochs=args.epochs, img_size=args.img_size,
                          batch=args.batch, lr=args.lr, model_opts=opts, out=out, device="cpu",
                          quiet=True, augment=args.augment, amp=args.amp, time_limit=args.minutes)
        trainer = Trainer(cfg)
        trainer.fit()
        final = trainer.summary()["final"]
        n_train = len(trainer.train_set)
        n_val = len(trainer.val_set) if trainer.val_set is not None else 0
        params, ms = cost(trainer.eval_model, args.img_size)
    joints = {k: round(v, 4) for k, v in final.items() if k.startswith(f"{PCK}/") and v == v}
    return {"model": entry, "params": params, "cpu_ms_per_image": round(ms, 1),
            PCK: round(final.get(PCK, float("nan")), 4), "PCP": round(final.get("PCP", float("nan")), 4),
            "train_seconds": round(trainer.train_seconds, 1), "epochs_done": final.get("epoch", 0),
            "train_images": n_train, "val_images": n_val, **joints}


def split_text(args) -> str:
    split = (f"train {args.train_range[0]}:{args.train_range[1]}, val {args.val_range[0]}:{args.val_range[1]}"
             if args.train_range else "the data's train/val")
    return split + (", person crops" if args.person_crop else "")


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
    p.add_argument("--amp", action="store_true", help="bf16 autocast (faster on CPUs with AVX512-BF16)")
    p.add_argument("--train-range", type=parse_range, help="START:STOP positions of the all split")
    p.add_argument("--val-range", type=parse_range, help="START:STOP positions of the all split")
    p.add_argument("--person-crop", action="store_true", help="context crops around each person box")
    p.add_argument("--results-dir", type=Path, help="write the JSON here instead of benchmarks/results")
    args = p.parse_args(argv)
    if args.results_dir is not None:
        common.RESULTS = args.results_dir
    name = f"pose_{dataset_name(args.data)}"
    data = build_data(args)
    rows = []
    for entry in filter(None, args.models.split(",")):
        row = train_budgeted(entry, args, data)
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
