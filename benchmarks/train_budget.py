"""Training-budget runs on the shapes world: metric reached vs CPU time, one record per run.

    python benchmarks/train_budget.py fcn --data shapes:size=64,n=10000,n_val=300 --img-size 64 \
        --epochs 5 --batch 32 --lr 4e-3 --augment none --amp

Appends (or replaces, same command) a row to benchmarks/results/train_budget.json; then
`python benchmarks/make_docs.py` regenerates docs/BENCHMARKS.md. These rows chose the recipes of
`detseg demo` (src/detseg/demo.py).
"""

from __future__ import annotations

import shlex
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import append_or_replace, stamp  # noqa: E402

from detseg.cli import build_parser  # noqa: E402
from detseg.engine.trainer import TrainConfig, Trainer  # noqa: E402


def main(argv: list[str]) -> None:
    args = build_parser().parse_args(["train", *argv])
    with tempfile.TemporaryDirectory() as out:
        cfg = TrainConfig(model=args.model, data=args.data, epochs=args.epochs, img_size=args.img_size,
                          batch=args.batch, lr=args.lr, augment=args.augment, amp=args.amp,
                          device=args.device, out=out, quiet=True)
        t0 = time.perf_counter()
        trainer = Trainer(cfg)
        trainer.fit()
        wall = time.perf_counter() - t0
        s = trainer.summary()
    final = s["final"]
    record = {"benchmark": "train_budget", "model": args.model, "dataset": args.data,
              "img_size": args.img_size, "epochs": args.epochs, "batch": args.batch, "lr": args.lr,
              "augment": args.augment, "amp": args.amp,
              **{k: round(final[k], 4) for k in trainer.task.metric_keys if k in final},
              "train_seconds": s["train_seconds"], "wall_seconds": round(wall, 1),
              "command": "python benchmarks/train_budget.py " + shlex.join(argv)}
    append_or_replace("train_budget", [stamp(record, "torch")], key=("command",))
    print(record)


if __name__ == "__main__":
    main(sys.argv[1:])
