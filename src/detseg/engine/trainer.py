"""One training loop for every detseg model (a small loop plus hooks, after minGPT/Detectron2).

The loop only steps the optimizer; validation (metrics *and* validation loss — every detseg model
returns losses whenever it gets targets), checkpoints, logs and pictures happen at epoch ends, on
rank 0 under ``torchrun``. ``--resume`` reloads ``last.pt`` and continues at the next epoch with
the optimizer, schedule and history restored. Every random stream the loop uses is a function of
``(seed, epoch, rank)``: the sampler's generator and, at the start of each epoch, Python's
``random``, NumPy's and torch's global generators (augmentation, dropout, sampling in the heads,
DataLoader worker seeds) are reseeded from it. A resumed run — killed anywhere, even inside an
epoch, which is then redone from its start — therefore sees the same batches and draws the same
numbers as the uninterrupted run, and ends with the same weights and metrics (on one device type).

Transfer learning (``weights``, ``freeze_backbone``; :mod:`detseg.engine.transfer`): a new run may
start from another run's weights (every tensor whose name and shape match) with the first backbone
stages frozen; what was loaded, skipped, re-initialised and frozen is printed and saved as
``transfer.json`` in the run folder.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

from detseg.data.base import skipped_images, take_problems
from detseg.engine import distributed as dist_utils
from detseg.engine.evaluate import evaluate, to_device
from detseg.engine.hooks import (ArgsWriter, CheckpointHook, CurvesPlotter, Hook, MetricsLogger, SamplesDrawer,
                                 TensorBoardLogger)
from detseg.engine.schedule import build_optimizer, build_scheduler
from detseg.engine.transfer import keep_frozen_eval


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/inf loss; the last good checkpoint is kept."""


@dataclass
class TrainConfig:
    """Every training option (the CLI's ``detseg train`` flags map 1:1 onto these)."""

    model: str
    data: str = "shapes"
    epochs: int = 10
    img_size: int | None = None  # passed to the model builder; None = the model's default
    batch: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    optimizer: str = "adamw"  # adamw | sgd
    schedule: str = "cosine"  # cosine | step | constant
    warmup_epochs: float = 0.5
    clip_grad: float | None = 10.0
    amp: bool = False
    channels_last: bool = False  # NHWC memory format: faster convolutions with oneDNN / cuDNN
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    workers: int = 0
    seed: int = 0
    out: str = "runs"
    name: str = "train"
    resume: bool | str = False  # True = newest run of this model/name; or a run dir / last.pt
    val_fraction: float = 0.2
    train_split: str = "train"  # a split name or an index range "A:B" (see detseg.data.split)
    val_split: str = "val"
    format: str | None = None
    images: str | None = None  # image folder named explicitly (--images); data is then a root or unused
    annotations: str | None = None  # XML folder | COCO json | joints file | label-PNG folder
    weights: str | None = None  # fine-tune from: a detseg checkpoint or state_dict (engine/transfer.py)
    freeze_backbone: int = 0  # freeze the first N backbone stages (their batch norms stay in eval)
    augment: str = "full"  # full (flip + scale jitter + colour) | flip | none
    rotate: float = 0.0  # + random rotation in [-rotate, rotate] degrees (with any augment but none)
    time_limit: float | None = None  # minutes of training: the LR decays over it, then it stops
    model_opts: dict[str, Any] = field(default_factory=dict)
    samples: int = 8
    quiet: bool = False
    val_every: int = 1  # validate every N epochs (and always after the last one)
    tensorboard: bool = False  # also write TensorBoard event files into the run folder


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def seed_epoch(seed: int, epoch: int, rank: int = 0) -> None:
    """Reseed Python, NumPy and torch (CPU and CUDA) from ``(seed, epoch, rank)``.

    Called at the start of every epoch, so the epoch's random numbers do not depend on what ran
    before it in this process (a fresh ``--resume`` process, validation, drawing samples).
    """
    a, b = (int(x) for x in np.random.SeedSequence([seed, epoch, rank]).generate_state(2))
    random.seed(a)
    np.random.seed(a)
    torch.manual_seed(a << 32 | b)


def next_run_dir(root: Path, name: str) -> Path:
    """``root/name1``, ``root/name2``, ...: the first that does not exist yet."""
    i = 1
    while (root / f"{name}{i}").exists():
        i += 1
    return root / f"{name}{i}"


