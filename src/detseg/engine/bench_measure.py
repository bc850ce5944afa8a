"""What ``detseg bench`` measures of one trained detector (:mod:`detseg.engine.bench` has the
definitions of every figure): the :class:`BenchModel` adapter every entry is wrapped in, detseg's
COCO evaluator on its predictions, batch-1 latency and batch-8 throughput at a fixed thread count,
parameters, FLOPs (``torch.utils.flop_counter.FlopCounterMode``) and the peak resident memory.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import re
import statistics
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import Tensor

TIMED_RUNS_MIN = 10


class BenchModel:
    """What the study measures: ``predict`` in the detseg convention (xyxy image pixels, labels
    1-based), a parameter count and a FLOP count of one forward."""

    peer = False
    baseline = False

    def predict(self, images: list[Tensor]) -> list[dict[str, Tensor]]:  # pragma: no cover
        raise NotImplementedError

    def params(self) -> int:
        return 0

    def flops(self, image: Tensor) -> float:
        """FLOPs of ``predict([image])`` by FlopCounterMode (multiply-add = 2)."""
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as fc:
            self.predict([image])
        return float(fc.get_total_flops())

    @contextlib.contextmanager
    def timing(self) -> Iterator[None]:
        """Conditions of the timed runs (e.g. no proposal cache)."""
        yield


class ZooModel(BenchModel):
    """A detseg model (or a torchvision detector: same call) in eval mode."""

    def __init__(self, model: torch.nn.Module, peer: bool = False):
        self.model = model.to("cpu").eval()
        self.peer = peer

    @torch.inference_mode()
    def predict(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        out = self.model(images)
        preds = out.predictions if hasattr(out, "predictions") else out
        return [{k: v for k, v in p.items() if k in ("boxes", "scores", "labels")} for p in preds]

    def params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def timing(self):
        return proposal_cache_off(self.model)


class CentralBox(BenchModel):
    """The floor: in every image, the mean normalised training box, the most frequent class,
    score 1 (what a detector that ignores the pixels can reach)."""

    baseline = True

    def __init__(self, train_set):
        boxes, counts = [], {}
        transforms, train_set.transforms = train_set.transforms, None  # the boxes as they are
        try:
            samples = [train_set[i] for i in range(len(train_set))]
        finally:
            train_set.transforms = transforms
        for image, target in samples:
            h, w = image.shape[-2:]
            b = torch.as_tensor(target["boxes"], dtype=torch.float32).reshape(-1, 4)
            boxes.append(b / torch.tensor([w, h, w, h], dtype=torch.float32))
            for label in torch.as_tensor(target["labels"]).tolist():
                counts[label] = counts.get(label, 0) + 1
        if not counts:
            raise ValueError("central_box: the train split has no boxes")
        self.box = torch.cat(boxes).mean(0)
        self.label = max(counts, key=counts.get)

    def predict(self, images):
        out = []
        for im in images:
            h, w = im.shape[-2:]
            out.append({"boxes": (self.box * torch.tensor([w, h, w, h])).reshape(1, 4),
                        "scores": torch.ones(1), "labels": torch.tensor([self.label])})
        return out


@contextlib.contextmanager
def proposal_cache_off(model) -> Iterator[None]:
    """Proposals computed afresh while timing: a selective-search cache (rcnn, fast_rcnn) off."""
    gen = getattr(model, "proposal_generator", None)
    cache = getattr(gen, "cache_dir", None)
    if cache is not None:
        gen.cache_dir = None
    try:
        yield
    finally:
        if cache is not None:
            gen.cache_dir = cache


def warm_proposal_cache(model, datasets) -> tuple[float, int]:
    """Fill ``model``'s selective-search cache for every image of ``datasets`` as the model sees it
    (resized by its transform, un-augmented); ``(seconds, images)``. Both papers computed the
    proposals once, offline, before training; done here, no model's budget pays for them."""
    gen = getattr(model, "proposal_generator", None)
    if getattr(gen, "cache_dir", None) is None:
        return 0.0, 0
    t, n = time.perf_counter(), 0
    with torch.inference_mode():
        for ds in filter(None, datasets):
            for i in range(len(ds)):
                _, resized = model.transform([ds[i][0]])
                gen.propose(resized[0])
                n += 1
    return time.perf_counter() - t, n


