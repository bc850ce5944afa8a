"""FCN: the model protocol in both modes, the ignore-aware loss at original resolution,
predictions at the original size, rebuilding from builder_args, and a tiny overfit."""

import math
from functools import partial

import pytest
import torch
import torch.nn.functional as F

from detseg.models.fcn import FCNDecoder, build_fcn
from detseg.models.zoo import build_model
from detseg.structures import IGNORE_INDEX, ModelOutput

CLASSES = ["background", "circle", "square"]


@pytest.fixture
def tiny(tiny_model):
    """``tiny(**kw)``: a small FCN, the same weights on every call."""
    return partial(tiny_model, "fcn", CLASSES, width=16)


@pytest.fixture
def batch(images, generator):
    tgs = [{"sem_seg": torch.randint(0, 3, im.shape[1:], generator=generator)} for im in images]
    return images, tgs


def test_train_mode_losses_only_unless_asked(tiny, batch):
    m = tiny().train()
    ims, tgs = batch
    out = m(ims, tgs)
    assert isinstance(out, ModelOutput) and out.predictions is None
    assert set(out.losses) == {"loss_sem_seg"} and out.loss.requires_grad
    out = m(ims, tgs, with_predictions=True)
    assert len(out.predictions) == 2 and out.losses


def test_eval_mode_predictions_at_original_size_and_losses_with_targets(tiny, batch):
    m = tiny().eval()
    ims, tgs = batch
    out = m(ims)
    assert out.losses == {}
    for im, p in zip(ims, out.predictions):
        assert p["sem_seg"].shape == im.shape[1:] and p["sem_seg"].dtype == torch.int64
        assert p["scores"].ndim == 0 and 0 < float(p["scores"]) <= 1
        assert "sem_seg_logits" not in p
        assert int(p["sem_seg"].max()) < len(CLASSES)
    out = m(ims, tgs, with_logits=True)
    assert "loss_sem_seg" in out.losses and math.isfinite(out.loss.item())
    logits = out.predictions[0]["sem_seg_logits"]
    assert logits.shape == (3, 100, 80)
    assert torch.equal(logits.argmax(0), out.predictions[0]["sem_seg"])
    assert "sem_seg_logits" in tiny(return_logits=True).eval()(ims).predictions[1]


def test_gradients_reach_the_first_layer(tiny, batch):
    m = tiny().train()
    ims, tgs = batch
    m(ims, tgs).loss.backward()
    first = m.backbone.stages["c1"][0].weight
    assert first.grad is not None and first.grad.abs().sum() > 0
    assert all(p.grad is not None for p in m.parameters())  # DDP needs every parameter used


def test_loss_ignores_255_pixels(tiny):
    m = tiny().eval()
    im = torch.rand(3, 50, 70)
    seg = torch.full((50, 70), IGNORE_INDEX)
    seg[13, 41] = 2
    out = m([im], [{"sem_seg": seg}], with_logits=True)
    logits = out.predictions[0]["sem_seg_logits"]
    expected = F.cross_entropy(logits[:, 13, 41][None], torch.tensor([2]))
    torch.testing.assert_close(out.losses["loss_sem_seg"], expected)


def test_mean_over_labelled_pixels_of_the_batch_and_sum_option(tiny, batch):
    ims, tgs = batch
    tgs[0]["sem_seg"][:40] = IGNORE_INDEX
    mean = tiny().eval()(ims, tgs).losses["loss_sem_seg"]
    total = tiny(loss_reduction="sum").eval()(ims, tgs).losses["loss_sem_seg"]
    n = sum(int((t["sem_seg"] != IGNORE_INDEX).sum()) for t in tgs)
    torch.testing.assert_close(total / n, mean)
    all_ignored = [{"sem_seg": torch.full_like(t["sem_seg"], IGNORE_INDEX)} for t in tgs]
    m = tiny().train()
    loss = m(ims, all_ignored).loss
    assert loss.item() == 0 and loss.requires_grad


def test_bad_targets_are_named(tiny, batch):
    m = tiny().eval()
    ims, tgs = batch
    with pytest.raises(ValueError, match=r"targets\[1\]\['sem_seg'\]: shape"):
        m(ims, [tgs[0], {"sem_seg": torch.zeros(10, 10, dtype=torch.int64)}])
    bad = tgs[0]["sem_seg"].clone()
    bad[0, 0] = 7
    with pytest.raises(ValueError, match="value 7"):
        m(ims, [{"sem_seg": bad}, tgs[1]])
    with pytest.raises(ValueError, match="no 'sem_seg'"):
        m(ims, [{}, {}])
    with pytest.raises(ValueError, match="2 images but 1 targets"):
        m(ims, tgs[:1])
    with pytest.raises(ValueError, match="loss_reduction"):
        build_fcn(CLASSES, loss_reduction="max")


def test_rebuild_from_builder_args_gives_identical_outputs(tiny, batch):
    m = tiny().eval()
    copy = build_model(m.builder_name, **m.builder_args).eval()
    copy.load_state_dict(m.state_dict())
    ims, _ = batch
    a, b = m(ims, with_logits=True), copy(ims, with_logits=True)
    for p, q in zip(a.predictions, b.predictions):
        assert torch.equal(p["sem_seg_logits"], q["sem_seg_logits"])


def test_default_and_resnet_builds_run():
    for kw in ({}, {"backbone": "resnet18", "width": 32}, {"image_skip": False}):
        m = build_fcn(CLASSES, img_size=64, **kw).eval()
        assert m.task == "semantic" and m.num_classes == 3
        assert m([torch.rand(3, 40, 30)]).predictions[0]["sem_seg"].shape == (40, 30)


def test_decoder_skips():
    bb_ch = {"c2": 8, "c3": 16, "c4": 32, "c5": 64}
    bb_st = {"c2": 4, "c3": 8, "c4": 16, "c5": 32}
    feats = {k: torch.rand(1, c, 64 // bb_st[k], 64 // bb_st[k]) for k, c in bb_ch.items()}
    for skips in ([], ["c3"], None):
        assert FCNDecoder(bb_ch, bb_st, 3, width=16, skips=skips)(feats).shape == (1, 3, 64, 64)
    with pytest.raises(ValueError, match="c5"):
        FCNDecoder(bb_ch, bb_st, 3, skips=["c5"])


def test_overfits_one_tiny_batch(train_steps):
    torch.manual_seed(0)
    m = build_fcn(CLASSES, img_size=32, backbone="simple", width=16).train()
    ims = [torch.rand(3, 32, 32) * 0.2 for _ in range(4)]
    tgs = []
    for i, im in enumerate(ims):
        seg = torch.zeros(32, 32, dtype=torch.int64)
        seg[4 + i: 20 + i, 6:22] = 1 + i % 2
        im[:, seg > 0] += 0.6
        tgs.append({"sem_seg": seg})
    first, last = train_steps(m, ims, tgs, lr=1e-2, steps=30)
    assert last < 0.5 * first
