"""Classification + localization as a study: the loss weight lambda, then the box regression loss.

    python benchmarks/cls_loc.py --data shapes:size=128,mode=single,n=4000,n_val=300 --img-size 128 \
        --minutes 10 --parts sweep,losses --lams 0.1,0.3,1,3,10
    python benchmarks/cls_loc.py --data shapes:size=128,mode=single,n=4000,n_val=300 --img-size 128 \
        --minutes 10 --parts losses --variants "loss=giou;box_format=xyxy"

CS231n 2017 lecture 11, "Classification + Localization": one network, a class head and a box head,
trained on ``CE + lambda * regression``. Two studies, every run with the same CPU budget
(``--minutes`` of training: the cosine schedule decays over it and training stops when it is spent,
see detseg/engine/schedule.py), evaluated on the validation split:

- ``sweep``: lambda (the ``lam`` option of ``cls_loc``) over ``--lams`` with
  :func:`detseg.engine.sweep.run_sweep`, chosen by the final validation ``--metric`` (``loc_acc``
  by default), never by the loss -- changing lambda changes the loss itself. The chosen row has
  ``chosen = True``.
- ``losses``: the box regression loss and parameterisation, one factor at a time from the model's
  defaults (smooth L1, normalised cx,cy,w,h, one class-agnostic box): ``--variants`` lists each
  run's options (``key=value`` joined by ``;``, runs by ``,``), by default L2, L1, smooth L1 and
  GIoU (Rezatofighi et al., CVPR 2019), xyxy boxes, and per-class boxes (Fast R-CNN's class-
  specific regression). Lambda is ``--lam`` if given, else the value the sweep chose in this run,
  else the chosen row stored for this data, else 1.

Records: top-1, loc_acc (class right and IoU >= 0.5), mean IoU, params, training seconds and
epochs done -> ``benchmarks/results/cls_loc_<dataset>.json`` (``--results-dir`` writes elsewhere,
e.g. for smoke runs) and docs/BENCHMARKS.md via benchmarks/make_docs.py.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from common import append_or_replace, dataset_name, print_rows, read_results, stamp  # noqa: E402

from detseg.engine.trainer import TrainConfig, Trainer  # noqa: E402

METRICS = ("top1", "loc_acc", "mean_iou")
# The model's defaults, written out so every row names its full configuration.
DEFAULTS = {"loss": "smooth_l1", "box_format": "cxcywh", "class_agnostic": True}
VARIANTS = "loss=l2,loss=l1,loss=smooth_l1,loss=giou,box_format=xyxy,class_agnostic=false"
KEY = ("benchmark", "study", "variant", "dataset")


def parse_opts(text: str) -> dict[str, Any]:
    """``"loss=giou;box_format=xyxy"`` -> ``{"loss": "giou", "box_format": "xyxy"}`` (yaml values)."""
    import yaml

    opts = {}
    for item in filter(None, (s.strip() for s in text.split(";"))):
        k, sep, v = item.partition("=")
        if not sep:
            raise SystemExit(f"variant {text!r}: expected key=value, got {item!r}")
        opts[k.strip()] = yaml.safe_load(v)
    return opts


def base_config(args, out: str, opts: dict[str, Any]) -> TrainConfig:
    return TrainConfig(model="cls_loc", data=args.data, epochs=args.epochs, img_size=args.img_size,
                       batch=args.batch, lr=args.lr, model_opts=opts, out=out, device="cpu",
                       quiet=True, augment=args.augment, amp=args.amp, time_limit=args.minutes)


def run_facts(run_dir: str | Path) -> dict[str, Any]:
    """Params and epochs done of a finished run, from its ``last.pt``."""
    from detseg.engine.checkpoint import load_checkpoint, model_from_checkpoint

    state = load_checkpoint(Path(run_dir) / "last.pt")
    model = model_from_checkpoint(state)
    return {"params": sum(p.numel() for p in model.parameters()), "epochs_done": int(state["epoch"])}


def describe(opts: dict[str, Any]) -> str:
    return ", ".join(f"{k}={opts[k]}" for k in ("loss", "box_format", "class_agnostic", "lam"))


def run_lambda_sweep(args) -> tuple[list[dict[str, Any]], Any]:
    """One run per lambda in ``--lams``; the rows (the chosen one marked) and the chosen lambda."""
    import yaml

    from detseg.engine.sweep import run_sweep

    values = [yaml.safe_load(v) for v in args.lams.split(",") if v.strip()]
    with tempfile.TemporaryDirectory() as out:
        result = run_sweep(base_config(args, args.runs_dir or out, dict(DEFAULTS)), "lam", values,
                           metric=args.metric)
        rows = []
        for r in result["rows"]:
            opts = {**DEFAULTS, "lam": r["value"]}
            rows.append({"study": "lambda sweep", "variant": describe(opts), **opts,
                         "chosen": r["value"] == result["best_value"], "metric": result["metric"],
                         **{k: round(r[k], 4) for k in METRICS if k in r},
                         "train_seconds": round(r["train_seconds"], 1), **run_facts(r["run_dir"])})
    return rows, result["best_value"]


def run_variant(args, opts: dict[str, Any]) -> dict[str, Any]:
    """Train ``cls_loc`` with ``opts`` for the budget; its row of the table."""
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(replace(base_config(args, args.runs_dir or out, opts), name="losses_"))
        trainer.fit()
        final = trainer.summary()["final"]
        facts = run_facts(trainer.run_dir)
    return {"study": "regression loss", "variant": describe(opts), **opts,
            **{k: round(final[k], 4) for k in METRICS if k in final},
            "train_seconds": round(trainer.train_seconds, 1), **facts}


def stored_lambda(name: str, data: str) -> Any:
    """The lambda a stored sweep on ``data`` chose, else None."""
    chosen = [r for r in read_results(name)
              if r.get("study") == "lambda sweep" and r.get("dataset") == data and r.get("chosen")]
    return chosen[-1]["lam"] if chosen else None


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--parts", default="sweep,losses", help="sweep, losses or both")
    p.add_argument("--lams", default="0.1,0.3,1,3,10", help="lambda values of the sweep")
    p.add_argument("--metric", default="loc_acc", help="validation metric that chooses lambda")
    p.add_argument("--lam", type=float, help="lambda of the loss study (default: the sweep's choice)")
    p.add_argument("--variants", default=VARIANTS, help="runs of the loss study (see above)")
    p.add_argument("--img-size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=200, help="schedule length (the time budget cuts it)")
    p.add_argument("--minutes", type=float, default=10.0, help="CPU training budget per run")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--augment", default="full", help="full | flip | none")
    p.add_argument("--amp", action="store_true", help="bf16 autocast (faster on CPUs with AVX512-BF16)")
    p.add_argument("--runs-dir", help="keep the run folders (and the sweep's table and plot) here")
    p.add_argument("--results-dir", type=Path, help="write the JSON here instead of benchmarks/results")
    args = p.parse_args(argv)
    if args.results_dir is not None:
        common.RESULTS = args.results_dir
    parts = {s.strip() for s in args.parts.split(",") if s.strip()}
    if not parts or parts - {"sweep", "losses"}:
        raise SystemExit(f"--parts {args.parts!r}: choose sweep, losses or sweep,losses")
    name = f"cls_loc_{dataset_name(args.data)}"
    extra = {"budget_minutes": args.minutes, "img_size": args.img_size}
    rows: list[dict[str, Any]] = []
    lam = args.lam
    if "sweep" in parts:
        sweep_rows, chosen = run_lambda_sweep(args)
        records = [stamp({"benchmark": name, "dataset": args.data, **r, **extra}, "torch")
                   for r in sweep_rows]
        append_or_replace(name, records, key=KEY)
        rows += records
        print(f"lambda chosen by {args.metric}: {chosen}", flush=True)
        lam = chosen if lam is None else lam
    if "losses" in parts:
        if lam is None:
            lam = stored_lambda(name, args.data)
        lam = 1.0 if lam is None else lam
        for variant in filter(None, (v.strip() for v in args.variants.split(","))):
            row = run_variant(args, {**DEFAULTS, **parse_opts(variant), "lam": lam})
            record = stamp({"benchmark": name, "dataset": args.data, **row, **extra}, "torch")
            append_or_replace(name, [record], key=KEY)
            rows.append(record)
            print({k: row[k] for k in ("variant", *METRICS) if k in row}, flush=True)
    for r in rows:
        r.setdefault("chosen", "")
    print_rows(rows, ("study", "variant", "chosen", *METRICS, "params", "train_seconds", "epochs_done"))
    print(f"wrote {common.results_path(name)}")


if __name__ == "__main__":
    main()
