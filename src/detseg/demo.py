"""``detseg demo``: the main job on the built-in shapes world.

Trains each task's demo model with a CPU-sized recipe, evaluates it on the shapes val split, and
writes ``report.html`` (metrics tables, curves, predictions), ``summary.json``
(``{"<model>": {<metric>: value, ..., "train_seconds": s}}``) and a printed summary.
Later issues add their tasks by appending a :class:`DemoRecipe` to ``DEMOS``.

Recipes that share a ``group`` are also compared side by side: one picture with, for a few
validation images, the ground truth and every member's prediction (``compare_<group>.png``) —
here the encoder-decoder FCN with three of its upsampling kinds (learned transpose convolution,
nearest-neighbour unpooling, max-unpooling at the encoder's remembered argmax positions), each
with the same recipe. The two extra variants cost about 4 minutes each on 2 CPU cores, so they
run with ``detseg demo --compare`` (or ``--only``); the default demo stays under 10 minutes. The
report also shows the classic, training-free baseline: mean-shift regions of the validation
images (``meanshift.png``), each region named by the majority ground-truth class — an upper
bound, since it reads the labels.
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
    name: str = ""  # key in summary.json and run folder name (default: the model name)
    time_limit: float | None = None  # minutes of training (the LR schedule decays over them)
    group: str = ""  # recipes of one group are pictured side by side
    extra: bool = False  # only with `detseg demo --compare` (or named by --only)

    @property
    def key(self) -> str:
        return self.name or self.model


# Budgets measured on the 2-core reference machine (docs/BENCHMARKS.md has the runs): the FCN
# needs many distinct scenes more than many epochs (n=4000 x 12 epochs plateaus at mIoU 0.83,
# n=10000 x 5 epochs reaches 0.86 in the same time).
SEG_DATA = "shapes:size=64,n=10000,n_val=300"
DEMOS: list[DemoRecipe] = [
    DemoRecipe("fcn", SEG_DATA, epochs=5, img_size=64, batch=32, lr=4e-3,
               note="encoder-decoder FCN, transpose-convolution upsampling with skips",
               group="upsampling"),
    DemoRecipe("fcn", SEG_DATA, epochs=5, img_size=64, batch=32, lr=4e-3, extra=True,
               model_opts={"upsample": "nearest"}, name="fcn_nearest", group="upsampling",
               note="the same FCN, nearest-neighbour unpooling (fixed) instead of transpose conv"),
    DemoRecipe("fcn", SEG_DATA, epochs=5, img_size=64, batch=32, lr=4e-3, extra=True,
               model_opts={"upsample": "max_unpool"}, name="fcn_max_unpool", group="upsampling",
               note="the same FCN, max-unpooling with the encoder's pool indices"),
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


def run_demo(out: Path, only: list[str] | None = None, scale: float = 1.0,
             compare: bool = False) -> dict[str, Any]:
    """Train/evaluate every demo recipe; returns the summary dict (also written to summary.json)."""
    from detseg.engine.trainer import TrainConfig, Trainer

    out.mkdir(parents=True, exist_ok=True)
    keys = [r.key for r in DEMOS]
    recipes = [r for r in DEMOS if (r.key in only if only else compare or not r.extra)]
    if only and len(recipes) != len(only):
        unknown = set(only) - set(keys)
        raise ValueError(f"--only: no demo for {sorted(unknown)}; demos: {keys}")
    summary: dict[str, Any] = {}
    sections = []
    groups: dict[str, list[tuple[str, Any]]] = {}
    t_start = time.perf_counter()
    for r in recipes:
        print(f"== demo: {r.key} on {r.data} ({r.note})")
        limit = None if r.time_limit is None else r.time_limit * scale
        cfg = TrainConfig(model=r.model, data=r.data, epochs=max(1, round(r.epochs * scale)),
                          img_size=r.img_size, batch=r.batch, lr=r.lr, model_opts=dict(r.model_opts),
                          augment=r.augment, amp=r.amp and fast_bf16(), time_limit=limit,
                          out=str(out / "runs"), name=f"demo_{r.name}" if r.name else "demo",
                          device="auto")
        trainer = Trainer(cfg)
        run_dir = trainer.fit()
        s = trainer.summary()
        final = s["final"]
        metrics = {k: final[k] for k in trainer.task.metric_keys if k in final}
        summary[r.key] = {**metrics, "train_seconds": s["train_seconds"]}
        sections.append(_section(r, trainer.task, final, run_dir.relative_to(out), s["train_seconds"]))
        if r.group:
            groups.setdefault(r.group, []).append((r.key, trainer))
    for group, members in groups.items():
        if len(members) > 1:
            sections.append(_compare_section(out, group, members))
    semantic = [t for ms in groups.values() for _, t in ms if t.task.name == "semantic"]
    if semantic:
        sections.append(_meanshift_section(out, semantic[0].val_set))
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
    budget = f"{r.epochs} epochs" if r.time_limit is None else f"a {r.time_limit:g}-minute budget"
    return f"""
