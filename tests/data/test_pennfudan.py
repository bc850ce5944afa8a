"""Penn-Fudan as it comes: a mask PNG of another size than its image is a named problem, skipped."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from detseg.data import build_dataset
from tests.data.test_readers import write_pennfudan


def test_mask_of_another_size_is_skipped(tmp_path):
    root = write_pennfudan(tmp_path / "PennFudanPed")
    ids = np.zeros((10, 15), np.uint8)
    ids[2:8, 3:9] = 1
    Image.fromarray(ids).save(root / "PedMasks" / "PennPed00002_mask.png")
    ds = build_dataset(root, split="all")
    assert [Path(f).name for f in ds.files] == ["FudanPed00001.png"]
    (p,) = [p for p in ds.problems if p.field == "size"]
    assert Path(p.file).name == "PennPed00002_mask.png"
    assert p.message == "mask is 15x10 but the image is 30x20: sample skipped"
