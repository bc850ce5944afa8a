"""The encoder-decoder FCN's upsampling kinds (``upsample=...``): the fixed unpoolings learn
nothing, max-unpooling uses the matching encoder pool's indices, a clear refusal without
recordable pools, other kinds on ResNet-18. The model protocol for each kind (both modes on images
of different sizes, gradients, rebuild, overfit) is in test_semantic_protocol.py."""

import pytest
import torch

from detseg.layers import UPSAMPLE_KINDS, MaxUnpool
from detseg.models.backbones import build_backbone
from detseg.models.segmentation.fcn import FCNDecoder, build_fcn
from detseg.models.zoo import build_model

CLASSES = ["background", "circle", "square"]


def tiny(upsample: str, **kw):
    torch.manual_seed(0)
    kw = {"img_size": 64, "backbone": "alexnet_small", "backbone_width": 8, "width": 16, **kw}
    return build_model("fcn", CLASSES, upsample=upsample, **kw)


def test_fixed_unpoolings_learn_nothing_themselves():
    for kind in ("nearest", "bed_of_nails", "max_unpool"):
        m = tiny(kind)
        for up in m.decoder.up.values():
            assert sum(p.numel() for p in up.unpool.parameters()) == 0
    n = {k: sum(p.numel() for p in tiny(k).parameters()) for k in UPSAMPLE_KINDS}
    assert n["transpose"] > n["nearest"] == n["bed_of_nails"] == n["bilinear"]


def test_max_unpool_uses_the_matching_encoder_pool():
    m = tiny("max_unpool", image_skip=False)
    dec = m.decoder
    # alexnet_small pools from stride 2->4, 4->8, 8->16, 16->32; c1 (stride 2) comes from a conv.
    assert dec.unpool_at == {"c4": 16, "c3": 8, "c2": 4, "c1": 2}
    assert dec.needs_indices and isinstance(dec.up["c4"].unpool, MaxUnpool)
    assert dec.up["c1"].unpool.unpool.kernel_size == (3, 3)  # the stem pool is 3x3, stride 2, pad 1
    x = torch.randn(2, 3, 64, 96)
    feats, pools = m.backbone.forward_with_indices(x)
    plain = m.backbone(x)
    for k in plain:
        assert torch.equal(feats[k], plain[k])  # recording indices changes no feature
    idx, size = pools[16]
    assert size == tuple(feats["c4"].shape[-2:]) and idx.shape == feats["c5"].shape
    # The indices are those of the stage-ending pool: gathering the pool input at them gives c5.
    pre = m.backbone.stages["c5"][:-1](feats["c4"])
    torch.testing.assert_close(pre.flatten(2).gather(2, idx.flatten(2)).view_as(idx),
                               feats["c5"])
    with pytest.raises(ValueError, match="indices"):
        dec(feats)


def test_max_unpool_needs_recordable_pools():
    for bb in ("resnet18", "simple"):
        with pytest.raises(ValueError, match=f"max_unpool.*{bb}.*no recordable max-pool"):
            build_fcn(CLASSES, backbone=bb, upsample="max_unpool")
    with pytest.raises(ValueError, match="unknown upsample 'deconv'"):
        build_fcn(CLASSES, upsample="deconv")
    with pytest.raises(ValueError, match="no max-pools whose indices"):
        build_backbone("simple").forward_with_indices(torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match="no decoder step matches"):
        FCNDecoder({"c4": 8, "c5": 8}, {"c4": 16, "c5": 32}, 3, upsample="max_unpool")


def test_other_kinds_work_on_resnet18():
    for kind in ("nearest", "resize_conv"):
        m = build_fcn(CLASSES, img_size=64, backbone="resnet18", width=16, upsample=kind).eval()
        assert m([torch.rand(3, 40, 30)]).predictions[0]["sem_seg"].shape == (40, 30)