def find_resume_dir(cfg: TrainConfig) -> Path:
    """The run folder ``--resume`` continues: the one named, or the newest with a ``last.pt``."""
    if isinstance(cfg.resume, str) and cfg.resume not in ("", "True", "true"):
        p = Path(cfg.resume)
        p = p.parent if p.suffix == ".pt" else p
        if not (p / "last.pt").is_file():
            raise FileNotFoundError(f"{p}: --resume: no last.pt in this folder")
        return p
    root = Path(cfg.out) / cfg.model
    runs = [d for d in root.glob(f"{cfg.name}*") if (d / "last.pt").is_file()]
    if not runs:
        raise FileNotFoundError(f"{root}: --resume: no run named {cfg.name}N with a last.pt")
    return max(runs, key=lambda d: (d / "last.pt").stat().st_mtime)


class Trainer:
    """Builds data, model, optimizer and schedule from a :class:`TrainConfig`, then ``fit()``."""

    def __init__(self, cfg: TrainConfig, hooks: list[Hook] | None = None):
        from detseg.engine.checkpoint import load_checkpoint
        from detseg.models.zoo import ZOO, build_model
        from detseg.tasks import get_task

        if cfg.val_every < 1:
            raise ValueError(f"val_every: must be >= 1 (validate every N epochs), got {cfg.val_every}")
        if cfg.tensorboard:
            TensorBoardLogger.require()  # a missing package fails before a run folder is made
        if cfg.resume and cfg.weights:
            raise ValueError(f"--resume and --weights {cfg.weights}: choose one (--resume continues a run "
                             "with its own weights; --weights starts a new run from a checkpoint)")
        self.device = dist_utils.init_distributed(cfg.device)
        resume_state = None
        if cfg.resume:
            run_dir = find_resume_dir(cfg)
            resume_state = load_checkpoint(run_dir / "last.pt")
            saved = dict(resume_state["config"])
            # The saved run's settings win, except how to run it now.
            keep = {k: getattr(cfg, k) for k in ("device", "workers", "quiet", "resume", "tensorboard")}
            if cfg.epochs != TrainConfig.epochs and cfg.epochs > saved["epochs"]:
                keep["epochs"] = cfg.epochs  # allow extending a finished run
            cfg = TrainConfig(**{**saved, **keep})
        elif dist_utils.is_main():
            run_dir = next_run_dir(Path(cfg.out) / cfg.model, cfg.name)
            run_dir.mkdir(parents=True)
        else:
            run_dir = Path()
        self.run_dir = Path(_broadcast_str(str(run_dir)))
        self.cfg = cfg
        seed_everything(cfg.seed + dist_utils.rank())

        if cfg.model not in ZOO:
            raise ValueError(f"unknown model {cfg.model!r}; `detseg models` lists them")
        self.task = get_task(ZOO[cfg.model].task)
        self.train_set, self.val_set = build_datasets(cfg, self.task.name)
        classes = self.train_set.seg_classes if self.task.name == "semantic" else self.train_set.classes
        if resume_state is not None:
            self.model = build_model(resume_state["builder"], **resume_state["builder_args"])
            self.model.load_state_dict(resume_state["model"])
        else:
            kwargs = dict(cfg.model_opts)
            if kwargs.get("class_weights") in CLASS_WEIGHTINGS:
                kwargs["class_weights"] = median_frequency_from(
                    self.train_set, len(classes), power=CLASS_WEIGHTINGS[kwargs["class_weights"]])
            if cfg.img_size is not None:
                kwargs["img_size"] = cfg.img_size
            self.model = build_model(cfg.model, classes=list(classes), **kwargs)
        self._transfer(cfg, fresh=resume_state is None)
        self.model.dataset_info = dataset_info(self.train_set)
        self.model.to(self.device)
        if cfg.channels_last:
            # Converting the weights is enough: a convolution with channels-last weights returns
            # channels-last maps, so the whole network runs NHWC from its first layer on.
            self.model.to(memory_format=torch.channels_last)
        self.eval_model = self.model
        if dist_utils.world_size() > 1:
            self.model = torch.nn.parallel.DistributedDataParallel(self.model)

        self.train_loader = self._train_loader()
        iters = cfg.epochs * len(self.train_loader)
        self.optimizer = build_optimizer(self.eval_model, cfg.optimizer, cfg.lr, cfg.weight_decay)
        warmup = int(cfg.warmup_epochs * len(self.train_loader))
        # Under --time-limit the LR decays over the budget (see engine/schedule.py); `_spent` is
        # the budget fraction used, updated every iteration, identical on every DDP rank.
        self._spent, self._epoch_t0 = 0.0, time.perf_counter()
        self.scheduler = build_scheduler(self.optimizer, iters, warmup, cfg.schedule,
                                         budget_spent=lambda: self._spent)
        self.scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp and self.device.type == "cuda")
        self.start_epoch, self.history = 0, []
        self.best_metric, self.best_epoch = -math.inf, 0
        self.train_seconds = 0.0
        self.validated = False  # whether the epoch just ended was validated (hooks read it)
        if resume_state is not None:
            self._load_training_state(resume_state)
        self.hooks = hooks if hooks is not None else default_hooks(cfg)

    def _transfer(self, cfg: TrainConfig, fresh: bool) -> None:
        """``--weights`` (a new run only: a resumed one has its own) and ``--freeze-backbone``
        (again on resume: ``requires_grad`` is not in a checkpoint); ``transfer.json``."""
        from detseg.engine.transfer import format_transfer, freeze_backbone, load_transfer, transfer_report
        from detseg.io import write_json

        loaded = load_transfer(self.model, cfg.weights) if fresh and cfg.weights else None
        if fresh and hasattr(self.model, "fit_priors"):  # data-dependent priors: YOLO's k-means anchors
            before = {k: v.clone() for k, v in self.model.state_dict().items()} if loaded else {}
            self.model.fit_priors(self.train_set)  # after --weights: priors fit the data trained on
            if loaded:
                after = self.model.state_dict()
                loaded["refitted"] = [k for k in loaded["loaded"] if not torch.equal(before[k], after[k])]
        self.frozen = (freeze_backbone(self.model, cfg.freeze_backbone, cfg.model)
                       if cfg.freeze_backbone else None)
        self.transfer = None
        if loaded is None and self.frozen is None:
            return
        self.transfer = transfer_report(loaded, self.frozen, self.model)
        if fresh and dist_utils.is_main():
            write_json(self.run_dir / "transfer.json", self.transfer)
            if not cfg.quiet:
                print(format_transfer(self.transfer))

    # -- data --------------------------------------------------------------------------------
    def _train_loader(self) -> DataLoader:
        from detseg.data.base import collate

        cfg = self.cfg
        if dist_utils.world_size() > 1:
            sampler = DistributedSampler(self.train_set, shuffle=True, seed=cfg.seed)
        else:
            self._generator = torch.Generator().manual_seed(cfg.seed)
            sampler = RandomSampler(self.train_set, generator=self._generator)
        per_rank = len(self.train_set) // dist_utils.world_size()
        return DataLoader(self.train_set, batch_size=cfg.batch, sampler=sampler,
                          num_workers=cfg.workers, collate_fn=collate,
                          drop_last=per_rank > cfg.batch, persistent_workers=False)

    def _set_epoch(self, epoch: int) -> None:
        seed_epoch(self.cfg.seed, epoch, dist_utils.rank())
        sampler = self.train_loader.sampler
        if isinstance(sampler, DistributedSampler):
            sampler.set_epoch(epoch)
        else:
            self._generator.manual_seed(self.cfg.seed * 1000 + epoch)

    # -- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        m = self.eval_model
        return {
            "builder": m.builder_name, "builder_args": m.builder_args, "task": m.task,
            "classes": m.classes, "model": m.state_dict(), "dataset_info": m.dataset_info,
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(), "epoch": len(self.history),
            "history": self.history, "best_metric": self.best_metric, "best_epoch": self.best_epoch,
            "train_seconds": self.train_seconds, "config": asdict(self.cfg),
        }

    def _load_training_state(self, s: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(s["optimizer"])
        self.scheduler.load_state_dict(s["scheduler"])
        if s.get("scaler"):
            self.scaler.load_state_dict(s["scaler"])
        self.start_epoch = int(s["epoch"])
        self.history = list(s["history"])
        self.best_metric, self.best_epoch = float(s["best_metric"]), int(s["best_epoch"])
        self.train_seconds = float(s.get("train_seconds", 0.0))

    def update_best(self, record: dict[str, Any]) -> bool:
        if self.val_set is not None and not self.validated:
            return False  # an epoch skipped by --val-every has no validation figure to compare
        value = _main_value(record, self.task)
        if value > self.best_metric or self.best_epoch == 0:
            self.best_metric, self.best_epoch = value, record["epoch"]
            return True
        return False

    def summary(self) -> dict[str, Any]:
        last = self.history[-1] if self.history else {}
        best = next((r for r in self.history if r["epoch"] == self.best_epoch), last)
        sets = [ds for ds in (self.train_set, self.val_set) if ds is not None]
        found = [skipped_images(ds) for ds in sets]
        return {
            "skipped_images": sorted({f for s, _ in found for f in s}),
            "truncated_images": sorted({f for _, t in found for f in t}),
            "model": self.cfg.model, "data": self.cfg.data, "task": self.task.name,
            "epochs": len(self.history), "main_metric": self.task.main_metric,
            "best_epoch": self.best_epoch, "best": best, "final": last,
            "train_seconds": round(self.train_seconds, 2), "run_dir": str(self.run_dir),
        }

    # -- loop --------------------------------------------------------------------------------
    def fit(self) -> Path:
        main = dist_utils.is_main()
        known = [len(ds.problems) if ds is not None else 0 for ds in (self.train_set, self.val_set)]
        if main:
            for ds in (self.train_set, self.val_set):
                if ds is not None:
                    ds.warn_problems()
            for h in self.hooks:
                h.before_train(self)
        if self.start_epoch >= self.cfg.epochs and main and not self.cfg.quiet:
            print(f"{self.run_dir}: already trained for {self.start_epoch} epochs")
        limit = self.cfg.time_limit
        if limit is not None and self.train_seconds >= limit * 60:
            if main and not self.cfg.quiet:
                print(f"{self.run_dir}: the time limit of {limit} min was already spent")
            self.start_epoch = self.cfg.epochs
        for epoch in range(self.start_epoch, self.cfg.epochs):
            t0 = self._epoch_t0 = time.perf_counter()
            train_losses = self.train_one_epoch(epoch)
            self.train_seconds += time.perf_counter() - t0
            record: dict[str, Any] = {"epoch": epoch + 1, **{f"train/{k}": v for k, v in train_losses.items()}}
            record["lr"] = self.optimizer.param_groups[0]["lr"]
            last = (epoch + 1 == self.cfg.epochs
                    or (limit is not None and self._spent >= 1.0))
            self.validated = self.val_set is not None and (
                last or (epoch + 1) % self.cfg.val_every == 0)
            if main:
                if self.validated:
                    metrics, losses = evaluate(self.eval_model, self.val_set, self.task,
                                               batch=self.cfg.batch, device=self.device,
                                               quiet=self.cfg.quiet, desc="val")
                    record.update({f"val/{k}": v for k, v in losses.items()})
                    record.update(metrics)
                record["epoch_seconds"] = round(time.perf_counter() - t0, 2)
                record["train_seconds"] = round(self.train_seconds, 2)
                self.history.append(record)
                for h in self.hooks:
                    h.after_epoch(self, record)
                if not self.cfg.quiet:
                    print(format_record(record, self.task))
            else:
                self.history.append(record)
            dist_utils.barrier()
            if limit is not None and self._spent >= 1.0:
                if main and not self.cfg.quiet:
                    print(f"time limit of {limit} min reached during epoch {epoch + 1}")
                break
        if main:
            for h in self.hooks:
                h.after_train(self)
            for ds, n in zip((self.train_set, self.val_set), known):
                if ds is not None and len(ds.problems) > n:  # found while decoding: say so once more
                    ds.warn_problems()
        return self.run_dir

    def train_one_epoch(self, epoch: int) -> dict[str, float]:
        from tqdm import tqdm

        cfg = self.cfg
        self.model.train()
        keep_frozen_eval(self.frozen)  # frozen stages keep their pretrained batch statistics
        self._set_epoch(epoch)
        sums: dict[str, float] = {}
        n = 0
        amp_dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        bar = tqdm(self.train_loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False,
                   disable=cfg.quiet or not dist_utils.is_main(), dynamic_ncols=True, mininterval=1.0)
        for images, targets in _checked_batches(bar, cfg, epoch):
            take_problems(targets, self.train_set)  # unreadable images a worker skipped
            images, targets = to_device(images, targets, self.device)
            with torch.autocast(self.device.type, dtype=amp_dtype, enabled=cfg.amp):
                out = self.model(images, targets)
            loss = sum(out.losses.values())
            value = dist_utils.all_reduce_mean(float(loss.detach()))
            if not math.isfinite(value):
                raise NonFiniteLossError(
                    f"non-finite loss ({value}) at epoch {epoch + 1}, iteration {n + 1} "
                    f"({', '.join(f'{k}={float(v.detach()):.4g}' for k, v in out.losses.items())}) "
                    f"on the batch of {describe_batch(targets, self.train_set)}; "
                    f"stopped. The last good checkpoint is kept in {self.run_dir}. "
                    "Try a lower --lr, a smaller --clip-grad, or check the data with `detseg data check`."
                )
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if cfg.clip_grad:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.eval_model.parameters(), cfg.clip_grad)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if cfg.time_limit is not None:
                used = self.train_seconds + time.perf_counter() - self._epoch_t0
                self._spent = dist_utils.all_reduce_mean(used / (cfg.time_limit * 60))
            self.scheduler.step()
            n += 1
            sums["loss"] = sums.get("loss", 0.0) + value
            for k, v in out.losses.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            bar.set_postfix({k: f"{v / n:.4f}" for k, v in sums.items()}, refresh=False)
            if self._spent >= 1.0:
                break  # the budget is spent: stop mid-epoch, annealed (validated by fit())
        return {k: v / max(n, 1) for k, v in sums.items()}


