"""One training parameter swept over values, chosen by the final validation metric.

CS231n 2017 lecture 11 ("Classification + Localization"): the weight ``lambda`` of a multi-task
loss ``L = L_cls + lambda * L_box`` is not an ordinary hyperparameter — changing it changes the
loss itself, so loss values of different runs are not comparable. It is chosen the only way that
is meaningful: train once per value with the same budget and compare the *final metric* on
validation data. :func:`run_sweep` does that for any numeric parameter — a
:class:`~detseg.engine.trainer.TrainConfig` field (``lr``, ``weight_decay``, ``batch``, ...) or a
model option (``-o`` key, e.g. cls_loc's ``lam``) — and writes, under
``<out>/<model>/sweep_<param>N/``: one run folder per value, ``sweep.json`` (every value's final
metrics and the choice), ``sweep.csv`` and ``sweep.png`` (metric against value).
"""

from __future__ import annotations

import math
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any, Sequence

from detseg.engine.trainer import TrainConfig, Trainer, next_run_dir
from detseg.io import save_figure, write_csv, write_json
from detseg.tables import format_table

# TrainConfig fields that make no sense to sweep (names, paths, switches of how to run).
NOT_SWEEPABLE = {"model", "data", "out", "name", "resume", "device", "workers", "quiet", "format",
                 "weights", "val_split", "train_split", "model_opts", "samples"}


def sweep_target(param: str) -> str:
    """``"config"`` when ``param`` is a TrainConfig field, else ``"model"`` (a builder option)."""
    names = {f.name for f in fields(TrainConfig)}
    if param in NOT_SWEEPABLE:
        raise ValueError(f"sweep: --param {param!r} is not a training parameter to sweep")
    return "config" if param in names else "model"


def run_sweep(base: TrainConfig, param: str, values: Sequence[Any], metric: str | None = None,
              ) -> dict[str, Any]:
    """Train ``base`` once per value of ``param``; pick the value with the best final ``metric``.

    Args:
        base: the shared configuration (same data, budget and seed for every run).
        param: a TrainConfig field or a model option name.
        values: the values to try (at least two, no repeats).
        metric: the validation metric key (default: the task's main metric, e.g. ``loc_acc``
            is a good choice for classification + localization). Losses are refused: lower
            loss under a different lambda means nothing.

    Returns:
        The ``sweep.json`` content: ``{"param", "metric", "best_value", "rows": [{"value",
        <metrics>, "run_dir", "train_seconds"}, ...], "sweep_dir"}``.
    """
    from detseg.models.zoo import ZOO
    from detseg.tasks import get_task

    if len(values) < 2 or len(set(map(str, values))) != len(values):
        raise ValueError(f"sweep: need at least two distinct --values, got {list(values)}")
    if base.model not in ZOO:
        raise ValueError(f"unknown model {base.model!r}; `detseg models` lists them")
    task = get_task(ZOO[base.model].task)
    metric = metric or task.main_metric
    if "loss" in metric:
        raise ValueError(f"sweep: --metric {metric!r}: choose by a validation metric, not a loss "
                         f"(a loss changes with the swept parameter); e.g. {task.main_metric}")
    target = sweep_target(param)
    sweep_dir = next_run_dir(Path(base.out) / base.model, f"sweep_{param}")
    sweep_dir.mkdir(parents=True)
    rows = []
    for value in values:
        if target == "config":
            cfg = replace(base, **{param: value})
        else:
            cfg = replace(base, model_opts={**base.model_opts, param: value})
        cfg = replace(cfg, out=str(sweep_dir), name=f"{param}={value}_", resume=False)
        if not base.quiet:
            print(f"== sweep {param}={value}")
        trainer = Trainer(cfg)
        trainer.fit()
        final = trainer.summary()["final"]
        if metric not in final:
            raise ValueError(f"sweep: metric {metric!r} not among the validation results "
                             f"({', '.join(k for k in final if not k.startswith(('train', 'val/')))})")
        rows.append({"value": value, **{k: final[k] for k in task.metric_keys if k in final},
                     metric: final[metric], "run_dir": str(trainer.run_dir),
                     "train_seconds": round(trainer.train_seconds, 2)})
    best = max(rows, key=lambda r: _score(r[metric], task.higher_is_better))
    result = {"model": base.model, "param": param, "metric": metric, "best_value": best["value"],
              "rows": rows, "sweep_dir": str(sweep_dir), "config": asdict(base)}
    write_json(sweep_dir / "sweep.json", result)
    write_csv(sweep_dir / "sweep.csv", rows)
    _plot(sweep_dir / "sweep.png", rows, param, metric, best["value"])
    return result


def _score(value: float, higher_is_better: bool) -> float:
    if value is None or not math.isfinite(value):
        return -math.inf  # a run that diverged never wins
    return value if higher_is_better else -value


def _plot(path: Path, rows: list[dict[str, Any]], param: str, metric: str, best: Any) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    numeric = all(isinstance(r["value"], (int, float)) for r in rows)
    xs = [r["value"] if numeric else i for i, r in enumerate(rows)]
    ys = [r[metric] for r in rows]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(xs, ys, "o-")
    bx = best if numeric else [r["value"] for r in rows].index(best)
    ax.plot([bx], [ys[xs.index(bx)]], "r*", markersize=14, label=f"chosen: {param}={best}")
    if numeric and min(xs) > 0 and max(xs) / min(xs) >= 20:
        ax.set_xscale("log")  # lambdas and learning rates span decades
    if not numeric:
        ax.set_xticks(xs, [str(r["value"]) for r in rows])
    ax.set_xlabel(param)
    ax.set_ylabel(f"{metric} (val, final)")
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(path, fig)
    plt.close(fig)


def format_sweep(result: dict[str, Any]) -> str:
    """The sweep as a printed table, the chosen value marked."""

    metric = result["metric"]
    keys = list(dict.fromkeys(k for r in result["rows"] for k in r
                              if k not in ("value", "run_dir", "train_seconds")))
    rows = [(("* " if r["value"] == result["best_value"] else "  ") + str(r["value"]),
             *(f"{r[k]:.4f}" if isinstance(r.get(k), float) else str(r.get(k, "")) for k in keys),
             f"{r['train_seconds']:.0f}s") for r in result["rows"]]
    table = format_table([result["param"], *keys, "train time"], rows)
    return f"{table}\nchosen by {metric}: {result['param']}={result['best_value']}  ({result['sweep_dir']})"
