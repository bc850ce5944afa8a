"""The ``detseg proposals`` verb: score a region-proposal method on a dataset.

    detseg proposals eval --method sliding_window|selective_search_fast|selective_search_quality|precomputed:PATH
                          --data DATA [--split val] [--limit N] [--json FILE] [--cache-dir DIR]

Prints recall at 100/500/1000/2000 proposals for IoU 0.5 and 0.7, MABO and seconds per image
(:mod:`detseg.detection.proposal_eval`). Only ``argparse`` is imported at module level so that
building the CLI parser stays cheap.
"""

from __future__ import annotations

import argparse
from typing import Any

METHODS = ("sliding_window", "selective_search_fast", "selective_search_quality", "precomputed:PATH")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``proposals eval --method M --data DATA [--split] [--limit] [--json] [--cache-dir]``."""
    from detseg.cli import DATA_HELP

    p = subparsers.add_parser("proposals", help="region proposal tools (sliding windows, selective search, files)")
    sub = p.add_subparsers(dest="proposals_verb", required=True, metavar="ACTION")
    e = sub.add_parser("eval", help="recall@100/500/1000/2000 at IoU 0.5/0.7, MABO, seconds per image")
    e.add_argument("--method", required=True, help=f"one of: {', '.join(METHODS)}")
    e.add_argument("--data", required=True, help=DATA_HELP)
    e.add_argument("--split", default="val")
    e.add_argument("--limit", type=int, default=None, metavar="N", help="evaluate the first N images only")
    e.add_argument("--max-proposals", type=int, default=2000, help="per image (default %(default)s)")
    e.add_argument("--cache-dir", default=None, help="selective search: on-disk cache folder")
    e.add_argument("--val-fraction", type=float, default=0.2)
    e.add_argument("--format", default=None, help="override the auto-detected data format")
    e.add_argument("--json", default=None, metavar="FILE", help="write the metrics as flat JSON")
    return p


def build_generator(method: str, max_proposals: int | None = 2000, cache_dir: str | None = None):
    """The :class:`~detseg.detection.proposals.ProposalGenerator` a ``--method`` string names."""
    from detseg.detection import proposals as P

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
    from detseg.detection.proposal_eval import evaluate_proposals
    from detseg.io import write_json

    generator = build_generator(args.method, args.max_proposals, args.cache_dir)
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
