"""Same-resolution FCN: every layer keeps H x W (zero padding, no stride), the receptive field is
2 * depth + 1 px, and the model protocol (both modes, losses, gradients, rebuild, a tiny overfit)."""

import math

import pytest
import torch

from detseg.models.fcn_same_res import SameResFCN, build_fcn_same_res
from detseg.structures import ModelOutput

CLASSES = ["background", "circle", "square"]
SMALL = {"img_size": 32, "depth": 3, "width": 8}


def _tiny(**kw):
    torch.manual_seed(0)
    return build_fcn_same_res(CLASSES, **{**SMALL, **kw})


@pytest.fixture
def batch(images, generator):
    tgs = [{"sem_seg": torch.randint(0, 3, im.shape[1:], generator=generator)} for im in images]
    return images, tgs


def test_every_layer_keeps_the_input_size():
    net = SameResFCN(4, depth=3, width=8).eval()
    x = torch.rand(2, 3, 13, 22)
    for layer in net.features:
        x = layer(x)
        assert tuple(x.shape[-2:]) == (13, 22)
    assert net.classifier(x).shape == (2, 4, 13, 22)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 4 and all(c.stride == (1, 1) for c in convs)


def test_receptive_field_is_2_depth_plus_1():
    torch.manual_seed(0)
    net = SameResFCN(2, depth=3, width=4).eval()
    x = torch.rand(1, 3, 15, 15)
    y = x.clone()
    y[0, :, 7, 7 + 4] += 1.0  # 4 px right of the centre: outside the 7 x 7 field (radius 3)
    with torch.no_grad():
        a, b = net(x), net(y)
    assert torch.equal(a[0, :, 7, 7], b[0, :, 7, 7])
    assert not torch.equal(a[0, :, 7, 8], b[0, :, 7, 8])  # radius 3: inside


def test_train_mode_losses_only_unless_asked(batch):
    ims, tgs = batch
    m = _tiny().train()
    out = m(ims, tgs)
    assert isinstance(out, ModelOutput) and out.predictions is None
    assert set(out.losses) == {"loss_sem_seg"} and out.loss.requires_grad
    assert len(m(ims, tgs, with_predictions=True).predictions) == 2


def test_eval_predictions_at_original_size_and_losses_with_targets(batch):
    ims, tgs = batch
    m = _tiny().eval()
    assert m.network.stride == 1
    assert m(ims).losses == {}
    out = m(ims, tgs, with_logits=True)
    assert math.isfinite(out.loss.item())
    for im, p in zip(ims, out.predictions):
        assert p["sem_seg"].shape == im.shape[1:] and p["sem_seg"].dtype == torch.int64
        assert p["sem_seg_logits"].shape == (3, *im.shape[1:])
        assert 0 < float(p["scores"]) <= 1 and int(p["sem_seg"].max()) < 3


def test_gradients_reach_the_first_layer(batch):
    ims, tgs = batch
    m = _tiny().train()
    m(ims, tgs).loss.backward()
    first = m.network.features[0].weight
    assert first.grad is not None and first.grad.abs().sum() > 0
    assert all(p.grad is not None for p in m.parameters())


def test_rebuild_gives_identical_outputs(batch):
    ims, _ = batch
    m = _tiny().eval()
    torch.manual_seed(123)  # a different draw: only the state dict can make them equal
    copy = build_fcn_same_res(CLASSES, **SMALL).eval()
    copy.load_state_dict(m.state_dict())
    for p, q in zip(m(ims, with_logits=True).predictions, copy(ims, with_logits=True).predictions):
        assert torch.equal(p["sem_seg_logits"], q["sem_seg_logits"])


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="fcn_same_res: depth"):
        build_fcn_same_res(CLASSES, depth=0)
    with pytest.raises(ValueError, match="loss_reduction"):
        build_fcn_same_res(CLASSES, loss_reduction="max")


def test_overfits_one_tiny_batch(train_steps):
    m = _tiny().train()
    ims = [torch.rand(3, 32, 32) * 0.2 for _ in range(4)]
    tgs = []
    for i, im in enumerate(ims):
        seg = torch.zeros(32, 32, dtype=torch.int64)
        seg[4 + i: 20 + i, 6:22] = 1 + i % 2
        im[:, seg > 0] += 0.6 if i % 2 else 0.3
        tgs.append({"sem_seg": seg})
    first, last = train_steps(m, ims, tgs, lr=1e-2, steps=30)
    assert last < 0.5 * first
