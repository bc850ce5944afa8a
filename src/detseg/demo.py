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

Three panels picture what the numbers summarise: the pose panel (``panel_<model>.png``) draws the
ground-truth and predicted skeletons of a few validation stick figures with PCK@0.2, and the
detection panel (``panel_<model>.png``) shows, for a few validation scenes, the first
selective-search proposals, the final detections (class, score) and the ground truth, with mAP50;
the instance panel draws Mask R-CNN's masks next to the ground-truth instances, with mask mAP.
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from detseg.io import write_json, write_text
from detseg.tables import format_table


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


# Training budgets (minutes) of the pose and detection panels, chosen by the lead's measurement of
# the whole default demo on the 2-core reference machine (the demo must stay under 10 minutes):
# change them here only.
POSE_MINUTES = 1.0
DETECTION_MINUTES = 1.0
INSTANCE_MINUTES = 1.0
# Mask R-CNN sized for 64 px scenes on a CPU: a narrow FPN, anchors of the objects' sizes, fewer RPN
# proposals than torchvision's 2000 / 1000 (there are at most a few objects per scene).
MASK_RCNN_CPU = {"backbone": "alexnet_small_fpn", "fpn_channels": 64, "representation": 256,
                 "anchor_sizes": [8, 16, 32, 48, 64], "rpn_pre_nms_top_n_train": 300,
                 "rpn_post_nms_top_n_train": 100, "rpn_pre_nms_top_n_test": 300,
                 "rpn_post_nms_top_n_test": 100, "box_batch_size_per_image": 64}

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
    # The better of the two pose methods (benchmarks/pose.py); ``epochs`` only caps the budget.
    DemoRecipe("pose_heatmap", "shapes:size=64,mode=person,n=4000,n_val=200", epochs=3, img_size=64,
               batch=32, lr=2e-3, time_limit=POSE_MINUTES,
               note="simple-baselines pose: deconvolution head, one heatmap per joint"),
    # RoI pooling has no bfloat16 CPU kernel in torchvision: float32. Selective search dominates
    # a step at 64 px, so its proposals are cached (run_demo): epochs after the first are cheap.
    # RoIs are pooled from the stride-8 map (c3): at 64 px the default c4 is 4 x 4 cells
    # (measured: mAP50 0.30 with c4 vs 0.50 with c3 after ~40 s; fast-mode recall@0.5 is 0.90).
    DemoRecipe("fast_rcnn", "shapes:size=64,mode=scene,n=600,n_val=100", epochs=8, img_size=64,
               batch=16, lr=4e-3, amp=False, time_limit=DETECTION_MINUTES,
               model_opts={"feature": "c3"},
               note="Fast R-CNN: selective search, RoI pooling, softmax + box regression"),
    DemoRecipe("mask_rcnn", "shapes:size=64,mode=scene,n=2000,n_val=100", epochs=20, img_size=64,
               batch=16, lr=2e-3, amp=False, time_limit=INSTANCE_MINUTES, model_opts=MASK_RCNN_CPU,
               note="Mask R-CNN: RPN + RoIAlign, box head and a per-class 28x28 mask head"),
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
                          img_size=r.img_size, batch=r.batch, lr=r.lr,
                          model_opts=_model_opts(r, out),
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
        if trainer.task.name in PANELS:
            sections.append(PANELS[trainer.task.name](out, r.key, trainer))
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


def _model_opts(r: DemoRecipe, out: Path) -> dict[str, Any]:
    """The recipe's builder options; a selective-search cache under ``out`` where the model has one
    (the shapes samples are fixed, so every epoch after the first reads its proposals from disk)."""
    from detseg.models.zoo import model_options

    opts = dict(r.model_opts)
    if "proposal_cache" in model_options(r.model) and "proposal_cache" not in opts:
        opts["proposal_cache"] = str(out / "proposal_cache")
    return opts


def _print_summary(summary: dict[str, Any]) -> None:

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


PCK_ALPHA = 0.2  # the task's metric, PCK@0.2 (torso-normalised, the LSP convention)
PROPOSALS_DRAWN = 50  # more outlines would hide a 64 px scene
DETECTION_SCORE = 0.5  # detections drawn; mAP50 counts every score


def _predict(model, image) -> dict[str, Any]:
    """One image's prediction dict (CPU tensors), without a graph."""
    import torch

    with torch.no_grad():
        return model.predict([image])[0].prediction


