"""The peers of ``detseg bench``: detectors of other libraries, trained from scratch on the same
data for the same budget, their predictions scored by detseg's evaluator.

* torchvision's ``fasterrcnn_mobilenet_v3_large_320_fpn`` and ``ssdlite320_mobilenet_v3_large``
  (``weights=None, weights_backbone=None``: random init), trained by :func:`train_torchvision`,
  a plain loop with the trainer's pieces (the same AdamW, warm-up + cosine decay over the time
  budget, gradient clipping at 10, augmented train set and batch as the detseg entries).
  Faster R-CNN gets ``min_size = max_size = img`` (the longer side becomes ``img``, as detseg's
  detectors); SSDlite's builder fixes its input at 320 x 320.
* Ultralytics YOLOv8n (``YOLO("yolov8n.yaml")``: the architecture file, no weights), trained by
  Ultralytics' own trainer and recipe (mosaic and its other augmentations, EMA) for the same
  budget (``time=`` hours; Ultralytics counts its final validation in it) on our train split
  written out in its YOLO txt format, ``last.pt`` kept (never the ``best.pt`` chosen on val).
  It runs offline: ``YOLO_OFFLINE=1``, a private ``YOLO_CONFIG_DIR`` holding matplotlib's
  DejaVu Sans as ``Arial.ttf`` (so its font check never downloads), ``plots=False``,
  ``pretrained=False`` and ``amp=False`` (its AMP check would fetch weights). Its
  ``select_device`` sets torch to ``min(8, cpus - 1)`` threads; the study pins its thread count
  instead, so every entry trains and is timed with the same threads. Predictions use its
  validation settings (``conf=0.001, iou=0.7``), at most 100 per image (COCO's cap).

Ultralytics is installed by the ``benchmark`` extra (``pip install 'detseg[benchmark]'``); a
missing package is an ``ImportError`` saying so. The torchvision peers need nothing more.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import Tensor

from detseg.engine.bench_measure import BenchModel, ZooModel

TV_FASTER = "tv_fasterrcnn_mobilenet_v3_large_320_fpn"
TV_SSDLITE = "tv_ssdlite320_mobilenet_v3_large"
YOLOV8 = "ultralytics_yolov8n"
PEERS: dict[str, str] = {
    TV_FASTER: "torchvision fasterrcnn_mobilenet_v3_large_320_fpn from scratch",
    TV_SSDLITE: "torchvision ssdlite320_mobilenet_v3_large from scratch",
    YOLOV8: "Ultralytics YOLOv8n (yolov8n.yaml, no weights) from scratch, its own trainer",
}


def train_peer(entry, cfg, img: int, train_set, val_set, work: Path) -> tuple[BenchModel, dict[str, Any]]:
    """Train the peer ``entry`` (a :class:`detseg.engine.bench.Entry`) on ``train_set``."""
    if entry.name == YOLOV8:
        return train_ultralytics(dict(entry.opts), cfg, img, train_set, val_set, work)
    return train_torchvision(entry.name, entry.opts, cfg, img, train_set)


# -- torchvision ----------------------------------------------------------------------------
def build_torchvision(name: str, num_classes: int, img: int, **opts: Any) -> torch.nn.Module:
    """A torchvision detector with random weights (no download), ``num_classes`` with background."""
    from torchvision.models import detection

    if name == TV_FASTER:
        opts = {"min_size": img, "max_size": img, **opts}
        return detection.fasterrcnn_mobilenet_v3_large_320_fpn(
            weights=None, weights_backbone=None, num_classes=num_classes, **opts)
    if name == TV_SSDLITE:
        return detection.ssdlite320_mobilenet_v3_large(
            weights=None, weights_backbone=None, num_classes=num_classes, **opts)
    raise ValueError(f"unknown torchvision peer {name!r}")


def _tv_targets(targets: list[dict[str, Any]]) -> list[dict[str, Tensor]]:
    """Boxes and labels only; boxes without area dropped (torchvision refuses them)."""
    out = []
    for t in targets:
        boxes = torch.as_tensor(t["boxes"], dtype=torch.float32).reshape(-1, 4)
        labels = torch.as_tensor(t["labels"], dtype=torch.int64).reshape(-1)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        out.append({"boxes": boxes[keep], "labels": labels[keep]})
    return out


def train_torchvision(name: str, opts: dict[str, Any], cfg, img: int, train_set
                      ) -> tuple[BenchModel, dict[str, Any]]:
    """Train a torchvision peer for ``cfg.minutes`` of training time (or ``cfg.epochs``)."""
    from torch.utils.data import DataLoader, RandomSampler

    from detseg.data.base import collate
    from detseg.engine.schedule import build_optimizer, build_scheduler
    from detseg.engine.trainer import seed_epoch, seed_everything

    seed_everything(cfg.seed)
    model = build_torchvision(name, len(train_set.classes) + 1, img, **opts)
    generator = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(train_set, batch_size=cfg.batch, sampler=RandomSampler(train_set, generator=generator),
                        collate_fn=collate, drop_last=len(train_set) > cfg.batch)
    optimizer = build_optimizer(model, "adamw", cfg.lr, 1e-4)
    budget = cfg.minutes * 60 if cfg.minutes else None
    spent = [0.0]
    scheduler = build_scheduler(optimizer, cfg.epochs * len(loader), int(0.5 * len(loader)), "cosine",
                                budget_spent=lambda: spent[0])
    seconds, epochs = 0.0, 0
    model.train()
    for epoch in range(cfg.epochs):
        seed_epoch(cfg.seed, epoch)
        generator.manual_seed(cfg.seed * 1000 + epoch)
        t0 = time.perf_counter()
        for images, targets in loader:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.amp):
                losses = model(list(images), _tv_targets(targets))
            loss = sum(losses.values())
            if not math.isfinite(float(loss.detach())):
                raise FloatingPointError(f"{name}: non-finite loss at epoch {epoch + 1} "
                                         f"({', '.join(f'{k}={float(v):.4g}' for k, v in losses.items())})")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            optimizer.step()
            if budget:
                spent[0] = (seconds + time.perf_counter() - t0) / budget
            scheduler.step()
            if spent[0] >= 1.0:
                break
        seconds += time.perf_counter() - t0
        epochs += 1
        if spent[0] >= 1.0:
            break
    bench_model = ZooModel(model, peer=True)
    if name == TV_SSDLITE:
        bench_model.fixed_size = 320
    return bench_model, {"train_seconds": round(seconds, 1), "epochs_done": epochs}


# -- Ultralytics ----------------------------------------------------------------------------
def require_ultralytics():
    try:
        import ultralytics  # noqa: F401
    except ImportError as e:
        raise ImportError(f"the {YOLOV8} peer needs Ultralytics: pip install 'detseg[benchmark]' "
                          f"(or pip install ultralytics) ({e})") from None
    return ultralytics


def offline_environment(config_dir: Path) -> None:
    """Environment that keeps Ultralytics off the network (set before its first import)."""
    import shutil

    import matplotlib

    config_dir.mkdir(parents=True, exist_ok=True)
    font = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        if font.is_file() and not (config_dir / name).exists():
            shutil.copyfile(font, config_dir / name)
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ.setdefault("YOLO_CONFIG_DIR", str(config_dir))
    os.environ.setdefault("YOLO_VERBOSE", "False")


def write_yolo_dataset(datasets: dict[str, Any], root: Path) -> Path:
    """Our splits in Ultralytics' layout (``images/<split>/*.png``, ``labels/<split>/*.txt`` with
    ``class cx cy w h`` normalised, class 0-based) and its ``data.yaml``; the pixels are the ones
    detseg's readers give (PNG, lossless), un-augmented."""
    import yaml
    from PIL import Image

    names = None
    for split, ds in datasets.items():
        names = list(ds.classes)
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        transforms, ds.transforms = ds.transforms, None
        try:
            for i in range(len(ds)):
                image, target = ds[i]
                h, w = image.shape[-2:]
                array = (image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
                Image.fromarray(array).save(root / "images" / split / f"{i:06d}.png")
                boxes = torch.as_tensor(target["boxes"], dtype=torch.float64).reshape(-1, 4)
                lines = []
                for (x1, y1, x2, y2), label in zip(boxes.tolist(), torch.as_tensor(target["labels"]).tolist()):
                    if x2 > x1 and y2 > y1:
                        lines.append(f"{label - 1} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} "
                                     f"{(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}")
                (root / "labels" / split / f"{i:06d}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
        finally:
            ds.transforms = transforms
    data = {"path": str(root), "train": "images/train", "val": "images/val" if "val" in datasets else "images/train",
            "names": dict(enumerate(names or []))}
    path = root / "data.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@contextlib.contextmanager
def _pinned_threads() -> Iterator[None]:
    """Ultralytics' select_device sets its own thread count; keep the caller's."""
    from ultralytics.utils import torch_utils

    n = torch.get_num_threads()
    old, torch_utils.NUM_THREADS = torch_utils.NUM_THREADS, n
    try:
        yield
    finally:
        torch_utils.NUM_THREADS = old
        torch.set_num_threads(n)


class UltralyticsModel(BenchModel):
    """A trained Ultralytics YOLO behind the study's ``predict`` (its own pre/post-processing)."""

    peer = True

    def __init__(self, yolo, img: int):
        self.yolo, self.img = yolo, img

    def predict(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        # Ultralytics reads numpy images as OpenCV's BGR uint8 HWC.
        arrays = [(im.clamp(0, 1) * 255).round().byte().flip(0).permute(1, 2, 0).contiguous().numpy()
                  for im in images]
        with _pinned_threads():
            results = self.yolo.predict(arrays, imgsz=self.img, conf=0.001, iou=0.7, max_det=100,
                                        device="cpu", verbose=False)
        return [{"boxes": r.boxes.xyxy.float().cpu(), "scores": r.boxes.conf.float().cpu(),
                 "labels": r.boxes.cls.long().cpu() + 1} for r in results]

    def params(self) -> int:
        return sum(p.numel() for p in self.yolo.model.parameters())


def train_ultralytics(opts: dict[str, Any], cfg, img: int, train_set, val_set, work: Path
                      ) -> tuple[BenchModel, dict[str, Any]]:
    """Train YOLOv8n from its yaml (no weights) with Ultralytics for the study's budget."""
    offline_environment(work / "ultralytics_config")
    require_ultralytics()
    from ultralytics import YOLO

    data = write_yolo_dataset({"train": train_set, "val": val_set}, work / "yolo_data")
    arch = str(opts.pop("cfg", "yolov8n.yaml"))  # another architecture file: cfg=yolov8s.yaml
    args = dict(data=str(data), epochs=cfg.epochs, imgsz=img, batch=cfg.batch, device="cpu", workers=0,
                project=str(work / "runs"), name="train", exist_ok=True, plots=False, val=False,
                seed=cfg.seed, pretrained=False, amp=False, verbose=False)
    if cfg.minutes:
        args["time"] = cfg.minutes / 60
    args.update(opts)
    model = YOLO(arch)
    t0 = time.perf_counter()
    with _pinned_threads():
        model.train(**args)
    seconds = time.perf_counter() - t0
    last = work / "runs" / "train" / "weights" / "last.pt"
    trained = YOLO(str(last)) if last.is_file() else model
    epochs = int(getattr(getattr(model, "trainer", None), "epoch", -1)) + 1
    return UltralyticsModel(trained, img), {"train_seconds": round(seconds, 1), "epochs_done": epochs}
