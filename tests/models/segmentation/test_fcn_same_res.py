"""Same-resolution FCN: every layer keeps H x W (zero padding, no stride), so the model pads its
input to no stride; the receptive field is 2 * depth + 1 px; bad options are named. The model
protocol (both modes, gradients, rebuild, overfit) is in test_semantic_protocol.py."""

import pytest
import torch

from detseg.models.segmentation.fcn_same_res import SameResFCN, build_fcn_same_res

CLASSES = ["background", "circle", "square"]
SMALL = {"img_size": 32, "depth": 3, "width": 8}


def test_every_layer_keeps_the_input_size():
    net = SameResFCN(4, depth=3, width=8).eval()
    x = torch.rand(2, 3, 13, 22)
    for layer in net.features:
        x = layer(x)
        assert tuple(x.shape[-2:]) == (13, 22)
    assert net.classifier(x).shape == (2, 4, 13, 22)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 4 and all(c.stride == (1, 1) for c in convs)
    assert build_fcn_same_res(CLASSES, **SMALL).network.stride == 1  # no padding to a stride


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


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="fcn_same_res: depth"):
        build_fcn_same_res(CLASSES, depth=0)
    with pytest.raises(ValueError, match="loss_reduction"):
        build_fcn_same_res(CLASSES, loss_reduction="max")
