"""The ``detseg proposals`` and ``detseg svm`` verbs: score a region-proposal method on a dataset;
fit R-CNN's per-class SVMs on a trained checkpoint (:mod:`detseg.models.detection.svm`).

    detseg proposals eval --method sliding_window|selective_search_fast|selective_search_quality|precomputed:PATH
                          |rpn --checkpoint FILE (a trained faster_rcnn / mask_rcnn / keypoint_rcnn)
                          --data DATA [--split val] [--limit N] [--json FILE] [--cache-dir DIR]

Prints recall at 100/500/1000/2000 proposals for IoU 0.5 and 0.7, MABO and seconds per image
(:mod:`detseg.evaluation.proposals`). Only ``argparse`` is imported at module level so that
building the CLI parser stays cheap.
"""

from __future__ import annotations

import argparse
from typing import Any

from detseg.cli.common import DATA_HELP
from detseg.tables import format_table

METHODS = ("sliding_window", "selective_search_fast", "selective_search_quality", "precomputed:PATH",
           "rpn")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``proposals eval --method M --data DATA [--split] [--limit] [--json] [--cache-dir]``."""
    p = subparsers.add_parser("proposals", help="region proposal tools (sliding windows, selective search, files)")
    sub = p.add_subparsers(dest="proposals_verb", required=True, metavar="ACTION")
    e = sub.add_parser("eval", help="recall@100/500/1000/2000 at IoU 0.5/0.7, MABO, seconds per image")
    e.add_argument("--method", required=True, help=f"one of: {', '.join(METHODS)}")
    e.add_argument("--checkpoint", default=None, metavar="FILE",
                   help="--method rpn: a trained faster_rcnn / mask_rcnn / keypoint_rcnn checkpoint")
    e.add_argument("--data", required=True, help=DATA_HELP)
    e.add_argument("--split", default="val")
    e.add_argument("--limit", type=int, default=None, metavar="N", help="evaluate the first N images only")
    e.add_argument("--max-proposals", type=int, default=2000, help="per image (default %(default)s)")
    e.add_argument("--cache-dir", default=None, help="selective search: on-disk cache folder")
    e.add_argument("--val-fraction", type=float, default=0.2)
    e.add_argument("--format", default=None, help="override the auto-detected data format")
    e.add_argument("--json", default=None, metavar="FILE", help="write the metrics as flat JSON")
    return p


def build_generator(method: str, max_proposals: int | None = 2000, cache_dir: str | None = None,
                    checkpoint: str | None = None):
    """The :class:`~detseg.models.detection.proposals.ProposalGenerator` a ``--method`` string names."""
    from detseg.models.detection import proposals as P

    if method == "rpn":
        if not checkpoint:
            raise ValueError("--method rpn needs --checkpoint FILE (a trained faster_rcnn, mask_rcnn "
                             "or keypoint_rcnn)")
        from detseg.engine.checkpoint import load_model

        return P.DetectorProposals(load_model(checkpoint), max_proposals)
    if checkpoint:
        raise ValueError(f"--checkpoint is for --method rpn, not {method!r}")

    if method == "sliding_window":
        return P.SlidingWindowProposals(max_proposals=max_proposals)
    if method in ("selective_search_fast", "selective_search_quality"):
        return P.SelectiveSearchProposals(mode=method.rsplit("_", 1)[1], max_proposals=max_proposals,
                                          cache_dir=cache_dir)
    if method.startswith("precomputed:") and len(method) > len("precomputed:"):
        return P.PrecomputedProposals(method.split(":", 1)[1], max_proposals=max_proposals)
    raise ValueError(f"--method {method!r}: expected one of {', '.join(METHODS)}")


def run(args: argparse.Namespace) -> int:
    """``detseg proposals eval``: print the table, optionally write ``--json``."""
    from detseg.data import build_dataset
    from detseg.evaluation.proposals import evaluate_proposals
    from detseg.io import write_json

    generator = build_generator(args.method, args.max_proposals, args.cache_dir, args.checkpoint)
    dataset = build_dataset(args.data, split=args.split, task="detection",
                            val_fraction=args.val_fraction, format=args.format)
    if len(dataset) == 0:
        raise ValueError(f"{args.data}: split {args.split!r} has no images")
    evaluator = evaluate_proposals(generator, dataset, limit=args.limit, progress=True)
    print(f"{args.method} on {args.data} ({args.split})")
    print(evaluator.table())
    if args.json:
        write_json(args.json, {"method": args.method, "data": str(args.data), "split": args.split,
                               **evaluator.summary()})
        print(f"metrics written to {args.json}")
    return 0


# ----------------------------------------------------------------------------- detseg svm
def add_svm_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``detseg svm CHECKPOINT --data DATA``: R-CNN's per-class SVMs, hard-negative mined."""
    s = subparsers.add_parser(
        "svm", help="R-CNN's second stage: per-class linear SVMs on fc7 features, hard-negative mined",
        description="Fit R-CNN's per-class linear SVMs (Girshick et al. 2014, sec. 2.3) on a trained "
                    "rcnn checkpoint's fc7 features, write a checkpoint that scores with them, and "
                    "compare softmax and SVM scoring on the validation split.")
    s.add_argument("checkpoint", help="a trained rcnn checkpoint (e.g. runs/rcnn/train1/best.pt)")
    s.add_argument("--data", required=True, help=DATA_HELP)
    s.add_argument("--train-split", default="train", help="the split the SVMs are fitted on "
                   "(the CNN's training split: train, an index range A:B, or a .txt/.csv list)")
    s.add_argument("--val-split", default="val", help="compare softmax and SVMs here ('none' skips)")
    s.add_argument("--val-fraction", type=float, default=0.2)
    s.add_argument("--format", default=None)
    s.add_argument("--out", default=None,
                   help="the new checkpoint (default: CHECKPOINT's folder, <stem>_svm.pt)")
    s.add_argument("--cache-dir", default=None,
                   help="keep the fc7 features on disk here (keyed by image and weights)")
    s.add_argument("--limit", type=int, default=None, metavar="N", help="fit on the first N images only")
    s.add_argument("--C", type=float, default=1e-3, dest="C", help="liblinear's C (default %(default)s, the paper's)")
    s.add_argument("--pos-weight", type=float, default=2.0, help="positives' loss weight (default %(default)s)")
    s.add_argument("--neg-iou", type=float, default=0.3,
                   help="negatives: IoU below this with every box of the class (default %(default)s)")
    s.add_argument("--device", default="auto")
    s.add_argument("--batch", type=int, default=4, help="validation batch size")
    s.add_argument("--json", default=None, metavar="FILE", help="write the comparison as flat JSON")
    return s


