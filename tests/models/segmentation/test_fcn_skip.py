"""FCN-32s/16s/8s/4s: each variant's strides, the paper's initialisation (zero skip scores: a fresh
FCN-16s/8s predicts what its FCN-32s path predicts, yet the skip scores get a gradient), the skips
in use, backbones, weights and options. The model protocol (both modes, gradients, rebuild,
overfit) is in test_semantic_protocol.py."""

import pytest
import torch

from detseg.models.segmentation.fcn_skips import (FCNSkipNet, VGG16Backbone, build_fcn4s, build_fcn8s,
                                     build_fcn16s, build_fcn32s, build_fcn_skip)
from detseg.models.backbones import build_backbone

CLASSES = ["background", "circle", "square"]
BUILDERS = {"32s": build_fcn32s, "16s": build_fcn16s, "8s": build_fcn8s, "4s": build_fcn4s}


def tiny(variant: str, **kw):
    """A small FCN-``variant`` on the ``simple`` backbone, the same weights on every call."""
    torch.manual_seed(0)
    kw = {"img_size": 64, "backbone": "simple", "head_width": 16, **kw}
    return BUILDERS[variant](CLASSES, **kw)


@pytest.mark.parametrize("variant", list(BUILDERS))
def test_each_variant_pads_to_32_and_predicts_at_its_final_stride(variant):
    m = tiny(variant)
    assert m.task == "semantic" and m.network.stride == 32
    assert m.network.final_stride == {"32s": 32, "16s": 16, "8s": 8, "4s": 4}[variant]


@pytest.mark.parametrize("variant", ["16s", "8s", "4s"])
def test_zero_initialised_skip_scores_still_get_a_gradient(variant, batch):
    """Training turns the skips on: their scores start at zero but their gradient does not."""
    m = tiny(variant).train()
    m(*batch).loss.backward()
    assert len(m.network.score_skips) == {"16s": 1, "8s": 2, "4s": 3}[variant]
    for score in m.network.score_skips.values():
        assert score.weight.grad.abs().sum() > 0


def test_skip_layout_and_paper_initialisation():
    assert tiny("32s").network.skip_names == []
    assert tiny("16s").network.skip_names == ["c4"]
    assert tiny("4s").network.skip_names == ["c4", "c3", "c2"]
    net = tiny("8s").network
    assert net.skip_names == ["c4", "c3"]
    for name in net.skip_names:
        assert not net.score_skips[name].weight.any() and not net.score_skips[name].bias.any()
        # The x2 upsamplers start as bilinear interpolation and are learned.
        w = net.up2[name].conv.weight
        assert w.requires_grad and torch.equal(w[0, 0], w[1, 1]) and not w[0, 1].any()
    # The final upsampling is fixed to bilinear (paper, section 4.2) unless asked otherwise.
    assert not any(p.requires_grad for p in net.final_up.parameters())
    learned = tiny("8s", learn_final_upsample=True).network.final_up
    assert all(p.requires_grad for p in learned.parameters())


def _shared_weights(src, dst):
    """Copy ``src``'s backbone, head and stride-32 score into ``dst`` (same-shape tensors only)."""
    own = dst.state_dict()
    dst.load_state_dict({k: v for k, v in src.state_dict().items()
                         if k in own and v.shape == own[k].shape and "final_up" not in k},
                        strict=False)


@pytest.mark.parametrize("variant", ["16s", "8s", "4s"])
def test_zero_skip_scores_start_from_the_fcn32s_predictions(variant):
    """Given the same backbone and head, a fresh FCN-16s/8s adds exactly nothing to FCN-32s's
    stride-32 scores: its fused scores are those scores carried up by the x2 upsamplers, and its
    final logits are FCN-32s's up to the difference between one x32 bilinear interpolation and a
    chain of x2 ... x8 ones (interpolating an interpolation is not exactly the same function)."""
    m32, m = tiny("32s").eval(), tiny(variant).eval()
    for p in m.network.head.parameters():  # make sure equality comes from copying, not the seed
        p.data.add_(1.0)
    _shared_weights(m32, m)
    x = torch.randn(2, 3, 128, 96)
    with torch.no_grad():
        s32 = m32.network.coarse_scores(x)
        fused, expected = m.network.coarse_scores(x), s32
        for name in m.network.skip_names:
            expected = m.network.up2[name](expected)
        torch.testing.assert_close(fused, expected, rtol=0, atol=1e-6)
        a, b = m32.network(x), m.network(x)
    assert (a.argmax(1) == b.argmax(1)).float().mean() > 0.9
    assert (a - b).abs().mean() < 0.15 * a.abs().mean()


