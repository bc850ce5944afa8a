"""``detseg bench``: the speed/accuracy trade-off study of detectors on one machine, one dataset,
one evaluator (Huang et al., "Speed/accuracy trade-offs for modern convolutional object
detectors", CVPR 2017).

For each entry (a zoo detector with options and an image size, a checkpoint, a peer of
:mod:`detseg.engine.bench_peers`, or the constant-box floor) the study trains with the same
budget (``minutes`` of training time: the LR decays over it, see :mod:`detseg.engine.schedule`)
on the same train split, then measures it in this process on the same val split:

* ``mAP`` (AP@[.5:.95]), ``mAP50`` and VOC ``AP50/<class>`` by detseg's COCO evaluator on the
  predictions (peers too: never their own mAP code);
* ``latency_ms``: median wall time of one ``predict([image])`` (pre- and post-processing
  included, any proposal cache switched off) over >= 10 timed runs on val images after untimed
  warm-up runs, with ``torch.set_num_threads(threads)`` (2 by default);
* ``images_per_s``: a batch of 8 val images per call, ``8 / median`` call time, same threads;
* ``params`` and ``gflops``: FLOPs of one batch-1 forward on the first val image counted by
  ``torch.utils.flop_counter.FlopCounterMode`` (aten convolutions and matrix products; NMS,
  RoI pooling and resizing are not counted) divided by 2, a multiply-add counted once, as in
  ``benchmarks/common.py``'s ``model_cost``;
* ``peak_rss_mib``: the process's peak resident memory while the entry is measured (evaluation,
  timing, FLOP count). ``ru_maxrss`` never goes down within a process, so the kernel's peak
  (``VmHWM``) is reset through ``/proc/self/clear_refs`` before each entry (Linux); the figure
  includes the interpreter, torch and the data (the same for every entry), and
  ``rss_increase_mib`` is the part above the RSS at the start of the entry's measurement.
  ``train_peak_rss_mib`` is the same peak over the entry's training. Where the reset is not
  possible (not Linux), RSS is sampled every 10 ms by a thread instead.

Rows carry ``peer`` (a library other than detseg) and ``pareto`` (on the latency-vs-mAP Pareto
front: no other row is at least as fast and at least as accurate). Outputs: ``tradeoff_<dataset>``
``.json`` / ``.csv`` and a ``.png`` scatter plot with the front drawn, as Huang et al.'s Fig. 2.
"""

from __future__ import annotations

import contextlib
import gc
import re
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from detseg.engine.bench_measure import BenchModel, CentralBox, ZooModel, measure, warm_proposal_cache
from detseg.engine.bench_peers import PEERS
from detseg.engine.bench_report import dataset_name, mark_front, provenance, write_outputs

# Entry options the study itself reads; every other key goes to the model's builder.
IMG_KEY, CKPT_KEY = "img", "ckpt"
BASELINES = ("central_box",)


@dataclass
class Entry:
    """One row of the study: ``NAME[:key=value;key=value]`` as written on the command line."""

    text: str
    name: str
    opts: dict[str, Any]
    img: int | None = None
    ckpt: str | None = None

    @property
    def kind(self) -> str:
        if self.ckpt is not None:
            return "checkpoint"
        if self.name in BASELINES:
            return "baseline"
        return "peer" if self.name in PEERS else "zoo"


def parse_entries(text: str, checkpoints: Sequence[str] = ()) -> list[Entry]:
    """``"yolo:img=320,ssd:img=320;extra_levels=1"`` -> entries; options are YAML scalars.

    Entries are separated by ``,``, a name from its options by ``:``, options by ``;`` (the
    syntax of ``benchmarks/detection.py --models``; ``-o KEY=VALUE`` of ``detseg train`` as one
    string). ``img`` is the input size, ``ckpt`` a checkpoint to measure instead of training.
    Each of ``checkpoints`` adds an entry for that file, named after its builder.

    Raises:
        ValueError: an empty entry list, an item without ``=``, or an unknown model name.
    """
    import yaml

    from detseg.models.zoo import ZOO

    items = [e.strip() for e in text.split(",") if e.strip()] if text else []
    items += [f"{_ckpt_builder(p)}:{CKPT_KEY}={p}" for p in checkpoints]
    if not items:
        raise ValueError("--entries: no entry given (e.g. 'yolo:img=320,ssd:img=320')")
    detectors = [n for n, e in ZOO.items() if e.task == "detection"]
    entries = []
    for item in items:
        name, _, rest = item.partition(":")
        opts: dict[str, Any] = {}
        for kv in filter(None, (s.strip() for s in rest.split(";"))):
            key, sep, value = kv.partition("=")
            if not sep or not key:
                raise ValueError(f"--entries: {item!r}: option {kv!r}: expected KEY=VALUE")
            opts[key.replace("-", "_")] = yaml.safe_load(value) if value else ""
        if name not in detectors and name not in PEERS and name not in BASELINES:
            raise ValueError(f"--entries: {item!r}: unknown detector {name!r}; known: "
                             f"{', '.join([*detectors, *PEERS, *BASELINES])}")
        img = opts.pop(IMG_KEY, None)
        if img is not None and (not isinstance(img, int) or img <= 0):
            raise ValueError(f"--entries: {item!r}: img={img!r}: expected a positive integer")
        ckpt = opts.pop(CKPT_KEY, None)
        entries.append(Entry(item, name, opts, img, None if ckpt is None else str(ckpt)))
    return entries


