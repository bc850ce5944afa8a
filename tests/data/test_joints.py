"""Joints files of the wrong shape: a clear error naming the file and the shapes expected, whether
the file is given as the data, found in a folder, or named as the annotations."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from detseg.data import build_dataset
from detseg.data.joints import load_joints
from detseg.data.lsp import LSPDataset

SHAPES = r"expected \(3, 14, N\) \(LSP\), \(14, 3, N\) \(LSPET\) or \(N, 14, 3\)"


def images(root, n: int = 4) -> None:
    (root / "images").mkdir(parents=True)
    for i in range(n):
        Image.new("RGB", (40, 40)).save(root / "images" / f"im{i + 1:05d}.jpg")


@pytest.mark.parametrize("name, content", [
    ("joints.npy", np.ones((4, 13, 3))),  # 13 joints
    ("joints.npy", np.ones((4, 14, 2))),  # no flag
    ("joints.json", [[[1, 2]] * 14] * 4),
    ("joints.npy", np.ones(14 * 3 * 4)),  # flat
])
def test_wrong_shape_is_named(tmp_path, name, content):
    images(tmp_path)
    path = tmp_path / name
    if name.endswith(".npy"):
        np.save(path, np.asarray(content))
    else:
        path.write_text(json.dumps(content))
    shape = str(np.shape(content)).replace("(", r"\(").replace(")", r"\)")
    with pytest.raises(ValueError, match=rf"{name}: joints: shape {shape}, {SHAPES}"):
        load_joints(path)
    with pytest.raises(ValueError, match=rf"{name}: joints: shape {shape}, {SHAPES}"):
        LSPDataset(tmp_path, joints=path)  # named as the annotations (a dataset yaml, --annotations)
    with pytest.raises(ValueError, match=rf"{name}: not a dataset file I know \(read as LSP joints: .*shape {shape}"):
        build_dataset(path)
    with pytest.raises(ValueError, match=rf"no known dataset format(.|\n)*lsp: .*{name}: joints: shape {shape}"):
        build_dataset(tmp_path)


def test_csv_row_of_the_wrong_length_is_named(tmp_path):
    images(tmp_path, 2)
    path = tmp_path / "joints.csv"
    path.write_text("\n".join(",".join(["1"] * 42) for _ in range(1)) + "\n" + ",".join(["1"] * 40) + "\n")
    with pytest.raises(ValueError, match=r"joints\.csv: row 2: 40 values, expected 42"):
        LSPDataset(tmp_path, joints=path)