def test_fcn8s_uses_its_skips():
    m32, m8 = tiny("32s").eval(), tiny("8s").eval()
    _shared_weights(m32, m8)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before = m8.network(x)
        for score in m8.network.score_skips.values():
            score.weight.normal_()
        after = m8.network(x)
    assert not torch.allclose(before, after)
    # The finer scores change the output at stride 8: FCN-8s now differs from FCN-32s.
    assert not torch.allclose(after, m32.network(x), atol=1e-3)


def test_backbones_and_default_build():
    m = build_fcn8s(CLASSES, img_size=64).eval()  # resnet18: c3/c4/c5
    assert m.network.skip_names == ["c4", "c3"] and m.network.deepest == "c5"
    assert m([torch.rand(3, 40, 30)]).predictions[0]["sem_seg"].shape == (40, 30)
    m = build_fcn16s(CLASSES, img_size=32, backbone="alexnet_small", backbone_width=8).eval()
    assert m([torch.rand(3, 20, 32)]).predictions[0]["sem_seg"].shape == (20, 32)
    m = build_fcn8s(CLASSES, img_size=32, backbone="vgg16", head_width=16).eval()
    assert m.network.skip_names == ["pool4", "pool3"] and m.network.deepest == "pool5"
    assert m([torch.rand(3, 32, 32)]).predictions[0]["sem_seg"].shape == (32, 32)


def test_vgg16_backbone_maps_and_torchvision_names():
    bb = VGG16Backbone()
    feats = bb(torch.rand(1, 3, 64, 32))
    assert {k: tuple(v.shape[1:]) for k, v in feats.items()} == {
        "pool3": (256, 8, 4), "pool4": (512, 4, 2), "pool5": (512, 2, 1)}
    from torchvision.models.vgg import cfgs, make_layers

    tv = {f"features.{k}": v.shape for k, v in make_layers(cfgs["D"]).state_dict().items()}
    assert {k: v.shape for k, v in bb.state_dict().items()} == tv


def test_weights_pass_through_to_the_backbone(tmp_path):
    torch.manual_seed(1)
    src = build_backbone("simple")
    path = tmp_path / "simple.pt"
    torch.save(src.state_dict(), path)
    m = tiny("8s", weights=str(path))
    for k, v in src.state_dict().items():
        assert torch.equal(m.backbone.state_dict()[k], v)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        tiny("8s", weights=str(tmp_path / "missing.pt"))


def test_options_are_checked():
    with pytest.raises(ValueError, match="variant"):
        build_fcn_skip(CLASSES, variant="2s", backbone="simple")
    with pytest.raises(ValueError, match="no stride-4 feature"):  # VGG-16 is cut at pool3..5
        build_fcn4s(CLASSES, img_size=32, backbone="vgg16", head_width=16)
    with pytest.raises(ValueError, match="unknown backbone 'resnet1000'"):
        build_fcn8s(CLASSES, backbone="resnet1000")
    with pytest.raises(ValueError, match="backbone_width"):
        build_fcn8s(CLASSES, backbone="vgg16", backbone_width=8)
    with pytest.raises(ValueError, match="loss_reduction"):
        tiny("8s", loss_reduction="max")
    m = tiny("8s", class_weights=[1.0, 2.0, 3.0])
    assert m.criterion.weight.tolist() == [1.0, 2.0, 3.0]


def test_network_needs_the_strides_it_fuses():
    bb = build_backbone("simple")
    bb.strides = {**bb.strides, "c3": 4}  # a backbone without a stride-8 map
    with pytest.raises(ValueError, match="no stride-8 feature"):
        FCNSkipNet(bb, 3, "8s")
    FCNSkipNet(bb, 3, "16s")  # FCN-16s does not need it
