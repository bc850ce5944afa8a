"""The ``detseg`` command line: one vocabulary for every model and task.

    detseg models
    detseg train MODEL --data DATA [--epochs N] [--img-size S] [-o KEY=VALUE ...] [--resume]
    detseg sweep MODEL --data DATA --param NAME --values V1,V2,... [--metric KEY] [train options]
    detseg eval CHECKPOINT --data DATA [--split val] [--json FILE]
    detseg svm CHECKPOINT --data DATA          (R-CNN's per-class SVMs, hard-negative mined)
    detseg predict CHECKPOINT INPUT... --out DIR [--save-json]   (images, folders, globs, videos)
    detseg export CHECKPOINT --format onnx [--dynamic] [--opset N] [--out FILE]
    detseg bench --data DATA --entries "yolo:img=320,ssd:img=320,..." [--minutes M] [--out DIR]
                 (speed/accuracy study: every entry on one budget; table, JSON/CSV, Pareto plot)
    detseg serve CHECKPOINT_OR_ONNX [--host 127.0.0.1] [--port 8000] [--workers 1]   (HTTP + a page)
    detseg demo [--out DIR]
    detseg data check PATH
    detseg segment-meanshift IMAGE... --out DIR
    detseg proposals eval --method M --data DATA [--split val] [--limit N] [--json FILE]

Distributed: ``torchrun --nproc_per_node 2 -m detseg train ...``.
Set ``DETSEG_DEBUG=1`` to see full tracebacks instead of one-line errors.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from detseg.cli import bench, classic, detection, export, predict, serve
from detseg.cli.common import DATA_HELP, add_source_arguments, parse_opts
from detseg.tables import format_table


def _models_epilog() -> str:
    from detseg.models.zoo import ZOO, model_options

    lines = ["model options (-o KEY=VALUE, repeatable):"]
    for name in ZOO:
        opts = ", ".join(f"{k}={v!r}" for k, v in model_options(name).items())
        lines.append(f"  {name}: {opts}")
    return "\n".join(lines)


def _lazy_epilog(parser: argparse.ArgumentParser, make) -> None:
    plain = parser.format_help

    def format_help() -> str:
        parser.epilog = make()
        return plain()

    parser.format_help = format_help  # type: ignore[method-assign]


def _train_arguments(t: argparse.ArgumentParser) -> None:
    """The options of ``detseg train`` (shared by ``detseg sweep``)."""
    t.add_argument("model", help="zoo name (see `detseg models`)")
    t.add_argument("--data", default="shapes", help=DATA_HELP)
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--img-size", type=int, default=None, help="model input size (default: the model's)")
    t.add_argument("--batch", type=int, default=16)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--weight-decay", type=float, default=1e-4)
    t.add_argument("--optimizer", choices=["adamw", "sgd"], default="adamw")
    t.add_argument("--schedule", choices=["cosine", "step", "constant"], default="cosine")
    t.add_argument("--warmup-epochs", type=float, default=0.5)
    t.add_argument("--clip-grad", type=float, default=10.0, help="max gradient norm (0 = off)")
    t.add_argument("--amp", action="store_true", help="mixed precision (bf16 on CPU, fp16 on GPU)")
    t.add_argument("--channels-last", action="store_true",
                   help="NHWC memory format (faster convolutions on most CPUs and GPUs)")
    t.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    t.add_argument("--workers", type=int, default=0, help="data-loading processes")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", default="runs", help="root folder of run folders")
    t.add_argument("--name", default="train", help="run folder name prefix (train -> train1, train2, ...)")
    t.add_argument("--resume", nargs="?", const=True, default=False, metavar="RUN",
                   help="continue the newest run of this model/name (or the given run folder / last.pt)")
    t.add_argument("--val-fraction", type=float, default=0.2, help="validation share for data without a split")
    t.add_argument("--train-split", default="train",
                   help="train | val | all, an index range A:B of the data's files in order (e.g. 0:900), "
                        "or a .txt/.csv list of image names (e.g. data/train_labels.csv)")
    t.add_argument("--val-split", default="val", help="like --train-split (e.g. 900:1000)")
    t.add_argument("--format", default=None, help="override the auto-detected data format")
    add_source_arguments(t)
    t.add_argument("--weights", default=None, metavar="FILE",
                   help="fine-tune from a detseg checkpoint or a state_dict file (a torchvision R-CNN one "
                        "too): tensors whose name and shape match load, the rest (e.g. predictors of "
                        "another class count) stay freshly initialised; listed in transfer.json")
    t.add_argument("--freeze-backbone", type=int, default=0, metavar="N",
                   help="freeze the first N backbone stages (resnets: stem, layer1..4; small backbones: "
                        "c1..c5), their batch norms in eval mode")
    t.add_argument("--time-limit", type=float, default=None, metavar="MIN",
                   help="training budget in minutes: the LR schedule decays over it and training stops "
                        "when it is spent (mid-epoch), then validates")
    t.add_argument("--augment", choices=["full", "flip", "none"], default="full",
                   help="training augmentation: flip + scale jitter + colour, flip only, or none")
    t.add_argument("--rotate", type=float, default=0.0, metavar="DEG",
                   help="also rotate training images by a random angle in [-DEG, DEG] (boxes, masks, "
                        "label maps and joints follow; e.g. 30 for pose)")
    t.add_argument("-o", "--opt", action="append", default=[], metavar="KEY=VALUE",
                   help="model option, repeatable (listed below)")
    t.add_argument("--samples", type=int, default=8, help="validation images drawn in samples.png")
    t.add_argument("--val-every", type=int, default=1, metavar="N",
                   help="validate every N epochs (and after the last epoch); for models whose "
                        "validation costs more than an epoch of training, e.g. rcnn")
    t.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    t.add_argument("--tensorboard", action="store_true",
                   help="also write TensorBoard event files into the run folder (pip install 'detseg[tensorboard]')")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="detseg", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    from detseg import __version__

    p.add_argument("--version", action="version", version=f"detseg {__version__}")
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")

    sub.add_parser("models", help="list the model zoo: name, task, description")

    t = sub.add_parser("train", help="train a zoo model; writes runs/<model>/<name>N/",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _lazy_epilog(t, _models_epilog)  # importing the zoo (torch) only when help is shown
    _train_arguments(t)

    sw = sub.add_parser(
        "sweep", formatter_class=argparse.RawDescriptionHelpFormatter,
        help="train once per value of one parameter; choose it by the final validation metric",
        description="Train MODEL once per value of --param (a training option such as lr, or a "
        "model option such as cls_loc's lam) with the same data, budget and seed, and choose the "
        "value by the final validation --metric (a loss is refused: it changes with the "
        "parameter). Writes sweep.json, sweep.csv and sweep.png under OUT/MODEL/sweep_PARAMN/.")
    _lazy_epilog(sw, _models_epilog)
    sw.add_argument("--param", required=True, help="a train option (lr, weight_decay, ...) or a model option")
    sw.add_argument("--values", required=True, help="comma-separated values, e.g. 0.1,1,10")
    sw.add_argument("--metric", default=None, help="validation metric to maximise (default: the task's main)")
    _train_arguments(sw)

    e = sub.add_parser("eval", help="evaluate a checkpoint on a dataset split")
    e.add_argument("checkpoint", help="a checkpoint (.pt) or a file of `detseg export` (.onnx)")
    e.add_argument("--data", default=None, help=DATA_HELP + " (required unless --images/--annotations)")
    add_source_arguments(e)
    e.add_argument("--split", default="val")
    e.add_argument("--batch", type=int, default=8)
    e.add_argument("--device", default="auto")
    e.add_argument("--workers", type=int, default=0)
    e.add_argument("--val-fraction", type=float, default=0.2)
    e.add_argument("--format", default=None)
    e.add_argument("--json", default=None, metavar="FILE", help="write the metrics as flat JSON")
    e.add_argument("-o", "--opt", action="append", default=[], metavar="KEY=VALUE",
                   help="override a model option that keeps the weights (e.g. crf=true)")

    predict.add_parser(sub)

    d = sub.add_parser("demo", help="train and evaluate every task's demo model on shapes; report.html")
    d.add_argument("--out", default="runs/demo")
    d.add_argument("--only", default=None, help="comma-separated demo model names")
    d.add_argument("--scale", type=float, default=1.0, help="multiply every demo's epochs (e.g. 0.2 for a smoke run)")
    d.add_argument("--compare", action="store_true",
                   help="also train the upsampling variants and picture them side by side (~8 min more)")

    classic.add_parser(sub)
    detection.add_parser(sub)
    detection.add_svm_parser(sub)
    export.add_parser(sub)
    bench.add_parser(sub)
    serve.add_parser(sub)

    data = sub.add_parser("data", help="dataset tools")
    dsub = data.add_subparsers(dest="data_verb", required=True, metavar="ACTION")
    c = dsub.add_parser("check", help="list images, classes, objects and every problem found")
    c.add_argument("path", nargs="?", default=None, help=DATA_HELP + " (optional with --images/--annotations)")
    c.add_argument("--format", default=None)
    add_source_arguments(c)
    c.add_argument("--workers", type=int, default=4, help="threads decoding the images")
    c.add_argument("--json", default=None, metavar="FILE")
    return p


def cmd_models(args) -> int:
    from detseg.models.zoo import ZOO

    rows = [(name, e.task, e.description) for name, e in ZOO.items()]
    print(format_table(["model", "task", "description"], rows))
    return 0


def _train_config(args) -> "TrainConfig":  # noqa: F821 (imported lazily: torch)
    from detseg.engine.trainer import TrainConfig

    return TrainConfig(
        model=args.model, data=args.data, epochs=args.epochs, img_size=args.img_size,
        batch=args.batch, lr=args.lr, weight_decay=args.weight_decay, optimizer=args.optimizer,
        schedule=args.schedule, warmup_epochs=args.warmup_epochs,
        clip_grad=args.clip_grad or None, amp=args.amp, channels_last=args.channels_last,
        device=args.device, workers=args.workers,
        seed=args.seed, out=args.out, name=args.name, resume=args.resume,
        val_fraction=args.val_fraction, train_split=args.train_split, val_split=args.val_split,
        format=args.format, images=args.images, annotations=args.annotations,
        weights=args.weights, freeze_backbone=args.freeze_backbone, augment=args.augment,
        rotate=args.rotate, time_limit=args.time_limit,
        model_opts=parse_opts(args.opt), samples=args.samples, quiet=args.quiet,
        val_every=args.val_every, tensorboard=args.tensorboard,
    )


def cmd_train(args) -> int:
    from detseg.engine.trainer import Trainer

    trainer = Trainer(_train_config(args))
    run_dir = trainer.fit()
    from detseg.engine import distributed as dist_utils

    if dist_utils.is_main():
        s = trainer.summary()
        best = s["best"]
        rows = [(k, f"{best[k]:.4f}") for k in trainer.task.metric_keys if isinstance(best.get(k), float)]
        if rows:
            print(format_table(["metric (best epoch %d)" % s["best_epoch"], "value"], rows))
        for what, files in (("skipped (unreadable)", s["skipped_images"]), ("read truncated", s["truncated_images"])):
            if files:
                print(f"{len(files)} image(s) {what}: {', '.join(files)}")
        print(f"run folder: {run_dir}  ({s['train_seconds']:.0f}s of training)")
    dist_utils.cleanup()
    return 0


def cmd_sweep(args) -> int:
    import yaml

    from detseg.engine.sweep import format_sweep, run_sweep

    if args.resume:
        raise ValueError("sweep: --resume is not supported; resume a single run with `detseg train`")
    values = [yaml.safe_load(v) for v in args.values.split(",") if v.strip()]
    result = run_sweep(_train_config(args), args.param.replace("-", "_"), values, metric=args.metric)
    print(format_sweep(result))
    return 0


def cmd_eval(args) -> int:
    from detseg.api import evaluate
    from detseg.io import write_json

    if args.data is None and args.images is None and args.annotations is None:
        raise ValueError("eval: pass --data (a path or a dataset yaml) or --images/--annotations")
    metrics, evaluator = evaluate(args.checkpoint, args.data, split=args.split, batch=args.batch,
                                  device=args.device, val_fraction=args.val_fraction,
                                  format=args.format, workers=args.workers, quiet=False,
                                  return_evaluator=True, options=parse_opts(args.opt),
                                  images=args.images, annotations=args.annotations)
    print(evaluator.table())
    if "loss" in metrics:
        print(f"loss {metrics['loss']:.4f}")
    if args.json:
        write_json(args.json, metrics)
        print(f"metrics written to {args.json}")
    return 0


def cmd_demo(args) -> int:
    from detseg.demo import run_demo

    only = args.only.split(",") if args.only else None
    run_demo(Path(args.out), only=only, scale=args.scale, compare=args.compare)
    return 0


def cmd_data(args) -> int:
    from detseg.data.check import check_dataset, format_report
    from detseg.io import write_json

    if args.path is None and args.images is None and args.annotations is None:
        raise ValueError("data check: pass a PATH (a folder, a file or a dataset yaml) or --images/--annotations")
    report = check_dataset(args.path, format=args.format, images=args.images, annotations=args.annotations,
                           workers=args.workers, progress=True)
    print(format_report(report))
    if args.json:
        write_json(args.json, {**report, "problems": [list(p) for p in report["problems"]]})
    return 0


COMMANDS = {"models": cmd_models, "train": cmd_train, "sweep": cmd_sweep, "eval": cmd_eval,
            "predict": predict.run,
            "demo": cmd_demo, "data": cmd_data, "segment-meanshift": classic.run,
            "proposals": detection.run, "svm": detection.run_svm,
            "export": export.run, "bench": bench.run, "serve": serve.run}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if os.environ.get("DETSEG_DEBUG"):
        return COMMANDS[args.verb](args)
    from detseg.engine.checkpoint import CheckpointError
    from detseg.engine.trainer import NonFiniteLossError

    try:
        return COMMANDS[args.verb](args)
    except NonFiniteLossError as e:
        print(f"detseg: stopped: {e}", file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError, CheckpointError, TypeError, ImportError) as e:
        print(f"detseg: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("detseg: interrupted (last.pt keeps the last finished epoch; use --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