def _ckpt_builder(path: str) -> str:
    from detseg.engine.checkpoint import load_checkpoint

    return str(load_checkpoint(path)["builder"])


@dataclass
class BenchConfig:
    """Every option of ``detseg bench`` (the CLI flags map 1:1 onto these)."""

    data: str
    entries: str = ""
    checkpoints: list[str] = field(default_factory=list)
    minutes: float | None = 15.0  # training budget per entry; None = train `epochs` epochs
    epochs: int = 1000  # the schedule's length; the budget normally stops training first
    img_size: int = 320  # entries without img=
    batch: int = 8
    lr: float = 1e-3
    augment: str = "flip"
    amp: bool = False
    train_split: str = "train"
    val_split: str = "val"
    seed: int = 0
    threads: int = 2  # torch threads while timing
    timed_runs: int = 20  # batch-1 latency runs (at least 10)
    warmup: int = 3
    throughput_batch: int = 8
    throughput_runs: int = 3
    proposal_cache: str | None = None  # selective-search cache for rcnn / fast_rcnn
    warm_cache: bool = False  # fill that cache before the timed training
    out: str = "bench"
    name: str | None = None  # results-file suffix (default: the dataset's name)
    keep_checkpoints: bool = True  # write <checkpoint_dir>/<entry>.pt of every trained zoo model
    checkpoint_dir: str | None = None  # default: OUT/checkpoints
    quiet: bool = False


# -- training ---------------------------------------------------------------------------------
def _train_config(cfg: BenchConfig, model: str, img: int | None, opts: dict[str, Any], out: str,
                  augment: str | None = None):
    from detseg.engine.trainer import TrainConfig

    return TrainConfig(model=model, data=cfg.data, epochs=cfg.epochs, img_size=img, batch=cfg.batch,
                       lr=cfg.lr, model_opts=opts, out=out, device="cpu", quiet=True,
                       augment=augment or cfg.augment, amp=cfg.amp, time_limit=cfg.minutes,
                       train_split=cfg.train_split, val_split=cfg.val_split, seed=cfg.seed)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", text).strip("_")[:120]


def train_entry(entry: Entry, cfg: BenchConfig, train_set, val_set, work: Path) -> tuple[BenchModel, dict[str, Any]]:
    """Train (or load) one entry; ``(model, facts)`` with train seconds and epochs."""
    from detseg.engine import bench_peers

    img = entry.img or cfg.img_size
    if entry.kind == "baseline":
        return CentralBox(train_set), {"train_seconds": 0.0, "epochs_done": 0}
    if entry.kind == "checkpoint":
        from detseg.engine.checkpoint import load_checkpoint, model_from_checkpoint

        state = load_checkpoint(entry.ckpt)
        model = model_from_checkpoint(state, **entry.opts)
        return ZooModel(model), {"train_seconds": round(float(state.get("train_seconds", 0.0)), 1),
                                 "epochs_done": int(state.get("epoch", 0)), "checkpoint": entry.ckpt}
    if entry.kind == "peer":
        return bench_peers.train_peer(entry, cfg, img, train_set, val_set, work)
    from detseg.engine.checkpoint import save_checkpoint
    from detseg.engine.trainer import Trainer
    from detseg.models.zoo import model_options

    opts = dict(entry.opts)
    if cfg.proposal_cache and "proposal_cache" in model_options(entry.name):
        opts.setdefault("proposal_cache", cfg.proposal_cache)
    trainer = Trainer(_train_config(cfg, entry.name, img, opts, str(work / "runs")), hooks=[])
    # The study evaluates every entry itself, after training: no validation inside fit().
    own_val, trainer.val_set = trainer.val_set, None
    warm_s = 0.0
    if cfg.warm_cache:
        warm_s, _ = warm_proposal_cache(trainer.eval_model, (trainer.train_set, own_val))
    trainer.fit()
    facts = {"train_seconds": round(trainer.train_seconds, 1), "epochs_done": len(trainer.history)}
    if warm_s:
        facts["proposals_precomputed_seconds"] = round(warm_s, 1)
    if cfg.keep_checkpoints:
        path = Path(cfg.checkpoint_dir or Path(cfg.out) / "checkpoints") / f"{_slug(entry.text)}.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        trainer.val_set = own_val
        save_checkpoint(path, trainer.state_dict())
        facts["checkpoint"] = str(path)
    return ZooModel(trainer.eval_model), facts


def study_datasets(cfg: BenchConfig):
    """The study's train set (augmented as ``cfg.augment``) and val set, as the trainer builds them."""
    from detseg.engine.trainer import build_datasets

    train, val = build_datasets(_train_config(cfg, "yolo", None, {}, cfg.out), "detection")
    if val is None:
        raise ValueError(f"{cfg.data}: no val split {cfg.val_split!r}: the study needs one")
    return train, val