def _pose_section(out: Path, key: str, trainer) -> str:
    """Ground-truth (top) and predicted (bottom) skeletons of the first val stick figures, each
    titled with its joints within ``PCK_ALPHA`` torso lengths -> ``panel_<key>.png``."""
    import numpy as np

    from detseg.evaluation.keypoints import pck_correct
    from detseg.io import save_png
    from detseg.visualize import draw_prediction, draw_target, make_grid

    val, model = trainer.val_set, trainer.eval_model
    classes = list(val.classes)
    truth, preds, truth_titles, pred_titles = [], [], [], []
    for i in range(min(N_PICTURED, len(val))):
        image, target = val[i]
        pred = _predict(model, image)
        gt = np.asarray(target["keypoints"], dtype=np.float64)
        gt = gt.reshape(-1, *gt.shape[-2:])[:1]  # [1, K, 3]: the figure
        dt = np.asarray(pred["keypoints"], dtype=np.float64).reshape(gt.shape)
        box = (np.asarray(target["boxes"], dtype=np.float64).reshape(-1, 4)[:1]
               if len(target.get("boxes", ())) else np.full((1, 4), np.nan))
        correct, counted = pck_correct(dt, gt, box, PCK_ALPHA)
        truth.append(draw_target(image, target, "pose", classes))
        preds.append(draw_prediction(image, pred, "pose", classes))
        truth_titles.append("ground truth")
        pred_titles.append(f"prediction: {int(correct.sum())}/{int(counted.sum())} joints correct")
    save_png(out / f"panel_{key}.png", make_grid([truth, preds], [truth_titles, pred_titles]))
    pck = trainer.summary()["final"].get(f"PCK@{PCK_ALPHA:g}", float("nan"))
    return f"""
<section>
  <h2>Pose: {html.escape(key)} on stick figures</h2>
  <p>PCK@{PCK_ALPHA:g} on the validation figures: <b>{pck:.3f}</b> (a joint is correct within
     {PCK_ALPHA:g} torso lengths of the truth). Skeletons: the person's right side red, left blue,
     head and neck yellow; each prediction is titled with its correct joints.</p>
  <img src="panel_{html.escape(key)}.png" alt="ground-truth and predicted skeletons">
</section>"""


def _proposals(model, image):
    """A two-stage detector's proposals for one image: ``Tensor[N, 4]`` xyxy in its pixels."""
    import torch

    model.eval()
    with torch.no_grad():
        batch, resized = model.transform([image.to(model.device)])
        features = model.backbone(batch.tensor) if model.backbone is not None else None
        props, _ = model.propose([image], resized, features, None, None, batch)
    (h, w), (oh, ow) = batch.image_sizes[0], batch.original_sizes[0]
    return props[0].cpu() * torch.tensor([ow / w, oh / h] * 2)


def _detection_section(out: Path, key: str, trainer) -> str:
    """For the first val scenes: the first proposals, the detections and the ground truth ->
    ``panel_<key>.png``."""
    from detseg.io import save_png
    from detseg.visualize import draw_prediction, draw_proposals, draw_target, make_grid

    val, model = trainer.val_set, trainer.eval_model
    classes = list(val.classes)
    rows, titles, counts = [], [], []
    for i in range(min(N_PICTURED, len(val))):
        image, target = val[i]
        pred = _predict(model, image)
        cells = [draw_prediction(image, pred, "detection", classes, score_thresh=DETECTION_SCORE),
                 draw_target(image, target, "detection", classes)]
        row_titles = [f"detections (score >= {DETECTION_SCORE:g})", "ground truth"]
        if hasattr(model, "propose"):  # two-stage: picture the regions the head scored
            props = _proposals(model, image)
            counts.append(len(props))
            cells.insert(0, draw_proposals(image, props, PROPOSALS_DRAWN))
            shown = f"first {PROPOSALS_DRAWN} of " if len(props) > PROPOSALS_DRAWN else ""
            row_titles.insert(0, f"{shown}{len(props)} proposals")
        rows.append(cells)
        titles.append(row_titles)
    save_png(out / f"panel_{key}.png", make_grid(rows, titles))
    final = trainer.summary()["final"]
    mean_props = f"{sum(counts) / len(counts):.0f} proposals per image on average, " if counts else ""
    return f"""
<section>
  <h2>Detection: {html.escape(key)} on shapes scenes</h2>
  <p>mAP50 on the validation scenes: <b>{final.get("mAP50", float("nan")):.3f}</b>
     (COCO mAP {final.get("mAP", float("nan")):.3f}). Pictured: {mean_props}the first
     {PROPOSALS_DRAWN} drawn (left), the detections scoring at least {DETECTION_SCORE:g} with their
     class and score (middle), the ground truth (right).</p>
  <img src="panel_{html.escape(key)}.png" alt="proposals, detections and ground truth">
</section>"""


def _instance_section(out: Path, key: str, trainer) -> str:
    """For the first val scenes: the predicted instance masks (class, score) and the ground truth
    -> ``panel_<key>.png``."""
    from detseg.io import save_png
    from detseg.visualize import draw_prediction, draw_target, make_grid

    val, model = trainer.val_set, trainer.eval_model
    classes = list(val.classes)
    rows, titles = [], []
    for i in range(min(N_PICTURED, len(val))):
        image, target = val[i]
        pred = _predict(model, image)
        rows.append([draw_prediction(image, pred, "instance", classes, score_thresh=DETECTION_SCORE),
                     draw_target(image, target, "instance", classes)])
        titles.append([f"instances (score >= {DETECTION_SCORE:g})", "ground truth"])
    save_png(out / f"panel_{key}.png", make_grid(rows, titles))
    final = trainer.summary()["final"]
    return f"""
<section>
  <h2>Instance segmentation: {html.escape(key)} on shapes scenes</h2>
  <p>Mask mAP on the validation scenes: <b>{final.get("mask_mAP", float("nan")):.3f}</b>
     (box mAP {final.get("mAP", float("nan")):.3f}, box mAP50 {final.get("mAP50", float("nan")):.3f}).
     Pictured: each detection scoring at least {DETECTION_SCORE:g} with its mask, class and score
     (left), the ground-truth instances (right).</p>
  <img src="panel_{html.escape(key)}.png" alt="predicted instance masks and ground truth">
</section>"""


PANELS = {"pose": _pose_section, "detection": _detection_section, "instance": _instance_section}


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
