"""FCN (the encoder-decoder with skips): the ignore-aware per-pixel loss at original resolution,
its mean/sum reductions, bad targets named, the default and ResNet builds, and the decoder's skips.
The model protocol (both modes, gradients, rebuild, overfit) is in test_semantic_protocol.py."""

from functools import partial

import pytest
import torch
import torch.nn.functional as F

from detseg.models.segmentation.fcn import FCNDecoder, build_fcn
from detseg.structures import IGNORE_INDEX

CLASSES = ["background", "circle", "square"]


@pytest.fixture
def tiny(tiny_model):
    """``tiny(**kw)``: a small FCN, the same weights on every call."""
    return partial(tiny_model, "fcn", CLASSES, width=16)


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
