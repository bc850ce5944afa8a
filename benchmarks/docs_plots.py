"""The plots ``benchmarks/make_docs.py`` draws from the results JSON (matplotlib, Agg).

Each plot is two steps: a cheap *data* function (records -> what to draw, or ``None`` when the
records cannot make the plot) that ``make_docs`` also calls while rendering, so the markdown links
a plot exactly when the JSON allows one, whether or not the PNG is on disk; and a *draw* function
(data -> figure). :func:`write_plot` saves the PNG atomically and only when its bytes change: the
PNG carries no software or date metadata, so the same JSON gives the same bytes and an unchanged
file is left alone (``make_docs --check`` compares the markdown only, never these files).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

Records = list[dict[str, Any]]


def number(value: Any) -> float | None:
    """``value`` as a finite float, or ``None`` (missing, text, NaN, a bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _labels(records: Records) -> list[str]:
    """The model column of each record; a repeated name gets its row number (``#2``)."""
    names = [str(r.get("model", f"row {i}")) for i, r in enumerate(records, 1)]
    return [f"{n} #{i}" if names.count(n) > 1 else n for i, n in enumerate(names, 1)]


# -- mIoU against CPU time, one labelled point per model ------------------------------------------

def speed_accuracy_data(records: Records, x: str = "cpu_ms_per_image",
                        y: str = "mIoU") -> dict[str, Any] | None:
    """The labelled ``(x, y)`` points of the records that hold both numbers; ``None`` if none do."""
    rows = [r for r in records if number(r.get(x)) is not None and number(r.get(y)) is not None]
    several_sizes = len({r.get("img_size") for r in rows}) > 1
    points = [(_short(str(r.get("model", "?"))) + (f" @{r.get('img_size')}" if several_sizes else ""),
               number(r.get(x)), number(r.get(y))) for r in rows]
    return {"x": x, "y": y, "points": points} if points else None


def _short(label: str) -> str:
    """``fcn:upsample=nearest;class_weights=median_frequency`` -> ``fcn nearest``: the name and
    the values of its options (the common median-frequency weights left out) for a plot label."""
    name, _, opts = label.partition(":")
    values = [kv.partition("=")[2] for kv in opts.split(";")
              if kv and kv != "class_weights=median_frequency"]
    return " ".join([name, *values])


def draw_speed_accuracy(data: dict[str, Any], title: str):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 3.6))
    ax = fig.add_subplot()
    for label, px, py in data["points"]:
        ax.plot(px, py, "o", color="tab:blue")
        ax.annotate(label, (px, py), textcoords="offset points", xytext=(5, 4),
                    fontsize=8)
    xs = [p[1] for p in data["points"]]
    ax.set_xlim(0, max(xs) * 1.25)  # room for the labels of the slowest point
    ax.set_xlabel(f"{data['x']} (eval mode, batch 1; lower is faster)")
    ax.set_ylabel(data["y"])
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    return fig


# -- per-joint PCK, grouped bars per model ---------------------------------------------------------

def joint_keys(records: Records, prefix: str = "PCK@0.2/") -> list[str]:
    """The per-joint keys (``PCK@0.2/<joint>``), in first-seen order."""
    seen: list[str] = []
    for r in records:
        seen += [k for k in r if k.startswith(prefix) and k not in seen]
    return seen


def joints_data(records: Records, prefix: str = "PCK@0.2/") -> dict[str, Any] | None:
    """Per model (the records with any per-joint value), its value per joint; ``None`` if none."""
    keys = joint_keys(records, prefix)
    rows = [(label, [number(r.get(k)) for k in keys]) for label, r in zip(_labels(records), records)]
    rows = [(label, v) for label, v in rows if any(x is not None for x in v)]
    if not keys or not rows:
        return None
    return {"metric": prefix.rstrip("/"), "joints": [k[len(prefix):] for k in keys], "models": rows}


def draw_joints(data: dict[str, Any], title: str):
    from matplotlib.figure import Figure

    joints, models = data["joints"], data["models"]
    fig = Figure(figsize=(8.5, 3.6))
    ax = fig.add_subplot()
    width = 0.8 / len(models)
    for m, (label, values) in enumerate(models):
        xs = [j + (m - (len(models) - 1) / 2) * width for j in range(len(joints))]
        ax.bar(xs, [v if v is not None else 0.0 for v in values], width, label=label)
    ax.set_xticks(range(len(joints)))
    ax.set_xticklabels([j.replace("_", " ") for j in joints], rotation=45, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel(data["metric"])
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return fig


# -- writing -----------------------------------------------------------------------------------

def png_bytes(fig) -> bytes:
    """The figure as PNG bytes, without the metadata that would change them from run to run."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    return buf.getvalue()


def write_plot(path: Path, draw: Callable[..., Any], data: Any, title: str) -> bool:
    """Draw ``data`` and save it at ``path`` atomically if the bytes differ; True if written."""
    from detseg.io import atomic_path

    payload = png_bytes(draw(data, title))
    if path.is_file() and path.read_bytes() == payload:
        return False
    with atomic_path(path) as tmp:
        tmp.write_bytes(payload)
    return True
