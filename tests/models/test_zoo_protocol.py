"""Every zoo model speaks the one protocol: same output type in train and eval, losses whenever
targets are given, predictions at the original size, and a checkpoint that rebuilds it alone."""

import pytest
import torch

from detseg.data import build_dataset
from detseg.engine.checkpoint import load_model, save_checkpoint
from detseg.models.zoo import ZOO, build_model
from detseg.structures import ModelOutput


def _data(task: str):
    ds = build_dataset("shapes:size=32,n=2", split="val", task=task)
    classes = ds.seg_classes if task == "semantic" else ds.classes
    return [ds[i] for i in range(2)], classes


# Models whose defaults are torchvision's full-size configuration get small parts here (keeps the test fast).
_RCNN_SMALL = {"backbone": "simple", "fpn_channels": 32, "representation": 64, "detections_per_img": 10}
_FAST_OPTIONS = {"faster_rcnn": _RCNN_SMALL, "mask_rcnn": {**_RCNN_SMALL, "mask_layers": [32, 32]},
                 "keypoint_rcnn": {**_RCNN_SMALL, "keypoint_layers": [32, 32]}}


@pytest.mark.parametrize("name", list(ZOO))
def test_protocol_and_checkpoint_round_trip(name, tmp_path):
    torch.manual_seed(0)
    task = ZOO[name].task
    samples, classes = _data(task)
    model = build_model(name, classes=classes, img_size=32, **_FAST_OPTIONS.get(name, {}))
    images = [im for im, _ in samples]
    targets = [t for _, t in samples]
    model.train()
    out = model(images, targets)
    assert isinstance(out, ModelOutput) and out.losses and out.predictions is None
    out.loss.backward()
    model.eval()
    with torch.no_grad():
        out = model(images, targets)
    assert isinstance(out, ModelOutput) and out.losses and len(out.predictions) == 2
    if task == "semantic":
        assert out.predictions[0]["sem_seg"].shape == images[0].shape[-2:]
    save_checkpoint(tmp_path / "m.pt", {"builder": model.builder_name, "builder_args": model.builder_args,
                                        "model": model.state_dict()})
    again = load_model(tmp_path / "m.pt")
    with torch.no_grad():
        a, b = model(images).predictions[0], again(images).predictions[0]
    for k, v in a.items():
        if isinstance(v, torch.Tensor):
            assert torch.allclose(v.float(), b[k].float(), atol=1e-5), k
