"""Resident memory over a long training run (issue 17, resources): does it stay flat after warm-up?

    python benchmarks/reliability.py                      # 2,000 iterations (the acceptance run)
    python benchmarks/reliability.py --iters 200 --warmup 60 --no-write   # a quick look

Trains a tiny ``fcn`` (width 16) on the shapes world (32 px, batch 4, full augmentation, CPU)
with the default hooks — checkpoints, metrics files, curves and sample drawings every epoch,
validation every ``--val-every`` epochs — and reads the process's resident set size (``VmRSS`` of
``/proc/self/status``) every 10 iterations. The reference is the first RSS sample after
``--warmup`` iterations (by then the shapes cache is full, and one validation and every hook have
run); the figure is the largest departure from it afterwards, in percent. Writes a record to
``benchmarks/results/reliability.json`` (replacing the one of the same case). Memory figures do
not depend on the CPU being shared; the seconds do.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import append_or_replace, stamp  # noqa: E402

from detseg.engine.trainer import TrainConfig, Trainer  # noqa: E402


def rss_mib() -> float:
    """This process's resident set size in MiB (Linux ``/proc``; psutil elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import psutil  # pragma: no cover - not Linux

    return psutil.Process().memory_info().rss / 2**20  # pragma: no cover


def measure_rss(iters: int = 2000, warmup: int = 200, val_every: int = 5, n: int = 128,
                batch: int = 4, size: int = 32, every: int = 10, out: str | None = None) -> dict[str, Any]:
    """Train for at least ``iters`` iterations; RSS samples and the growth after ``warmup``."""
    per_epoch = n // batch if n > batch else 1
    epochs = math.ceil(iters / per_epoch)
    samples: list[tuple[int, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(model="fcn", data=f"shapes:size={size},n={n},n_val=16", img_size=size,
                          epochs=epochs, batch=batch, device="cpu", workers=0, quiet=True,
                          samples=2, val_every=val_every, out=out or tmp,
                          model_opts={"width": 16, "backbone_width": 16})  # a tiny model
        trainer = Trainer(cfg)
        model, forward = trainer.model, trainer.model.forward
        count = {"i": 0}

        def sampled_forward(images, targets=None, **kw):
            if model.training:
                count["i"] += 1
                if count["i"] % every == 0:
                    samples.append((count["i"], rss_mib()))
            return forward(images, targets, **kw)

        model.forward = sampled_forward
        t0 = time.perf_counter()
        trainer.fit()
        seconds = time.perf_counter() - t0
    after = [(i, r) for i, r in samples if i > warmup]  # the first sample after warm-up's hooks
    if not after:
        raise ValueError(f"--warmup {warmup} leaves no sample of {count['i']} iterations")
    ref = after[0][1]
    peak = max(r for _, r in after)
    worst = max(after, key=lambda s: abs(s[1] - ref))
    return {
        "iterations": count["i"], "warmup_iterations": warmup, "epochs": epochs,
        "rss_start_mib": round(samples[0][1], 1), "rss_after_warmup_mib": round(ref, 1),
        "rss_peak_mib": round(peak, 1), "rss_final_mib": round(after[-1][1], 1),
        "growth_final_pct": round(100 * (after[-1][1] - ref) / ref, 2),
        "growth_max_pct": round(100 * (worst[1] - ref) / ref, 2),
        "seconds": round(seconds, 1), "samples": [[i, round(r, 1)] for i, r in samples],
    }


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--iters", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--val-every", type=int, default=5)
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args(argv)
    r = measure_rss(args.iters, args.warmup, args.val_every)
    record = {"benchmark": "reliability", "case": f"rss_{args.iters}_iterations",
              "model": "fcn -o width=16 -o backbone_width=16", "dataset": "shapes:size=32,n=128",
              "batch": 4,
              **{k: v for k, v in r.items() if k != "samples"},
              "within_5pct": abs(r["growth_max_pct"]) <= 5.0,
              "note": "CPU shared with other jobs: seconds are not comparable, memory is",
              "rss_every_100_iterations_mib": [m for i, m in r["samples"] if i % 100 == 0]}
    if not args.no_write:
        append_or_replace("reliability", [stamp(record, "torch")], key=("benchmark", "case"))
    print(record)


if __name__ == "__main__":
    main(sys.argv[1:])