def run_svm(args: argparse.Namespace) -> int:
    """``detseg svm``: fit, save, and compare on the validation split."""
    from pathlib import Path

    from detseg.api import check_classes, evaluate
    from detseg.data import build_dataset
    from detseg.models.detection.svm import SVMConfig, fit_svms, report_table
    from detseg.engine.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
    from detseg.engine.distributed import resolve_device
    from detseg.io import write_json

    state = load_checkpoint(args.checkpoint)
    if state.get("builder") != "rcnn":
        raise ValueError(f"{args.checkpoint}: svm: the SVM stage is R-CNN's; this checkpoint is a "
                         f"{state.get('builder')!r} model (train one with `detseg train rcnn`)")
    device = resolve_device(args.device)
    model = model_from_checkpoint(state, scorer="auto").to(device).eval()
    train = build_dataset(args.data, split=args.train_split, task="detection",
                          val_fraction=args.val_fraction, format=args.format)
    check_classes(model, train, "detection")
    cfg = SVMConfig(C=args.C, pos_weight=args.pos_weight, neg_iou=args.neg_iou)
    report = fit_svms(model, train, cfg, cache_dir=args.cache_dir, limit=args.limit)
    print(f"SVMs fitted on {report.images} images of {args.data} ({args.train_split}): features "
          f"{report.feature_seconds:.1f} s ({report.cached_images} from the cache), mining "
          f"{report.mining_seconds:.1f} s")
    print(report_table(report))

    out = Path(args.out) if args.out else Path(args.checkpoint).with_name(Path(args.checkpoint).stem + "_svm.pt")
    keep = {k: v for k, v in state.items() if k not in ("format", "optimizer", "scheduler", "scaler")}
    save_checkpoint(out, {**keep, "model": model.state_dict(), "svm": report.to_dict()})
    print(f"checkpoint written to {out} (scores with the SVMs; -o scorer=softmax for the softmax)")

    result: dict[str, Any] = {"svm_images": report.images, "feature_seconds": report.feature_seconds,
                              "mining_seconds": report.mining_seconds}
    if args.val_split.lower() != "none":
        rows = []
        for scorer in ("softmax", "svm"):  # one network in memory, scored both ways
            model.box_head.scorer = scorer
            m = evaluate(model, args.data, split=args.val_split, batch=args.batch, device=device,
                         val_fraction=args.val_fraction, format=args.format, quiet=False)
            rows.append((scorer, f"{m['mAP50']:.3f}", f"{m['mAP']:.3f}"))
            result.update({f"{scorer}_mAP50": m["mAP50"], f"{scorer}_mAP": m["mAP"]})
        print(f"\n{args.data} ({args.val_split}):")
        print(format_table(["scorer", "mAP50", "mAP"], rows))
    if args.json:
        write_json(args.json, result)
        print(f"metrics written to {args.json}")
    return 0