class DataLoaderError(RuntimeError):
    """A DataLoader worker died (killed, out of memory, a crash in native code) while loading."""


def _checked_batches(loader, cfg: TrainConfig, epoch: int):
    """``loader``'s batches; a dead worker becomes a :class:`DataLoaderError` saying what to do.

    An exception raised by a dataset inside a worker is re-raised by torch with its type and the
    worker's traceback (already clear, and naming the file for detseg's readers); a worker that
    dies without one (``os._exit``, a segfault, the OOM killer) is reported by torch's watchdog
    within seconds as a bare RuntimeError, which this names and explains.
    """
    it = iter(loader)
    while True:
        try:
            batch = next(it)
        except StopIteration:
            return
        except RuntimeError as e:
            if "DataLoader worker" not in str(e) or type(e) is not RuntimeError:
                raise
            raise DataLoaderError(
                f"{cfg.data}: data loading failed in epoch {epoch + 1} with --workers {cfg.workers}: "
                f"{e}. Rerun with --workers 0 to see the failing sample's own error in this process, "
                "and check the data with `detseg data check`."
            ) from e
        yield batch


def describe_batch(targets: list[dict[str, Any]], dataset: Any) -> str:
    """``image ids [3, 17] (a.jpg, b.jpg)``: the batch's ``image_id``s, and files where known."""
    ids = [t.get("image_id") for t in targets]
    ids = [int(i) if isinstance(i, (int, np.integer, torch.Tensor)) else i for i in ids]
    text = f"image ids {ids}"
    files, known = getattr(dataset, "files", None), getattr(dataset, "image_ids", None)
    if files and known and len(files) == len(known):
        by_id = dict(zip(known, files))
        names = [str(by_id[i]) for i in ids if i in by_id]
        if names:
            text += f" ({', '.join(names)})"
    return text


