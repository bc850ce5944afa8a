"""Backbones: declared channels/strides match the real outputs; local weights load and report."""

import pytest
import torch

from detseg.models.backbones import BACKBONES, build_backbone, load_weights


@pytest.mark.parametrize("name", list(BACKBONES))
def test_declared_channels_and_strides_match_outputs(name):
    bb = build_backbone(name).eval()
    h, w = 64, 96
    feats = bb(torch.rand(2, 3, h, w))
    assert list(feats) == list(bb.channels) == list(bb.strides)
    for k, f in feats.items():
        assert f.shape == (2, bb.channels[k], h // bb.strides[k], w // bb.strides[k]), k
    assert bb.out_stride == 32 and bb.strides["c5"] == 32


def test_alexnet_small_is_small_and_resnet18_is_torchvision():
    n = sum(p.numel() for p in build_backbone("alexnet_small").parameters())
    assert 1e6 <= n <= 2e6
    import torchvision

    tv = torchvision.models.resnet18().state_dict()
    own = build_backbone("resnet18").state_dict()
    assert set(own) == {k for k in tv if not k.startswith("fc.")}


def test_unknown_name_and_option():
    with pytest.raises(ValueError, match="alexnet_small"):
        build_backbone("vgg99")
    with pytest.raises(TypeError, match="resnet18"):
        build_backbone("resnet18", width=3)


def _same_params(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_local_weights_round_trip(tmp_path):
    torch.manual_seed(0)
    src = build_backbone("alexnet_small", width=8)
    path = tmp_path / "bb.pt"
    torch.save(src.state_dict(), path)
    torch.manual_seed(1)
    dst = build_backbone("alexnet_small", weights=str(path), width=8)
    assert _same_params(src, dst)
    rep = dst.weights_report
    assert rep["loaded"] == len(src.state_dict()) and not rep["missing"] and not rep["unexpected"]


def test_prefixed_and_wrapped_state_dicts_load(tmp_path):
    # A detseg-style checkpoint: {"model": {"backbone.<key>": ...}, ...} plus non-backbone keys.
    src = build_backbone("simple")
    state = {f"backbone.{k}": v for k, v in src.state_dict().items()}
    state["head.weight"] = torch.zeros(3)
    path = tmp_path / "ckpt.pt"
    torch.save({"model": state, "epoch": 3}, path)
    dst = build_backbone("simple", weights=str(path))
    assert _same_params(src, dst)
    assert dst.weights_report["unexpected"] == ["head.weight"]


def test_torchvision_checkpoint_loads_and_reports_fc(tmp_path):
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.resnet18()
    path = tmp_path / "resnet18.pth"
    torch.save(net.state_dict(), path)
    bb = build_backbone("resnet18", weights=str(path))
    torch.testing.assert_close(bb.conv1.weight, net.conv1.weight)
    rep = bb.weights_report
    assert sorted(rep["unexpected"]) == ["fc.bias", "fc.weight"] and not rep["missing"]


def test_partial_match_warns(tmp_path):
    src = build_backbone("simple").state_dict()
    path = tmp_path / "half.pt"
    torch.save({k: v for k, v in src.items() if k.startswith("stages.c1")}, path)
    with pytest.warns(UserWarning, match="missing"):
        build_backbone("simple", weights=str(path))


def test_bad_weights_give_clear_errors(tmp_path):
    missing = tmp_path / "nope.pt"
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        build_backbone("simple", weights=str(missing))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="garbage.pt"):
        build_backbone("simple", weights=str(garbage))
    other = tmp_path / "other.pt"
    torch.save({"foo.weight": torch.zeros(2)}, other)
    with pytest.raises(ValueError, match="no tensor matches"):
        load_weights(build_backbone("simple"), str(other))
    # An enum-looking name that torchvision does not know: an error, never a download.
    with pytest.raises(ValueError, match="torchvision weights enum"):
        build_backbone("resnet18", weights="NoSuch_Weights.IMAGENET1K_V1")


def test_stages_per_family():
    """The units --freeze-backbone counts: ResNet stem + layer1..4, staged c1..c5, VGG blocks, FPN body."""
    from detseg.models.backbones import backbone_stages
    from detseg.models.detection.builders import truncate_backbone
    from detseg.models.detection.fpn import FPNBackbone
    from detseg.models.segmentation.fcn_skips import VGG16Backbone
    from detseg.models.segmentation.segnet import SegNetEncoder

    assert [n for n, _ in backbone_stages(build_backbone("resnet18"))] == ["stem", "layer1", "layer2",
                                                                           "layer3", "layer4"]
    assert [n for n, _ in backbone_stages(build_backbone("simple"))] == ["c1", "c2", "c3", "c4", "c5"]
    assert [n for n, _ in backbone_stages(FPNBackbone(build_backbone("simple"), out_channels=8))][-1] == "c5"
    assert len(backbone_stages(VGG16Backbone())) == 5
    assert len(backbone_stages(SegNetEncoder((1, 1, 1), [8, 8, 8]))) == 3
    # stages a truncation dropped do not count
    assert [n for n, _ in backbone_stages(truncate_backbone(build_backbone("resnet18"), "c4"))] == \
        ["stem", "layer1", "layer2", "layer3"]
    with pytest.raises(ValueError, match="not a backbone with stages"):
        backbone_stages(torch.nn.Linear(2, 2))
