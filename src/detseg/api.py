"""The Python API, mirroring the CLI verb for verb.

    import detseg
    run = detseg.train("fcn", data="shapes:size=96", epochs=5, img_size=96)
    metrics = detseg.evaluate(run / "best.pt", data="shapes:size=96")
    model = detseg.load(run / "best.pt")
    for r in model.predict(["a.png", "b.png"]):
        r.save(f"{r.name}_pred.png")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from detseg.engine.checkpoint import load_model


def train(model: str, data: str = "shapes", **options: Any) -> Path:
    """Train a zoo model; returns the run folder. Options are :class:`TrainConfig` fields."""
    from detseg.engine.trainer import TrainConfig, Trainer

    return Trainer(TrainConfig(model=model, data=data, **options)).fit()


def load(path: str | Path, device: str = "cpu", **options: Any):
    """The model stored in a checkpoint, ready for ``model.predict(images)``.

    ``options`` override builder options that keep the weights, e.g. ``crf=True`` (DeepLab).
    A ``.onnx`` file written by ``detseg export`` gives an :class:`~detseg.export.runtime.OnnxModel`
    (run by onnxruntime) with the same ``predict`` and ``model(images).predictions``.
    """
    if Path(path).suffix.lower() == ".onnx":
        from detseg.export.runtime import load_onnx

        return load_onnx(path, device=device, **options)
    return load_model(path, device=device, **options)


def evaluate(checkpoint, data: str, split: str = "val", batch: int = 8, device: str = "auto",
             val_fraction: float = 0.2, seed: int = 0, format: str | None = None,
             workers: int = 0, quiet: bool = True, return_evaluator: bool = False,
             options: dict[str, Any] | None = None, images: str | Path | None = None,
             annotations: str | Path | None = None):
    """Metrics (flat keys, plus ``loss``) of a checkpoint (or a model) on a dataset split.

    ``data`` is a path, a dataset yaml or ``shapes[...]``; ``images``/``annotations`` name the
    parts explicitly (``data`` is then an optional root). Unreadable images are skipped with a
    counted warning naming them.
    """
    from detseg.data import build_dataset
    from detseg.engine.distributed import resolve_device
    from detseg.engine.evaluate import build_task_evaluator
    from detseg.engine.evaluate import evaluate as run_eval
    from detseg.tasks import get_task

    device = resolve_device(device)
    if isinstance(checkpoint, (str, Path)):
        model = load(checkpoint, device, **(options or {}))
    else:
        model = checkpoint.to(device)
    task = get_task(model.task)
    ds = build_dataset(data, split=split, task=task.name, val_fraction=val_fraction, seed=seed,
                       format=format, images=images, annotations=annotations)
    known = len(ds.problems)
    if len(ds) == 0:
        raise ValueError(f"{data}: the {split!r} split has no usable samples (see `detseg data check`)")
    check_classes(model, ds, task.name)
    evaluator = build_task_evaluator(model, task)
    metrics, losses = run_eval(model, ds, task, batch=batch, device=device, workers=workers,
                               quiet=quiet, evaluator=evaluator)
    if len(ds.problems) > known:  # images that failed to decode during the pass
        ds.warn_problems()
    if "loss" in losses:
        metrics["loss"] = losses["loss"]
    return (metrics, evaluator) if return_evaluator else metrics


def predict(checkpoint, inputs, device: str = "cpu", conf: float = 0.0, **options: Any):
    """``list[Results]`` for images (paths, PIL images, arrays or tensors)."""
    model = load(checkpoint, device, **options) if isinstance(checkpoint, (str, Path)) else checkpoint
    return model.predict(inputs, conf=conf)


def check_classes(model, dataset, task: str) -> None:
    """The evaluated data must name the classes the model was trained with, in the same order."""
    names = dataset.seg_classes if task == "semantic" else dataset.classes
    if list(names) != list(model.classes):
        raise ValueError(
            f"{getattr(dataset, 'root', 'data')}: classes {list(names)} differ from the model's "
            f"{list(model.classes)}; evaluate on data with the training classes"
        )