def default_hooks(cfg: TrainConfig) -> list[Hook]:
    hooks = [ArgsWriter(), CheckpointHook(), MetricsLogger(), CurvesPlotter(), SamplesDrawer(cfg.samples)]
    if cfg.tensorboard:
        hooks.append(TensorBoardLogger())
    return hooks


AUGMENT: dict[str, dict[str, Any]] = {
    "full": {},  # build_transforms' defaults: flip, scale jitter, colour jitter
    "flip": {"scale_jitter": None, "photometric": False},
    "none": {},
}


def build_datasets(cfg: TrainConfig, task: str):
    """Train (with augmentation) and validation (without) datasets for ``task``."""
    from detseg.data import build_dataset
    from detseg.data.split import SplitError, check_split
    from detseg.data.transforms import build_transforms

    check_split(cfg.train_split, "train_split")
    check_split(cfg.val_split, "val_split")
    # The split seed stays 0 (the canonical split `detseg eval` also uses): a different training
    # --seed must not move validation images into the training set.
    common = dict(task=task, val_fraction=cfg.val_fraction, seed=0, format=cfg.format,
                  images=cfg.images, annotations=cfg.annotations)
    try:  # train=True: data-option crop jitter applies to this set only
        train = build_dataset(cfg.data, split=cfg.train_split, train=True, **common)
    except SplitError as e:  # e.g. a range past the end of the data: name the option
        raise SplitError(f"train_split={cfg.train_split!r}: {e}") from None
    if cfg.augment not in AUGMENT:
        raise ValueError(f"augment: unknown {cfg.augment!r} (choose {', '.join(AUGMENT)})")
    if cfg.augment != "none":
        train.transforms = build_transforms(task, train=True, flip_pairs=train.flip_pairs,
                                            rotation=cfg.rotate, **AUGMENT[cfg.augment])
    try:
        val = build_dataset(cfg.data, split=cfg.val_split, **common)
    except (ValueError, FileNotFoundError) as e:
        if cfg.val_split != "val":
            if isinstance(e, SplitError):
                raise SplitError(f"val_split={cfg.val_split!r}: {e}") from None
            raise
        print(f"no validation split ({e}); training without validation")
        val = None
    if len(train) == 0:
        raise ValueError(f"{cfg.data}: the train split has no usable samples (see `detseg data check`)")
    if val is not None and len(val) == 0:  # e.g. a small set hashed with a small val_fraction
        print(f"no validation: the {cfg.val_split!r} split of {cfg.data} has no usable samples; "
              "training without validation")
        val = None
    _warn_overlap(train, val)
    return train, val


