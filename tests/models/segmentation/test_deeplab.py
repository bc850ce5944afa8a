"""DeepLab: dilation keeps the resolution (the output stride), ASPP, the builder's options, the
ResNet-50 build, weights loading into the dilated backbone, and the optional dense CRF. The model
protocol (both modes, gradients, rebuild, overfit; `simple` at output stride 8 and ResNet-18 at 16)
is in test_semantic_protocol.py."""

import inspect
import json
import warnings

import pytest
import torch
from torchvision.models import resnet18

from detseg.models.segmentation import deeplab as deeplab_module
from detseg.models.backbones import build_backbone
from detseg.models.segmentation.deeplab import ASPP, build_deeplab, dilate_backbone
from detseg.postprocess import crf as crf_module

CLASSES = ["background", "circle", "square"]


@pytest.fixture
def tiny():
    """``tiny(**kw)``: a small DeepLab (``simple`` backbone, 64 px), the same weights every call."""

    def build(**kw):
        torch.manual_seed(0)
        kw = {"img_size": 64, "backbone": "simple", "aspp_channels": 16, "atrous_rates": [1, 2, 3],
              **kw}
        return build_deeplab(CLASSES, **kw)

    return build


@pytest.mark.parametrize("name", ["resnet18", "simple"])
@pytest.mark.parametrize("output_stride", [8, 16])
def test_dilation_gives_the_output_stride_and_keeps_parameter_shapes(name, output_stride):
    plain = build_backbone(name)
    shapes = {k: v.shape for k, v in plain.state_dict().items()}
    bb = dilate_backbone(plain, output_stride).eval()
    assert {k: v.shape for k, v in bb.state_dict().items()} == shapes
    assert bb.strides["c5"] == output_stride and bb.strides["c4"] == min(16, output_stride)
    with torch.no_grad():
        feats = bb(torch.rand(1, 3, 64, 96))
    for k, s in bb.strides.items():
        assert feats[k].shape[-2:] == (64 // s, 96 // s), k


def test_bad_options_raise_clear_errors():
    with pytest.raises(ValueError, match="output_stride must be 8 or 16"):
        build_deeplab(CLASSES, output_stride=32)
    with pytest.raises(ValueError, match="unknown backbone 'vgg'"):
        build_deeplab(CLASSES, backbone="vgg")
    with pytest.raises(ValueError, match="pooling"):
        dilate_backbone(build_backbone("alexnet_small"), 16)


def test_aspp_trains_at_batch_size_one():
    aspp = ASPP(8, [1, 2], out_ch=4).train()
    assert aspp(torch.rand(1, 8, 5, 6)).shape == (1, 4, 5, 6)


def test_builder_defaults_are_json_primitives():
    defaults = {k: p.default for k, p in inspect.signature(build_deeplab).parameters.items()
                if k != "classes"}
    json.dumps(defaults)
    assert defaults["backbone"] == "resnet18" and defaults["crf"] is False


def test_resnet50_backbone_builds_and_runs():
    torch.manual_seed(0)
    m = build_deeplab(CLASSES, img_size=32, backbone="resnet50", aspp_channels=8).eval()
    assert m.backbone.channels["c5"] == 2048 and m.network.stride == 16
    assert m([torch.rand(3, 30, 40)]).predictions[0]["sem_seg"].shape == (30, 40)


def test_weights_load_into_the_dilated_backbone(tmp_path):
    torch.manual_seed(1)
    ref = resnet18(weights=None)
    path = tmp_path / "r18.pt"
    torch.save(ref.state_dict(), path)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*weights: loaded")  # every tensor must load
        m = build_deeplab(CLASSES, weights=str(path), aspp_channels=8)
    assert torch.equal(m.backbone.layer4[0].conv1.weight, ref.layer4[0].conv1.weight)
    assert m.backbone.weights_report["missing"] == []


# -- dense CRF ------------------------------------------------------------------------------------
def test_crf_predictions_keep_the_keys_and_agree_with_logits(tiny, batch):
    pytest.importorskip("pydensecrf.densecrf")
    ims, tgs = batch
    m = tiny(crf=True, crf_iterations=3).eval()
    out = m(ims, tgs)
    assert "loss_sem_seg" in out.losses
    for im, p in zip(ims, out.predictions):
        assert set(p) == {"sem_seg", "scores"}
        assert p["sem_seg"].shape == im.shape[1:] and p["sem_seg"].dtype == torch.int64
    p = m(ims, with_logits=True).predictions[0]
    assert torch.equal(p["sem_seg_logits"].argmax(0), p["sem_seg"])
    torch.testing.assert_close(p["sem_seg_logits"].exp().sum(0), torch.ones(100, 80), atol=1e-3,
                               rtol=0)
    m.crf = False  # switchable after building: the same weights with and without the CRF
    assert set(m(ims).predictions[0]) == {"sem_seg", "scores"}


def test_crf_is_not_run_in_training_without_predictions(tiny, batch, monkeypatch):
    calls = []
    monkeypatch.setattr(deeplab_module.DeepLab, "_refine", lambda *a: calls.append(a))
    m = tiny(crf=True).train()
    m(*batch).loss.backward()
    assert calls == []


def test_crf_without_pydensecrf2_says_how_to_install(tiny, monkeypatch):
    def missing():
        raise ImportError(f"{crf_module.CRF_INSTALL_HINT} (No module named 'pydensecrf')")

    monkeypatch.setattr(crf_module, "_densecrf_module", missing)
    with pytest.raises(ImportError, match=r"pip install detseg\[crf\]"):
        tiny(crf=True).eval()([torch.rand(3, 32, 32)])
