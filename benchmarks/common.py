"""Helpers every benchmark script shares: where results go, how a record is stamped and written.

A benchmark writes ``benchmarks/results/<name>.json``: a JSON list of flat records (one per row of
the eventual table). ``benchmarks/make_docs.py`` renders all of them into ``docs/BENCHMARKS.md``.
Files are written atomically (``detseg.io.write_json``), so an interrupted run never leaves half a
file behind.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

from detseg.engine.bench_report import machine, utc_now, versions  # noqa: F401 (re-exported)
from detseg.io import write_json

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def results_path(name: str) -> Path:
    return RESULTS / f"{name}.json"


def read_results(name: str) -> list[dict[str, Any]]:
    """The records of ``benchmarks/results/<name>.json`` (empty when the file does not exist)."""
    path = results_path(name)
    if not path.exists():
        return []
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of records, got {type(data).__name__}")
    return data


def write_results(name: str, records: Sequence[dict[str, Any]]) -> Path:
    """Write ``records`` (replacing the file) atomically; returns the path."""
    path = results_path(name)
    write_json(path, list(records))
    return path


def append_or_replace(name: str, records: Iterable[dict[str, Any]],
                      key: Sequence[str] = ("benchmark", "evaluator", "model", "dataset")) -> Path:
    """Merge ``records`` into the file: a stored record with the same ``key`` fields is replaced,
    others are kept (so benchmarks run piecemeal -- one model at a time -- build one table)."""

    def ident(r: dict[str, Any]) -> tuple:
        return tuple(json.dumps(r.get(k), sort_keys=True) for k in key)

    new = list(records)
    fresh = {ident(r) for r in new}
    kept = [r for r in read_results(name) if ident(r) not in fresh]
    return write_results(name, kept + new)


def print_rows(rows: Sequence[dict[str, Any]], head: Sequence[str]) -> None:
    """``rows``' ``head`` fields as a table on stdout (a field a row lacks prints as ``-``)."""
    from detseg.tables import format_table

    print(format_table(head, [[r.get(h, "-") for h in head] for r in rows]))


def command_line() -> str:
    """How this script was run, as a command someone can paste (paths relative to the repo)."""
    script = Path(sys.argv[0]).resolve()
    try:
        script_s = str(script.relative_to(ROOT))
    except ValueError:
        script_s = str(script)
    return " ".join(["python", shlex.quote(script_s), *map(shlex.quote, sys.argv[1:])])


def stamp(record: dict[str, Any], *packages: str) -> dict[str, Any]:
    """``record`` plus ``command``, ``date`` (UTC), ``machine`` and ``versions``."""
    return {**record, "command": command_line(), "date": utc_now(), "machine": machine(),
            "versions": versions(*packages)}


def split_entries(text: str) -> list[str]:
    """``--models`` text -> its entries: commas separate them except inside brackets, so a list
    option stays whole (``"faster_rcnn:anchor_sizes=[8,16,32];fpn_channels=64,fast_rcnn"``)."""
    out, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += {"[": 1, "]": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            out.append(text[start:i])
            start = i + 1
    out.append(text[start:])
    return [e.strip() for e in out if e.strip()]


def parse_entry(entry: str) -> tuple[str, dict[str, Any]]:
    """``"name:key=value;key=value"`` -> ``("name", {key: YAML scalar})`` (a model and its options)."""
    import yaml

    name, _, rest = entry.partition(":")
    opts = {}
    for item in filter(None, rest.split(";")):
        k, _, v = item.partition("=")
        opts[k] = yaml.safe_load(v)
    return name, opts


def dataset_name(data: str) -> str:
    """The results-file suffix of a ``--data`` value (:func:`detseg.engine.bench_report.dataset_name`)."""
    from detseg.engine.bench_report import dataset_name as name

    return name(data)


def model_cost(model, height: int, width: int, repeat: int = 5) -> tuple[int, float, float]:
    """(params, GFLOPs per image, CPU ms per image) of ``model`` in eval mode, batch 1, on one
    random ``height x width`` image (FLOPs by torch's FlopCounterMode, a multiply-add counted once)."""
    import time

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model = model.to("cpu").eval()
    params = sum(p.numel() for p in model.parameters())
    image = [torch.rand(3, height, width)]
    with torch.no_grad():
        with FlopCounterMode(display=False) as fc:
            model(image)  # also the warm-up: first-call allocations and oneDNN kernel choice
        model(image)
        t = time.perf_counter()
        for _ in range(repeat):
            model(image)
        ms = (time.perf_counter() - t) / repeat * 1000
    return params, fc.get_total_flops() / 2 / 1e9, ms
