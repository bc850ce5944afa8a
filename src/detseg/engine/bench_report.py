"""The outputs of ``detseg bench``: the latency-vs-mAP Pareto front, the scatter plot with the
front drawn (as Huang et al. 2017, Fig. 2), the printed table, the provenance fields of every row
(command, date, machine, versions: those of ``benchmarks/common.py``) and the JSON / CSV / PNG files.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Sequence

from detseg.tables import format_table


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points ``(latency, accuracy)`` no other point dominates (at most as slow
    and at least as accurate, one of the two strictly), by increasing latency. NaNs are never
    on the front; of identical points the first is."""
    order = sorted((i for i, (x, y) in enumerate(points) if x == x and y == y),
                   key=lambda i: (points[i][0], -points[i][1], i))
    front, best = [], -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def plot_tradeoff(rows: Sequence[dict[str, Any]], path: str | Path, title: str = "",
                  x: str = "latency_ms", y: str = "mAP") -> None:
    """Latency-vs-mAP scatter, the Pareto front as a staircase (Huang et al. 2017, Fig. 2):
    detseg entries as circles, peers as triangles, a floor baseline (``central_box``) as a
    dotted horizontal line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from detseg.io import save_figure

    pts = [(math.nan, math.nan) if r.get("baseline") else
           (float(r.get(x, math.nan)), float(r.get(y, math.nan))) for r in rows]
    front = pareto_front(pts)
    fig, ax = plt.subplots(figsize=(7.5, 5))
    styles = {"detseg": ("o", "tab:blue"), "peer": ("^", "tab:red")}
    for group, (marker, colour) in styles.items():
        sel = [i for i, r in enumerate(rows) if _group(r) == group and pts[i][0] == pts[i][0]]
        if sel:
            ax.scatter([pts[i][0] for i in sel], [pts[i][1] for i in sel], marker=marker, s=60,
                       color=colour, label=group if group != "detseg" else "detseg", zorder=3)
    for r in rows:  # a floor, not a detector: a line across the plot, off the front
        if r.get("baseline") and r.get(y) is not None:
            ax.axhline(float(r[y]), color="tab:gray", ls=":", lw=1.2, label=f"floor: {r.get('model')}")
    if front:
        fx = [pts[i][0] for i in front]
        fy = [pts[i][1] for i in front]
        ax.step(fx, fy, where="post", color="black", lw=1.2, ls="--", label="Pareto front", zorder=2)
    for i, r in enumerate(rows):
        if pts[i][0] == pts[i][0] and pts[i][1] == pts[i][1]:
            ax.annotate(str(r.get("model", i)), pts[i], textcoords="offset points", xytext=(5, 4),
                        fontsize=7)
    finite = [p[0] for p in pts if p[0] == p[0] and p[0] > 0]
    if finite and max(finite) / min(finite) > 20:
        ax.set_xscale("log")
    ax.set_xlabel(f"{x} (batch 1, CPU)")
    ax.set_ylabel(f"{y} (COCO, val)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    save_figure(path, fig)
    plt.close(fig)


def _group(row: dict[str, Any]) -> str:
    return "baseline" if row.get("baseline") else "peer" if row.get("peer") else "detseg"


TABLE = (("model", "model"), ("peer", "peer"), ("img", "img_size"), ("mAP", "mAP"),
         ("mAP50", "mAP50"), ("ms/img", "latency_ms"), ("img/s@8", "images_per_s"),
         ("params(M)", "params_m"), ("GFLOPs", "gflops"), ("peak RSS MiB", "peak_rss_mib"),
         ("train s", "train_seconds"), ("front", "pareto"))


def format_rows(rows: Sequence[dict[str, Any]]) -> str:
    """The study's table (``detseg.tables.format_table``)."""
    body = []
    for r in rows:
        r = {**r, "params_m": round(r.get("params", 0) / 1e6, 2),
             "peer": "peer" if r.get("peer") else "floor" if r.get("baseline") else "",
             "pareto": "*" if r.get("pareto") else ""}
        body.append(["-" if r.get(k) is None else r.get(k) for _, k in TABLE])
    return format_table([h for h, _ in TABLE], body)


def dataset_name(data: str) -> str:
    """The results-file suffix of a ``--data`` value: ``shapes`` or the folder's name, lower case
    (data options after the path, ``PATH:crop=person``, are not part of it)."""
    if data.startswith("shapes"):
        return "shapes"
    path = data.rstrip("/")
    if ":" in Path(path).name:
        path = path[: path.rindex(":")]
    return Path(path.rstrip("/")).name.lower()


def machine() -> str:
    """CPU count and model, e.g. ``2 CPUs, Intel(R) Xeon(R) ... (Linux x86_64)``."""
    import platform

    model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{n} CPUs, {model} ({platform.system()} {platform.machine()})".replace(", (", " (")


def versions(*packages: str) -> dict[str, str]:
    """``{"python": ..., "detseg": ..., package: version}`` ("not installed" when missing)."""
    import platform
    from importlib import metadata

    out = {"python": platform.python_version()}
    for p in ("detseg", *packages):
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = "not installed"
    return out


def utc_now() -> str:
    import datetime as dt

    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def provenance(command: str, *packages: str) -> dict[str, Any]:
    """``command``, ``date`` (UTC), ``machine`` and ``versions``: the fields every benchmark
    record of ``benchmarks/common.py`` carries (it uses the same functions)."""
    return {"command": command, "date": utc_now(), "machine": machine(),
            "versions": versions("torch", "torchvision", *packages)}


def write_outputs(rows: list[dict[str, Any]], out: Path, name: str, title: str = "") -> dict[str, Path]:
    """``tradeoff_<name>.json`` / ``.csv`` / ``.png`` under ``out`` (atomic writes)."""
    from detseg.io import write_csv, write_json

    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"tradeoff_{name}"
    paths = {"json": stem.with_suffix(".json"), "csv": stem.with_suffix(".csv"),
             "png": stem.with_suffix(".png")}
    write_json(paths["json"], rows)
    flat = [{k: (", ".join(f"{a}={b}" for a, b in v.items()) if isinstance(v, dict) else v)
             for k, v in r.items()} for r in rows]
    write_csv(paths["csv"], flat)
    plot_tradeoff(rows, paths["png"], title=title)
    return paths


def mark_front(rows: list[dict[str, Any]]) -> None:
    """``row["pareto"]``: on the latency-vs-mAP front of the detectors (floor rows never are)."""
    front = set(pareto_front([(math.nan, math.nan) if r.get("baseline") else
                              (float(r.get("latency_ms", math.nan)), float(r.get("mAP", math.nan)))
                              for r in rows]))
    for i, r in enumerate(rows):
        r["pareto"] = i in front