# -- the study ------------------------------------------------------------------------------
class StudyProgress:
    """One tqdm bar over the whole study in expected seconds: each entry counts its training
    budget plus a measurement estimate (the first entry's measured time, then the mean); a
    thread advances the bar with the clock inside a phase, never past the phase's share, so the
    ETA is the expected time left."""

    MEASURE_GUESS_S = 30.0

    def __init__(self, train_shares: Sequence[float], disable: bool = False):
        from tqdm import tqdm

        self.measure_s: list[float] = []
        self.done = 0.0
        total = sum(train_shares) + len(train_shares) * self.MEASURE_GUESS_S
        self.bar = tqdm(total=max(1, round(total)), desc="bench", unit="s", disable=disable,
                        dynamic_ncols=True, mininterval=1.0,
                        bar_format="{l_bar}{bar}| [{elapsed}<{remaining}] {postfix}")
        self._phase: tuple[float, float] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tick, daemon=True)
        self._thread.start()

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            with self._lock:
                if self._phase is not None:
                    t0, share = self._phase
                    self.bar.n = self.done + min(time.perf_counter() - t0, share * 0.99)
                    self.bar.refresh()

    @contextlib.contextmanager
    def phase(self, what: str, share: float) -> Iterator[None]:
        with self._lock:
            self.bar.set_postfix_str(what, refresh=False)
            self._phase = (time.perf_counter(), share)
        try:
            yield
        finally:
            with self._lock:
                self._phase = None
                self.done += share
                self.bar.n = self.done
                self.bar.refresh()

    def measured(self, seconds: float, entries_left: int) -> None:
        """Refine the measurement estimate of the entries still to come."""
        with self._lock:
            guess = statistics.mean(self.measure_s) if self.measure_s else self.MEASURE_GUESS_S
            self.measure_s.append(seconds)
            total = (self.bar.total + (seconds - guess)
                     + entries_left * (statistics.mean(self.measure_s) - guess))
            self.bar.total = max(round(total), round(self.done) + 1)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.bar.close()


def run_bench(cfg: BenchConfig, command: str = "") -> tuple[list[dict[str, Any]], dict[str, Path]]:
    """Train and measure every entry of ``cfg``; write the files (after every entry, so a study
    stopped midway keeps its finished rows); returns ``(rows, paths)``."""
    entries = parse_entries(cfg.entries, cfg.checkpoints)  # bad entries fail before any training
    name = cfg.name or dataset_name(cfg.data)
    train_set, val_set = study_datasets(cfg)
    split = (f"train: {cfg.train_split} ({len(train_set)} images), "
             f"val: {cfg.val_split} ({len(val_set)} images)")
    stamp = provenance(command or "detseg bench", "ultralytics")
    budget_s = (cfg.minutes or 0.0) * 60
    progress = StudyProgress([budget_s if e.kind in ("zoo", "peer") else 0.0 for e in entries],
                             disable=cfg.quiet)
    threads = torch.get_num_threads()
    rows: list[dict[str, Any]] = []
    paths: dict[str, Path] = {}
    title = f"{name}: {split}; {cfg.minutes:g} min per entry; CPU, {cfg.threads} threads" \
        if cfg.minutes else f"{name}: {split}"
    try:
        for k, entry in enumerate(entries):
            trains = entry.kind in ("zoo", "peer")
            with tempfile.TemporaryDirectory(prefix="detseg_bench_") as tmp:
                with progress.phase(f"{entry.text}: training", budget_s if trains else 0.0):
                    torch.set_num_threads(threads)  # whatever a peer set
                    model, facts = train_entry(entry, cfg, train_set, val_set, Path(tmp))
                t0 = time.perf_counter()
                with progress.phase(f"{entry.text}: measuring",
                                    statistics.mean(progress.measure_s) if progress.measure_s
                                    else StudyProgress.MEASURE_GUESS_S):
                    result = measure(model, val_set, cfg)
                progress.measured(time.perf_counter() - t0, len(entries) - k - 1)
            row = {"benchmark": f"tradeoff_{name}", "model": entry.text, "family": entry.name,
                   "peer": bool(model.peer), "dataset": cfg.data, "split": split,
                   "img_size": _img_of(entry, cfg, model), **result, **facts,
                   "budget_minutes": cfg.minutes, "augment": cfg.augment, "amp": cfg.amp,
                   "batch": cfg.batch, "lr": cfg.lr}
            if model.baseline:
                row["baseline"] = True
            rows.append({**row, **stamp})
            del model
            gc.collect()
            mark_front(rows)
            paths = write_outputs(rows, Path(cfg.out), name, title)
    finally:
        progress.close()
    return rows, paths


def _img_of(entry: Entry, cfg: BenchConfig, model: BenchModel) -> int | None:
    fixed = getattr(model, "fixed_size", None)  # e.g. ssdlite320: the builder fixes 320
    if fixed:
        return fixed
    if entry.kind == "baseline":
        return None
    if entry.kind == "checkpoint":
        args = getattr(getattr(model, "model", None), "builder_args", {}) or {}
        return args.get("img_size") or args.get("max_size")
    return entry.img or cfg.img_size