# -- memory ---------------------------------------------------------------------------------
def _status_kib(field_name: str) -> int | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    m = re.search(rf"^{field_name}:\s+(\d+) kB", text, re.M)
    return int(m.group(1)) if m else None


class PeakRSS:
    """Peak resident memory (MiB) of this process over a ``with`` block (see the module doc)."""

    def __enter__(self) -> "PeakRSS":
        gc.collect()
        self.start = self._rss()
        self._sampled = self.start
        self._reset = False
        try:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
            self._reset = _status_kib("VmHWM") is not None
        except OSError:
            pass
        self._stop = threading.Event()
        self._thread = None
        if not self._reset:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self._sampled = max(self._sampled, self._rss())

    @staticmethod
    def _rss() -> float:
        kib = _status_kib("VmRSS")
        if kib is not None:
            return kib / 1024
        import resource  # fallback: the lifetime peak (macOS: bytes, Linux: KiB)

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2 ** 20 if os.uname().sysname == "Darwin" else peak / 1024

    def __exit__(self, *exc) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self.peak = max(self._sampled, self._rss())
        else:
            self.peak = (_status_kib("VmHWM") or 0) / 1024

    @property
    def increase(self) -> float:
        return max(0.0, self.peak - self.start)


# -- measurement ----------------------------------------------------------------------------
@contextlib.contextmanager
def num_threads(n: int | None) -> Iterator[None]:
    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def evaluate_predictions(model: BenchModel, val_set, batch: int = 8) -> dict[str, float]:
    """detseg's COCO evaluator (:class:`~detseg.evaluation.coco.CocoEvaluator`) on ``model``'s
    predictions for every val image: the same evaluator for every entry."""
    from detseg.data.base import take_problems
    from detseg.evaluation.coco import CocoEvaluator

    evaluator = CocoEvaluator(list(val_set.classes), task="detection")
    images, targets = [], []
    for i in range(len(val_set)):
        image, target = val_set[i]
        images.append(image)
        targets.append(target)
        if len(images) == batch or i == len(val_set) - 1:
            take_problems(targets, val_set)
            preds = [{k: v.detach().cpu() for k, v in p.items()} for p in model.predict(images)]
            evaluator.update(preds, targets)
            images, targets = [], []
    return {k: float(v) for k, v in evaluator.compute().items()}


def time_calls(fn: Callable[[int], Any], runs: int, warmup: int) -> list[float]:
    """Seconds of ``fn(i)`` for ``i`` in ``range(runs)``, after ``warmup`` untimed calls."""
    for i in range(warmup):
        fn(i)
    out = []
    for i in range(runs):
        t = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - t)
    return out


def measure(model: BenchModel, val_set, cfg: Any) -> dict[str, Any]:
    """Accuracy, latency, throughput, size, FLOPs and peak RSS of one trained entry (``cfg``: a
    :class:`detseg.engine.bench.BenchConfig`)."""
    if len(val_set) == 0:
        raise ValueError(f"{cfg.data}: the val split {cfg.val_split!r} is empty: nothing to measure")
    with PeakRSS() as mem:
        metrics = evaluate_predictions(model, val_set, cfg.batch)
        images = [val_set[i][0] for i in range(min(len(val_set), max(cfg.throughput_batch, 10)))]
        runs = max(TIMED_RUNS_MIN, cfg.timed_runs)
        with num_threads(cfg.threads), model.timing(), torch.inference_mode():
            lat = time_calls(lambda i: model.predict([images[i % len(images)]]), runs, cfg.warmup)
            batch = [images[i % len(images)] for i in range(cfg.throughput_batch)]
            thr = time_calls(lambda i: model.predict(batch), max(1, cfg.throughput_runs), 1)
        flops = model.flops(images[0])
    per_class = {k: round(v, 4) for k, v in metrics.items() if k.startswith("AP50/") and v == v}
    return {"mAP": round(metrics.get("mAP", math.nan), 4), "mAP50": round(metrics.get("mAP50", math.nan), 4),
            "latency_ms": round(statistics.median(lat) * 1000, 2),
            "images_per_s": round(cfg.throughput_batch / statistics.median(thr), 2),
            "params": model.params(), "gflops": round(flops / 2 / 1e9, 3),
            "peak_rss_mib": round(mem.peak, 1), "rss_increase_mib": round(mem.increase, 1),
            "timed_runs": runs, "threads": cfg.threads, "val_images": len(val_set), **per_class}