def _warn_overlap(train, val) -> None:
    """Warn when images are in both sets (e.g. overlapping index ranges): validation would lie."""
    files_t, files_v = getattr(train, "files", None), getattr(val, "files", None)
    if not files_t or not files_v or getattr(train, "split", None) == getattr(val, "split", None):
        return  # no file names (shapes), or the same split on purpose (an overfitting check)
    both = set(files_t) & set(files_v)
    if both:
        import warnings

        warnings.warn(f"{len(both)} sample(s) are in both the train split {train.split!r} and the "
                      f"val split {val.split!r} (first: {sorted(both)[0]}): validation is not held out",
                      stacklevel=3)


# Named class weightings of ``-o class_weights=NAME``: the power applied to SegNet's
# median-frequency weights. The square root is softer: on CamVid the full weights make a
# model paint small classes over 3-8x their true area (precision 0.05-0.16), which costs IoU.
CLASS_WEIGHTINGS = {"median_frequency": 1.0, "sqrt_median_frequency": 0.5}


def median_frequency_from(dataset, num_classes: int, max_images: int = 500,
                          power: float = 1.0) -> list[float]:
    """SegNet's median-frequency class weights from (up to 500 images of) the training set,
    raised to ``power`` (``-o class_weights=median_frequency`` is 1, ``sqrt_median_frequency``
    0.5); the computed list is what the checkpoint stores.
    """
    from detseg.models.segmentation.semantic import class_frequencies, median_frequency_weights

    transforms, dataset.transforms = dataset.transforms, None  # count the labels as they are
    try:
        weights = median_frequency_weights(class_frequencies(dataset, num_classes, max_images))
    finally:
        dataset.transforms = transforms
    return [w ** power for w in weights]


def dataset_info(ds) -> dict[str, Any]:
    """What a checkpoint needs to know of its data (names for drawing and evaluation)."""
    return {
        "classes": list(ds.classes), "seg_classes": list(ds.seg_classes),
        "keypoint_names": list(ds.keypoint_names), "flip_pairs": [list(p) for p in ds.flip_pairs],
    }


def format_record(record: dict[str, Any], task) -> str:
    keys = ["train/loss", "val/loss", *task.metric_keys]
    parts = [f"epoch {record['epoch']}"]
    parts += [f"{k}={record[k]:.4f}" for k in keys if isinstance(record.get(k), (int, float))]
    parts.append(f"{record.get('epoch_seconds', 0):.1f}s")
    return "  ".join(parts)


def _main_value(record: dict[str, Any], task) -> float:
    v = record.get(task.main_metric)
    if isinstance(v, (int, float)) and math.isfinite(v):
        return float(v) if task.higher_is_better else -float(v)
    loss = record.get("val/loss", record.get("train/loss", math.inf))
    return -float(loss)


def _broadcast_str(s: str) -> str:
    if dist_utils.world_size() == 1:
        return s
    obj = [s]
    torch.distributed.broadcast_object_list(obj, src=0)
    return obj[0]
