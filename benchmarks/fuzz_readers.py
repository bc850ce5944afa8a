"""Mutation fuzzing of every dataset reader at scale (issue 17): only detseg's own clear errors.

    python benchmarks/fuzz_readers.py --inputs 100000
    python benchmarks/fuzz_readers.py --inputs 50000 --seed 1   # one record per seed: run shards in parallel
    python benchmarks/fuzz_readers.py --inputs 2000 --seconds 60 --no-write

Round robin over the cases of :mod:`detseg.data.fuzz` (VOC XML, COCO json, LSP joints as
.npy/.json/.csv/.mat, label-PNG folders, split lists, a dataset yaml): each input is one mutated
annotation file run through detection, loading, every ``__getitem__`` and ``detseg data check``.
The outcome counts per case (``ok``, ``clear_errors``, ``unexpected`` with up to 5 samples each)
are one record, ``case = "fuzz"``, in ``benchmarks/results/reliability.json`` beside the memory
records (the file's other records are kept). Seeded: ``--seed`` and the input number fix every
mutation, so a sample's ``input`` reproduces it. A count, not a timing: it may share the CPU.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import append_or_replace, stamp  # noqa: E402

from detseg.data.fuzz import CASES, fuzz  # noqa: E402
from detseg.tables import format_table  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--inputs", type=int, default=100_000)
    p.add_argument("--seconds", type=float, default=float("inf"), help="stop early after this long")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=10.0, help="per input: longer is a hang (unexpected)")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    from tqdm import tqdm

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as work, tqdm(total=args.inputs, desc="fuzz", unit="input",
                                                      dynamic_ncols=True, mininterval=2) as bar:
        tallies = fuzz(Path(work), args.inputs, args.seconds, args.seed, CASES, args.timeout,
                       progress=lambda n: bar.update(1))
    seconds = time.perf_counter() - start
    per_case = {name: t.as_dict() for name, t in tallies.items()}
    total = {k: sum(c[k] for c in per_case.values()) for k in ("inputs", "ok", "clear_errors", "unexpected")}
    head = ("case", "inputs", "ok", "clear_errors", "unexpected")
    print(format_table(head, [[n, *(c[k] for k in head[1:])] for n, c in per_case.items()]
                       + [["all", *(total[k] for k in head[1:])]]))
    print(f"{total['inputs']} inputs in {seconds:.0f} s, {total['unexpected']} unexpected")
    if not args.no_write:
        record = stamp({"benchmark": "reliability", "case": "fuzz", "seed": args.seed, **total,
                        "seconds": round(seconds, 1), "per_reader": per_case})
        print("wrote", append_or_replace("reliability", [record], key=("benchmark", "case", "seed")))
    return 1 if total["unexpected"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
