"""Fixtures of the serve tests: tiny checkpoints whose predictions are fixed and non-empty.

The weights are random but *decisive* (He-scaled: detseg.models.init.decisive_init): a zoo
model's own init starts many heads at ~0, where every score ties. A detector with sliding-window
proposals then gives dozens of boxes on a shapes image, with scores spread over (0, 1), so a
threshold slider has something to change -- without seconds of training.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detseg.models.init import decisive_init

DET_OPTS = dict(img_size=64, backbone_width=8, hidden=32, proposals="sliding_window", num_proposals=30)
SEG_OPTS = dict(img_size=64, backbone_width=8, width=16)
POSE_OPTS = dict(img_size=32, backbone_width=8, deconv_channels=16)


decisive = decisive_init


def make_checkpoint(path: Path, name: str, task: str, **opts) -> Path:
    """A checkpoint of a zoo model with decisive random weights and the shapes world's classes."""
    from detseg.data import build_dataset
    from detseg.engine.checkpoint import save_checkpoint
    from detseg.models.zoo import build_model

    ds = build_dataset("shapes:size=32,n=2", split="val", task=task)
    classes = ds.seg_classes if task == "semantic" else ds.classes
    m = decisive(build_model(name, classes=list(classes), **opts))
    save_checkpoint(path, {"builder": m.builder_name, "builder_args": m.builder_args, "task": m.task,
                           "classes": m.classes, "model": m.state_dict()})
    return path


@pytest.fixture(scope="session")
def det_ckpt(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("serve") / "fast_rcnn.pt", "fast_rcnn", "detection",
                           **DET_OPTS)


@pytest.fixture(scope="session")
def seg_ckpt(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("serve") / "fcn.pt", "fcn", "semantic", **SEG_OPTS)


@pytest.fixture(scope="session")
def pose_ckpt(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("serve") / "pose.pt", "pose_heatmap", "pose", **POSE_OPTS)


def shapes_array(size: int = 64, index: int = 0) -> np.ndarray:
    """One image of the built-in shapes world, ``uint8 [H, W, 3]``."""
    from detseg.data import build_dataset

    ds = build_dataset(f"shapes:size={size},n=4", split="val", task="detection")
    return (ds[index][0].permute(1, 2, 0) * 255).round().byte().numpy()


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="session")
def shapes_png() -> tuple[np.ndarray, bytes]:
    a = shapes_array()
    return a, png_bytes(a)


@pytest.fixture(scope="session")
def to_png():
    """``to_png(uint8 array) -> PNG bytes`` (test modules cannot import this conftest)."""
    return png_bytes
