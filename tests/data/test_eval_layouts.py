"""``detseg eval`` of a checkpoint on another split of the same kind of data, in another layout:
a CamVid folder holding only ``test/`` + ``testannot/``; LSP joints as ``.mat``, ``.npy``, ``.json``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from detseg.cli.main import main

CAMVID_NAMES = ["0001TP_006690", "0016E5_00390", "0006R0_f02010", "Seq05VD_f00060"]


def write_camvid(root: Path, splits: dict[str, list[str]]) -> Path:
    rng = np.random.default_rng(0)
    for split, stems in splits.items():
        for stem in stems:
            (root / split).mkdir(parents=True, exist_ok=True)
            (root / f"{split}annot").mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(root / split / f"{stem}.png")
            label = rng.integers(0, 12, (24, 32)).astype(np.uint8)  # 11 = void
            Image.fromarray(label).save(root / f"{split}annot" / f"{stem}.png")
    return root


def train(tmp_path: Path, model: str, data: Path, *extra: str) -> Path:
    runs = tmp_path / "runs"
    assert main(["train", model, "--data", str(data), "--img-size", "32", "--epochs", "1", "--batch", "4",
                 "--device", "cpu", "--out", str(runs), "--quiet", "--samples", "0", *extra]) == 0
    return runs / model / "train1" / "last.pt"


def test_camvid_eval_on_a_test_only_folder(tmp_path):
    ckpt = train(tmp_path, "fcn", write_camvid(tmp_path / "CamVid", {"train": CAMVID_NAMES[:3],
                                                                      "val": CAMVID_NAMES[3:]}))
    test_only = write_camvid(tmp_path / "CamVidTest", {"test": CAMVID_NAMES})
    out = tmp_path / "m.json"
    assert main(["eval", str(ckpt), "--data", str(test_only), "--split", "test", "--json", str(out)]) == 0
    assert "mIoU" in json.loads(out.read_text())


def test_lsp_eval_takes_every_joints_layout(tmp_path):
    import scipy.io

    rng = np.random.default_rng(0)
    n = 6
    joints = np.concatenate([rng.uniform(4, 28, (n, 14, 2)), np.ones((n, 14, 1))], -1)
    for root in ("train", "mat", "npy", "json"):
        for i in range(n):
            (tmp_path / root / "images").mkdir(parents=True, exist_ok=True)
            pixels = np.random.default_rng(i).integers(0, 255, (32, 32, 3), dtype=np.uint8)  # same in every root
            Image.fromarray(pixels).save(tmp_path / root / "images" / f"im{i + 1:05d}.jpg")
    scipy.io.savemat(tmp_path / "train" / "joints.mat", {"joints": joints.transpose(1, 2, 0)})  # (14, 3, N)
    ckpt = train(tmp_path, "pose_regression", tmp_path / "train")
    scipy.io.savemat(tmp_path / "mat" / "joints.mat", {"joints": joints})  # (N, 14, 3)
    np.save(tmp_path / "npy" / "joints.npy", joints.transpose(1, 2, 0))
    (tmp_path / "json" / "joints.json").write_text(json.dumps(joints.tolist()))
    results = []
    for layout, data in (("mat", "mat"), ("npy", "npy/joints.npy"), ("json", "json")):  # a folder or the file
        out = tmp_path / f"{layout}.json"
        assert main(["eval", str(ckpt), "--data", str(tmp_path / data), "--split", "all",
                     "--json", str(out)]) == 0
        results.append(json.loads(out.read_text()))
    assert results[0] == results[1] == results[2]  # the same joints, whatever the file
