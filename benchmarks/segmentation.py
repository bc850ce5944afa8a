"""Semantic segmentation side by side: every variant trained with the same budget on one dataset.

    python benchmarks/segmentation.py --data ../shared/datasets/camvid --img-size 240 \
        --minutes 10 --models fcn,fcn8s,segnet,deeplab,unet_smp
    python benchmarks/segmentation.py --data shapes:size=128,n=4000,n_val=300 --img-size 128 \
        --minutes 10 --models fcn:upsample=nearest,fcn:upsample=bed_of_nails,fcn:upsample=max_unpool

Each entry ``NAME[:key=value;key=value]`` is a zoo model with options (``unet_smp`` is the peer:
segmentation_models_pytorch's Unet with a resnet18 encoder, random init — `pip install
segmentation-models-pytorch`, the benchmark extra). Every model trains for the same CPU time
(``--minutes``: the cosine schedule decays over the budget and training stops when it is spent,
see detseg/engine/schedule.py) and is evaluated on the validation split.
``--oracle-strides 8,4,2`` adds the resolution ceiling of a model whose scores live at stride
``s``: the ground truth one-hot, average-pooled by ``s`` and upsampled bilinearly back (as FCN-8s
does with its scores), then argmax — how much of the val labels a stride-``s`` score map can
express at all (thin parts vanish first).
Records: params, GFLOPs per image (torch's FlopCounterMode, at ``--img-size``), CPU ms/image
(eval mode, batch 1), mIoU, pixel accuracy, per-class IoU -> ``benchmarks/results/
segmentation_<dataset>.json`` and docs/BENCHMARKS.md.
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
from common import append_or_replace, dataset_name, model_cost, parse_entry, split_entries, stamp  # noqa: E402

from detseg.engine.trainer import TrainConfig, Trainer  # noqa: E402





def run_one(entry: str, args) -> dict[str, Any]:
    name, opts = parse_entry(entry)
    if name != "unet_smp":
        return {**train_budgeted(name, opts, args), "model": entry}
    from detseg.models import zoo

    zoo.ZOO["unet_smp"] = zoo.ZooEntry(build_unet_smp, "semantic", "peer: smp Unet, resnet18 encoder")
    try:
        return {**train_budgeted(name, opts, args), "model": entry}
    finally:
        zoo.ZOO.pop("unet_smp", None)


def train_budgeted(name: str, opts: dict[str, Any], args) -> dict[str, Any]:
    """Train one zoo model for at most ``args.minutes`` of training time; its row of the table."""
    with tempfile.TemporaryDirectory() as tmp:
        # --keep DIR keeps the run folder (best.pt, last.pt, curves) for later evaluation
        # (the CRF study, another split); otherwise it lives in a temporary folder.
        out, run_name = (args.keep, safe_name(name, opts)) if args.keep else (tmp, "train")
        cfg = TrainConfig(model=name, data=args.data, epochs=args.epochs, img_size=args.img_size,
                          batch=args.batch, lr=args.lr, model_opts=opts, out=out, name=run_name,
                          device="cpu", quiet=True, augment=args.augment, amp=args.amp,
                          time_limit=args.minutes, channels_last=args.channels_last,
                          warmup_epochs=args.warmup_epochs, val_every=args.val_every)
        trainer = Trainer(cfg)
        gen_s = pregenerate(trainer.train_set) if args.pregenerate else 0.0
        trainer.fit()
        summary = trainer.summary()
        final = summary["final"]
        params, gflops, ms = model_cost(trainer.eval_model, args.img_size * 3 // 4, args.img_size)
    extra = {"pregenerated_seconds": round(gen_s, 1)} if args.pregenerate else {}
    if args.warmup_epochs != TrainConfig.warmup_epochs:
        extra["warmup_epochs"] = args.warmup_epochs
    if args.val_every != 1:
        extra["val_every"] = args.val_every
    if args.keep:
        extra["run_dir"] = str(trainer.run_dir)
    # The row is the last epoch (not selected on val); best.pt's val figure is selected on val
    # itself, so it flatters -- both are kept, the gap says how much.
    best = summary.get("best") or {}
    if "mIoU" in best:
        extra.update(best_epoch=summary.get("best_epoch"), best_val_mIoU=round(best["mIoU"], 4))
    return {"epochs_done": final["epoch"], "train_seconds": round(trainer.train_seconds, 1), **extra,
            "params": params, "gflops": round(gflops, 3), "cpu_ms_per_image": round(ms, 1),
            "mIoU": round(final.get("mIoU", float("nan")), 4),
            "pixel_acc": round(final.get("pixel_acc", float("nan")), 4),
            **{k: round(v, 4) for k, v in final.items() if k.startswith("IoU/") and v == v}}


def safe_name(name: str, opts: dict[str, Any]) -> str:
    """A run-folder name for ``NAME[:k=v;...]``: ``fcn-class_weights-median_frequency``."""
    parts = [name] + [f"{k}-{v}" for k, v in opts.items()]
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in "-".join(parts))


def pregenerate(dataset) -> float:
    """Draw every sample of a synthetic dataset that caches what it generates (the shapes world)
    before the clock starts, as if it had been rendered to disk beforehand; seconds spent. A
    dataset read from disk is left alone (it pays its reading every epoch, inside the budget)."""
    if not getattr(dataset, "cache", False) or not hasattr(dataset, "load"):
        return 0.0
    t = time.perf_counter()
    for i in range(len(dataset)):
        dataset.load(i)
    return time.perf_counter() - t


def oracle_row(data: str, stride: int) -> dict[str, Any]:
    """mIoU of the val ground truth pooled to ``stride`` and upsampled bilinearly back (a ceiling)."""
    import torch.nn.functional as F

    from detseg.data import build_dataset
    from detseg.evaluation import build_evaluator

    ds = build_dataset(data, "val", task="semantic")
    C = len(ds.seg_classes)
    ev = build_evaluator("semantic", list(ds.seg_classes))
    for i in range(len(ds)):
        _, target = ds[i]
        y = target["sem_seg"]
        onehot = F.one_hot(torch.where(y < C, y, 0), C).permute(2, 0, 1).float()[None]
        coarse = F.avg_pool2d(onehot, stride, ceil_mode=True)
        up = F.interpolate(coarse, size=tuple(y.shape), mode="bilinear", align_corners=False)
        ev.update([{"sem_seg": up[0].argmax(0)}], [target])  # ignore pixels stay ignored
    m = ev.compute()
    return {"mIoU": round(m["mIoU"], 4), "pixel_acc": round(m["pixel_acc"], 4),
            **{k: round(v, 4) for k, v in m.items() if k.startswith("IoU/") and v == v}}


def build_unet_smp(classes, img_size: int = 128, class_weights: list[float] | None = None):
    """The peer: smp.Unet(resnet18, random init) as a detseg SemanticModel (same loop, same loss)."""
    try:
        import segmentation_models_pytorch as smp
    except ImportError:
        raise SystemExit("unet_smp needs `pip install segmentation-models-pytorch`") from None
    from detseg.models.segmentation.semantic import SemanticLoss, SemanticModel

    class SmpNet(torch.nn.Module):
        stride = 32

        def __init__(self, num_classes: int):
            super().__init__()
            self.net = smp.Unet("resnet18", encoder_weights=None, classes=num_classes)

        def forward(self, x):
            return self.net(x)

    return SemanticModel(list(classes), SmpNet(len(classes)), img_size,
                         loss=SemanticLoss(len(classes), class_weights=class_weights), who="unet_smp")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--models", default="fcn,fcn8s,segnet,deeplab")
    p.add_argument("--img-size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=30, help="schedule length (the time budget may cut it)")
    p.add_argument("--minutes", type=float, default=10.0, help="CPU training budget per model")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--augment", default="full")
    p.add_argument("--amp", action="store_true")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--warmup-epochs", type=float, default=TrainConfig.warmup_epochs,
                   help="linear LR warm-up length (epochs)")
    p.add_argument("--pregenerate", action="store_true",
                   help="render a synthetic (shapes) training set before the clock starts")
    p.add_argument("--val-every", type=int, default=1,
                   help="validate every N epochs (and after the last); the row is the last epoch either way")
    p.add_argument("--keep", default="", metavar="DIR",
                   help="keep each run folder (best.pt, last.pt) under DIR instead of a temporary one")
    p.add_argument("--oracle-strides", default="", help="e.g. 8,4,2: resolution ceilings, no training")
    p.add_argument("--results-dir", type=Path,
                   help="write the JSON here instead of benchmarks/results (e.g. a longer-budget study)")
    args = p.parse_args(argv)
    if args.results_dir is not None:
        common.RESULTS = args.results_dir
    ds = dataset_name(args.data)
    for stride in filter(None, args.oracle_strides.split(",")):
        row = {"model": f"oracle: ground truth at stride {stride}, bilinear back", **oracle_row(args.data, int(stride))}
        record = stamp({"benchmark": f"segmentation_{ds}", "dataset": args.data, **row}, "torch")
        append_or_replace(f"segmentation_{ds}", [record], key=("benchmark", "model", "dataset"))
        print(row, flush=True)
    for entry in split_entries(args.models):
        row = run_one(entry, args)
        record = stamp({"benchmark": f"segmentation_{ds}", "dataset": args.data, **row,
                        "budget_minutes": args.minutes, "img_size": args.img_size,
                        "batch": args.batch, "lr": args.lr}, "torch")
        # img_size is part of the identity: one model at two resolutions is two rows.
        append_or_replace(f"segmentation_{ds}", [record],
                          key=("benchmark", "model", "dataset", "img_size"))
        print(row, flush=True)


if __name__ == "__main__":
    main()
