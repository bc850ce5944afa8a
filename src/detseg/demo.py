"""``detseg demo``: the main job on the built-in shapes world.

Trains each task's demo model with a CPU-sized recipe, evaluates it on the shapes val split, and
writes ``report.html`` (metrics tables, curves, predictions), ``summary.json``
(``{"<model>": {<metric>: value, ..., "train_seconds": s}}``) and a printed summary.
Later issues add their tasks by appending a :class:`DemoRecipe` to ``DEMOS``.
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from detseg.io import write_json, write_text


@dataclass(frozen=True)
class DemoRecipe:
    """One demo run: a zoo model, its shapes data and a training budget sized for 2 CPU cores."""

    model: str
    data: str
    epochs: int
    img_size: int
    batch: int = 16
    lr: float = 2e-3
    model_opts: dict[str, Any] = field(default_factory=dict)
    augment: str = "none"  # the shapes world is endless: fresh samples beat augmented ones
    amp: bool = True  # bfloat16 autocast: ~1.7x faster on CPUs with AVX512-BF16/AMX, same metrics
    note: str = ""


# Budgets measured on the 2-core reference machine (docs/BENCHMARKS.md has the runs): the FCN
# needs many distinct scenes more than many epochs (n=4000 x 12 epochs plateaus at mIoU 0.83,
# n=10000 x 5 epochs reaches 0.86 in the same time).
DEMOS: list[DemoRecipe] = [
    DemoRecipe("fcn", "shapes:size=64,n=10000,n_val=300", epochs=5, img_size=64, batch=32, lr=4e-3,
               note="encoder-decoder FCN, transpose-convolution upsampling with skips"),
    DemoRecipe("cls_loc", "shapes:size=64,n=4000,n_val=300", epochs=8, img_size=64, batch=32, lr=2e-3,
               note="classification + localization, CE + lambda * smooth L1"),
]


def fast_bf16() -> bool:
    """Whether bfloat16 autocast speeds this CPU up (native bf16 dot products) or a GPU is used."""
    import torch

    if torch.cuda.is_available():
        return True
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # older torch: stay in float32
        return False


def run_demo(out: Path, only: list[str] | None = None, scale: float = 1.0) -> dict[str, Any]:
    """Train/evaluate every demo recipe; returns the summary dict (also written to summary.json)."""
    from detseg.engine.trainer import TrainConfig, Trainer

    out.mkdir(parents=True, exist_ok=True)
    recipes = [r for r in DEMOS if only is None or r.model in only]
    if only and len(recipes) != len(only):
        unknown = set(only) - {r.model for r in DEMOS}
        raise ValueError(f"--only: no demo for {sorted(unknown)}; demos: {[r.model for r in DEMOS]}")
    summary: dict[str, Any] = {}
    sections = []
    t_start = time.perf_counter()
    for r in recipes:
        print(f"== demo: {r.model} on {r.data} ({r.note})")
        cfg = TrainConfig(model=r.model, data=r.data, epochs=max(1, round(r.epochs * scale)),
                          img_size=r.img_size, batch=r.batch, lr=r.lr, model_opts=dict(r.model_opts),
                          augment=r.augment, amp=r.amp and fast_bf16(),
                          out=str(out / "runs"), name="demo", device="auto")
        trainer = Trainer(cfg)
        run_dir = trainer.fit()
        s = trainer.summary()
        final = s["final"]
        metrics = {k: final[k] for k in trainer.task.metric_keys if k in final}
        summary[r.model] = {**metrics, "train_seconds": s["train_seconds"]}
        sections.append(_section(r, trainer.task, final, run_dir.relative_to(out), s["train_seconds"]))
    write_json(out / "summary.json", summary)
    write_text(out / "report.html", _page(sections, time.perf_counter() - t_start))
    _print_summary(summary)
    print(f"report: {out / 'report.html'}")
    return summary


def _print_summary(summary: dict[str, Any]) -> None:
    from detseg.cli import format_table

    rows = []
    for model, m in summary.items():
        metrics = ", ".join(f"{k}={v:.3f}" for k, v in m.items() if k != "train_seconds")
        rows.append((model, metrics, f"{m['train_seconds']:.0f}s"))
    print(format_table(["model", "val metrics (shapes)", "train time"], rows))


def _section(r: DemoRecipe, task, final: dict[str, Any], rel: Path, seconds: float) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{v:.4f}</td></tr>"
        for k, v in final.items() if isinstance(v, float) and not k.startswith(("lr", "train/"))
    )
    return f"""
<section>
  <h2>{html.escape(r.model)} <small>({html.escape(task.name)}: {html.escape(task.description)})</small></h2>
  <p>{html.escape(r.note)}. Data <code>{html.escape(r.data)}</code>, {r.epochs} epochs at {r.img_size} px,
     {seconds:.0f} s of training. Run folder: <code>{html.escape(str(rel))}</code>.</p>
  <table><tr><th>metric (val, last epoch)</th><th>value</th></tr>{rows}</table>
  <h3>Curves</h3><img src="{rel}/curves.png" alt="curves">
  <h3>Predictions (left) and ground truth (right)</h3><img src="{rel}/samples.png" alt="samples">
</section>"""


def _page(sections: list[str], seconds: float) -> str:
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>detseg demo report</title>
<style>
body {{ font-family: sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0; }}
td, th {{ border: 1px solid #ccc; padding: 3px 10px; text-align: left; }}
img {{ max-width: 100%; border: 1px solid #ddd; }}
section {{ margin-bottom: 3em; }}
</style></head><body>
<h1>detseg demo report</h1>
<p>Every task's demo model trained from scratch on the built-in shapes world and evaluated on its
validation split ({seconds:.0f} s in all).</p>
{''.join(sections)}
</body></html>
"""
