"""Training hooks: what happens around the loop, each in its own small object.

Following Detectron2's ``HookBase`` and minGPT's callbacks, the loop itself only steps the
optimizer; checkpoints, metric logs (``metrics.jsonl``, ``results.csv``, optionally TensorBoard
event files), curves and sample pictures are hooks that run on rank 0.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from detseg.io import atomic_path, dumps, save_figure, save_png, write_csv, write_json

if TYPE_CHECKING:  # pragma: no cover
    from detseg.engine.trainer import Trainer


class Hook:
    """Base class; every method is optional."""

    def before_train(self, trainer: "Trainer") -> None: ...

    def after_epoch(self, trainer: "Trainer", record: dict[str, Any]) -> None: ...

    def after_train(self, trainer: "Trainer") -> None: ...


class ArgsWriter(Hook):
    """``args.yaml``: every training option of the run, as the CLI took them."""

    def before_train(self, trainer: "Trainer") -> None:
        from dataclasses import asdict

        import yaml

        from detseg.io import write_text

        write_text(trainer.run_dir / "args.yaml", yaml.safe_dump(asdict(trainer.cfg), sort_keys=False))


class CheckpointHook(Hook):
    """``last.pt`` after every epoch, ``best.pt`` when the task's main metric improves."""

    def after_epoch(self, trainer: "Trainer", record: dict[str, Any]) -> None:
        from detseg.engine.checkpoint import save_checkpoint

        improved = trainer.update_best(record)
        state = trainer.state_dict()
        # best.pt first: a run killed between the two writes resumes from the older last.pt and
        # redoes this epoch identically, rewriting best.pt; the other order could lose a best.pt.
        if improved:
            save_checkpoint(trainer.run_dir / "best.pt", state)
        save_checkpoint(trainer.run_dir / "last.pt", state)


class MetricsLogger(Hook):
    """One JSON line per epoch in ``metrics.jsonl`` and one row per epoch in ``results.csv`` (the
    same columns, for spreadsheets); ``metrics.json`` with the summary at the end."""

    def after_epoch(self, trainer: "Trainer", record: dict[str, Any]) -> None:
        path = trainer.run_dir / "metrics.jsonl"
        lines = [dumps(r) for r in trainer.history]
        # Rewritten whole (atomically) so a resumed run never duplicates or truncates lines.
        with atomic_path(path) as tmp:
            tmp.write_text("\n".join(lines) + "\n")
        # Epochs skipped by --val-every lack the val columns: empty cells there.
        write_csv(trainer.run_dir / "results.csv", trainer.history)

    def after_train(self, trainer: "Trainer") -> None:
        # Again here: a run killed after its last last.pt but before this file resumes with no
        # epoch left to train, and must still end with every line.
        if trainer.history:
            self.after_epoch(trainer, trainer.history[-1])
        write_json(trainer.run_dir / "metrics.json", trainer.summary())


class TensorBoardLogger(Hook):
    """TensorBoard event files next to ``metrics.jsonl``: every numeric column of the epoch
    record as a scalar at step = epoch (``detseg train --tensorboard``; ``tensorboard --logdir runs``).

    Needs the ``tensorboard`` package (``pip install 'detseg[tensorboard]'``); without it the
    constructor raises ``ImportError`` saying so, before any training.
    """

    def __init__(self) -> None:
        self._writer_cls = self.require()
        self.writer = None

    @staticmethod
    def require():
        """``SummaryWriter``, or an ``ImportError`` telling how to install tensorboard."""
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ImportError("--tensorboard: the tensorboard package is not installed; "
                              "pip install 'detseg[tensorboard]' (or pip install tensorboard)") from None
        return SummaryWriter

    def before_train(self, trainer: "Trainer") -> None:
        # purge_step: a resumed run hides the events a killed run wrote after its last checkpoint.
        self.writer = self._writer_cls(log_dir=str(trainer.run_dir), purge_step=trainer.start_epoch + 1)

    def after_epoch(self, trainer: "Trainer", record: dict[str, Any]) -> None:
        step = int(record["epoch"])
        for k, v in record.items():
            if k != "epoch" and _finite(v) and not isinstance(v, bool):
                self.writer.add_scalar(k, float(v), step)
        self.writer.flush()

    def after_train(self, trainer: "Trainer") -> None:
        if self.writer is not None:
            self.writer.close()


class CurvesPlotter(Hook):
    """``curves.png``: train/val losses and validation metrics per epoch."""

    def after_epoch(self, trainer: "Trainer", record: dict[str, Any]) -> None:
        plot_curves(trainer.history, trainer.run_dir / "curves.png", trainer.task.metric_keys)


class SamplesDrawer(Hook):
    """``samples.png``: predictions beside ground truth for validation images spread over the
    split, each pair titled with the image's name and score (every validated epoch; drawn by
    :func:`detseg.engine.samples.draw_samples`)."""

    def __init__(self, n: int = 8):
        self.n = n

    def after_epoch(self, trainer: "Trainer", record: dict[str, Any]) -> None:
        if not trainer.validated or self.n < 1:  # no val set, an epoch skipped by --val-every, --samples 0
            return
        from detseg.engine.samples import draw_samples

        grid = draw_samples(trainer.eval_model, trainer.val_set, trainer.task, self.n)
        save_png(trainer.run_dir / "samples.png", grid)


def plot_curves(history: list[dict[str, Any]], path: Path, metric_keys: tuple[str, ...]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    loss_keys = sorted({k for r in history for k in r if k.endswith("loss") or "/loss_" in k})
    metric_cols = [k for k in metric_keys if any(_finite(r.get(k)) for r in history)]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for k in loss_keys:
        axes[0].plot(epochs, [r.get(k, math.nan) for r in history], marker="o", ms=3, label=k)
    axes[0].set(title="losses", xlabel="epoch")
    axes[0].legend(fontsize=7)
    for k in metric_cols:
        axes[1].plot(epochs, [r.get(k, math.nan) for r in history], marker="o", ms=3, label=k)
    axes[1].set(title="validation metrics", xlabel="epoch")
    if metric_cols:
        axes[1].legend(fontsize=7)
    for ax in axes:
        ax.grid(alpha=0.3)
    save_figure(path, fig)
    plt.close(fig)


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)