<section>
  <h2>{html.escape(r.key)} <small>({html.escape(task.name)}: {html.escape(task.description)})</small></h2>
  <p>{html.escape(r.note)}. Data <code>{html.escape(r.data)}</code>, {budget} at {r.img_size} px,
     {seconds:.0f} s of training. Run folder: <code>{html.escape(str(rel))}</code>.</p>
  <table><tr><th>metric (val, last epoch)</th><th>value</th></tr>{rows}</table>
  <h3>Curves</h3><img src="{rel}/curves.png" alt="curves">
  <h3>Predictions (left) and ground truth (right)</h3><img src="{rel}/samples.png" alt="samples">
</section>"""


N_PICTURED = 4


def _compare_section(out: Path, group: str, members: list[tuple[str, Any]]) -> str:
    """Ground truth and each member's prediction on the first val images -> ``compare_<group>.png``."""
    from detseg.io import save_png
    from detseg.visualize import draw_target, make_grid

    val = members[0][1].val_set
    task = members[0][1].task
    classes = list(val.seg_classes if task.name == "semantic" else val.classes)
    rows, titles = [], []
    for i in range(min(N_PICTURED, len(val))):
        image, target = val[i]
        cells = [draw_target(image, target, task.name, classes)]
        for _, trainer in members:
            pred = trainer.eval_model.predict([image])[0].prediction
            cells.append(task.draw(image, pred, classes))
        rows.append(cells)
        titles.append(["ground truth", *(k for k, _ in members)])
    save_png(out / f"compare_{group}.png", make_grid(rows, titles))
    metric = task.main_metric
    table = "".join(f"<tr><td>{html.escape(k)}</td><td>{t.summary()['final'].get(metric, float('nan')):.4f}"
                    f"</td><td>{t.train_seconds:.0f} s</td></tr>" for k, t in members)
    return f"""
<section>
  <h2>Side by side: {html.escape(group)}</h2>
  <table><tr><th>model</th><th>{html.escape(metric)} (val)</th><th>training</th></tr>{table}</table>
  <img src="compare_{html.escape(group)}.png" alt="comparison">
</section>"""


def _meanshift_section(out: Path, val) -> str:
    """Mean-shift regions (classic, no training) of the first val images -> ``meanshift.png``."""
    from detseg.classic.meanshift import draw_regions, majority_label_map, meanshift_segment
    from detseg.evaluation import build_evaluator
    from detseg.io import save_png
    from detseg.visualize import draw_prediction, make_grid

    classes = list(val.seg_classes)
    evaluator = build_evaluator("semantic", classes)
    rows, titles = [], []
    t0 = time.perf_counter()
    for i in range(min(N_PICTURED, len(val))):
        image, target = val[i]
        regions = meanshift_segment(image, spatial_bandwidth=8, color_bandwidth=8)
        named = majority_label_map(regions, target["sem_seg"], len(classes))
        evaluator.update([{"sem_seg": named}], [target])
        rows.append([draw_regions(image, regions),
                     draw_prediction(image, {"sem_seg": named}, "semantic", classes)])
        titles.append([f"{int(regions.max()) + 1} regions", "regions named by majority label"])
    seconds = (time.perf_counter() - t0) / max(1, len(rows))
    save_png(out / "meanshift.png", make_grid(rows, titles))
    miou = evaluator.compute()["mIoU"]
    return f"""
<section>
  <h2>Mean shift (classic baseline, no training)</h2>
  <p>scikit-learn's MeanShift over colour (L*a*b*) and position, bandwidths 8 px and 8 units,
     {seconds:.1f} s per image. Each region is named by the majority ground-truth class of its
     pixels, so the mIoU on these {len(rows)} images, {miou:.3f}, is an <em>upper bound</em> of
     what the regions allow, not a prediction.</p>
  <img src="meanshift.png" alt="mean-shift regions">
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
