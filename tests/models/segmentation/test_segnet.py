"""SegNet: the decoder's max-unpooling with the matching encoder pool's indices (values back at
the argmax positions, zeros elsewhere), the layouts (VGG-16's 13 convs), options, class weights,
weights by torchvision names. The model protocol (both modes, gradients, rebuild, overfit) is in
test_semantic_protocol.py."""

import pytest
import torch
from torch import nn

from detseg.models.segmentation.segnet import LAYOUTS, build_segnet

CLASSES = ["background", "circle", "square"]


def tiny(**kw):
    """A small SegNet (``simple`` layout), the same weights on every call."""
    torch.manual_seed(0)
    return build_segnet(CLASSES, **{"img_size": 64, "backbone": "simple", **kw})


def _record_pools_and_unpools(net):
    """Hooks recording each encoder pool's ``(input, output, indices)`` and each unpooling's
    ``(input, indices, output)``, in call order."""
    pools, unpools = [], []
    for layer in net.encoder.features:
        if isinstance(layer, nn.MaxPool2d):
            layer.register_forward_hook(lambda mod, args, out: pools.append((args[0], *out)))
    net.decoder.unpool.register_forward_hook(
        lambda mod, args, out: unpools.append((args[0], args[1], out)))
    return pools, unpools


@pytest.mark.parametrize("backbone", ["simple", "vgg_small"])
def test_decoder_unpools_with_the_matching_encoder_indices(backbone):
    m = tiny(backbone=backbone, depth=3).eval()
    pools, unpools = _record_pools_and_unpools(m.network)
    with torch.no_grad():
        m.network(torch.randn(2, 3, 32, 48))
    assert len(pools) == len(unpools) == 3
    # The decoder's first unpooling uses the deepest pool's indices, its last the first pool's.
    for (pool_in, pool_out, pool_idx), (up_in, up_idx, up_out) in zip(reversed(pools), unpools):
        assert up_idx is pool_idx and up_out.shape == pool_in.shape
        # The indices are the argmax positions of each 2x2 window of the encoder map.
        flat_in = pool_in.flatten(2)
        torch.testing.assert_close(flat_in.gather(2, pool_idx.flatten(2)), pool_out.flatten(2))
        # Unpooling puts the decoder's values exactly at those positions and zeros elsewhere.
        at_argmax = torch.zeros_like(flat_in, dtype=torch.bool)
        at_argmax.scatter_(2, pool_idx.flatten(2), True)
        flat_out = up_out.flatten(2)
        assert torch.equal(flat_out.gather(2, pool_idx.flatten(2)), up_in.flatten(2))
        assert not flat_out[~at_argmax].any()
        assert torch.equal(flat_out != 0, at_argmax & (flat_out != 0))
        assert (flat_out != 0).sum() == (up_in != 0).sum()
    # The first unpooling gets the encoder's bottom map itself: it restores the encoder's maxima
    # where they were (SegNet's "memory"), zeros elsewhere.
    pool_in, pool_out, _ = pools[-1]
    up_in, _, up_out = unpools[0]
    assert up_in is pool_out or torch.equal(up_in, pool_out)
    nz = up_out != 0
    assert torch.equal(up_out[nz], pool_in[nz])


def test_the_decoder_sees_only_the_bottom_map_and_the_indices():
    """No encoder feature map crosses to the decoder (unlike U-Net): the output is a function of
    the bottom map and the pooling indices alone, and the indices matter."""
    net = tiny(depth=2).eval().network
    x1, x2 = torch.randn(1, 3, 16, 16), torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        bottom, idx, sizes = net.encoder(x1)
        torch.testing.assert_close(net.classifier(net.decoder(bottom, idx, sizes)), net(x1))
        other_idx = net.encoder(x2)[1]
        assert not torch.allclose(net.decoder(bottom, other_idx, sizes),
                                  net.decoder(bottom, idx, sizes))


@pytest.mark.parametrize("depth", [1, 3, 5])
def test_depth_sets_the_stride(depth):
    m = tiny(depth=depth).eval()
    assert m.network.stride == 2 ** depth
    assert sum(isinstance(x, nn.MaxPool2d) for x in m.backbone.features) == depth
    assert m([torch.rand(3, 50, 37)]).predictions[0]["sem_seg"].shape == (50, 37)


def test_vgg16_layout_is_segnets_13_plus_13_convs_and_loads_torchvision_names(tmp_path):
    m = build_segnet(CLASSES, backbone="vgg16", width=8)  # narrow, same layout
    convs = [x for x in m.backbone.modules() if isinstance(x, nn.Conv2d)]
    dec = [x for stage in reversed(m.network.decoder.stages) for x in stage
           if isinstance(x, nn.Conv2d)]  # in the order the decoder runs them
    assert len(convs) == 13 and len(dec) == 13
    assert [c.out_channels for c in convs] == [8, 8, 16, 16, 32, 32, 32, 64, 64, 64, 64, 64, 64]
    assert [c.out_channels for c in dec] == [64, 64, 64, 64, 64, 32, 32, 32, 16, 16, 8, 8, 8]
    assert LAYOUTS["vgg16"][1] == 64  # the paper's width by default
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(3)
    vgg_bn = make_layers(cfgs["D"], batch_norm=True)  # vgg16_bn().features, no classifier
    full = build_segnet(CLASSES, backbone="vgg16", depth=5)
    own = {k: v.shape for k, v in full.backbone.state_dict().items()}
    assert own == {f"features.{k}": v.shape for k, v in vgg_bn.state_dict().items()}
    path = tmp_path / "vgg16_bn.pt"
    torch.save({f"features.{k}": v for k, v in vgg_bn.state_dict().items()}, path)
    loaded = build_segnet(CLASSES, backbone="vgg16", weights=str(path))
    assert torch.equal(loaded.backbone.features[0].weight, vgg_bn[0].weight)
    assert loaded.backbone.weights_report["missing"] == []


def test_options_are_checked():
    with pytest.raises(ValueError, match="unknown backbone"):
        build_segnet(CLASSES, backbone="resnet18")
    with pytest.raises(ValueError, match="depth"):
        build_segnet(CLASSES, depth=6)
    with pytest.raises(ValueError, match="width"):
        build_segnet(CLASSES, width=0)
    with pytest.raises(ValueError, match="loss_reduction"):
        tiny(loss_reduction="max")
    with pytest.raises(ValueError, match="class_weights"):
        tiny(class_weights=[1.0])
    m = tiny(class_weights=[0.5, 2.0, 3.0])
    assert m.criterion.weight.tolist() == [0.5, 2.0, 3.0]


def test_class_weights_change_the_loss(batch):
    ims, tgs = batch
    plain = tiny().eval()(ims, tgs).loss
    weighted = tiny(class_weights=[0.1, 1.0, 10.0]).eval()(ims, tgs).loss
    assert not torch.isclose(plain, weighted)
