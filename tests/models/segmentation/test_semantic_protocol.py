"""The semantic-segmentation model protocol (:class:`detseg.models.segmentation.semantic.SemanticModel`, see
src/detseg/models/base.py), checked once on every semantic zoo model and on each FCN upsampling
kind: train mode gives losses only unless asked; eval mode predicts ``sem_seg`` at each image's
original size (images of different sizes in one batch) and adds the losses when given targets; the
gradient reaches the layer the image meets first and every trainable parameter (DDP needs them
all used); ``build_model(m.builder_name, **m.builder_args)`` rebuilds the same model; a tiny batch
can be overfit. What is particular to one model stays in that model's own test file.
"""

import math
from typing import Any

import pytest
import torch

from detseg.layers import UPSAMPLE_KINDS
from detseg.models.segmentation.semantic import SemanticModel
from detseg.models.zoo import ZOO, build_model, model_options
from detseg.structures import ModelOutput

CLASSES = ["background", "circle", "square"]
SEMANTIC = [name for name, entry in ZOO.items() if entry.task == "semantic"]

# Small widths per zoo model (img_size 32 and the `simple` backbone are added below where not set).
# A semantic zoo model missing here is still checked, with its default widths.
SMALL: dict[str, dict[str, Any]] = {
    "sliding_window_seg": {"patch": 9, "width": 8, "hidden": 16, "padding": "replicate"},
    "fcn_same_res": {"depth": 3, "width": 8},
    "fcn": {"width": 16},
    # 40 px: padded to 64, FCN-32s's 2 x 2 stride-32 scores can still halve the overfit loss. The
    # paper's dropout 0.5 where it still overfits: eval mode must turn it off for the rebuild check.
    "fcn32s": {"img_size": 40, "head_width": 16},
    "fcn16s": {"img_size": 40, "head_width": 16, "dropout": 0.5},
    "fcn8s": {"img_size": 40, "head_width": 16, "dropout": 0.5},
    "fcn4s": {"img_size": 40, "head_width": 16, "dropout": 0.5},
    "segnet": {},  # the `simple` layout is one 8-wide conv per stage
    "deeplab": {"aspp_channels": 16, "atrous_rates": [1, 2, 3], "output_stride": 8},
}


def _small(name: str, **extra: Any) -> dict[str, Any]:
    """Builder options of a small ``name``: ``SMALL``'s, then ``extra``, at 32 px by default, on
    the ``simple`` backbone where the builder takes one and ``extra`` names none."""
    kw = {"img_size": 32, **SMALL.get(name, {}), **extra}
    if "backbone" in model_options(name):
        kw.setdefault("backbone", "simple")
    return kw


CASES: dict[str, tuple[str, dict[str, Any]]] = {name: (name, _small(name)) for name in SEMANTIC}
# Every FCN upsampling kind, on alexnet_small: the only backbone whose pools max_unpool can use.
CASES |= {f"fcn-{kind}": ("fcn", _small("fcn", backbone="alexnet_small", backbone_width=8,
                                        upsample=kind))
          for kind in UPSAMPLE_KINDS}
# The other backbones the model files checked: SegNet's VGG layout, DeepLab's dilated ResNet-18.
CASES |= {"segnet-vgg_small": ("segnet", _small("segnet", backbone="vgg_small", depth=3, width=8)),
          "deeplab-resnet18": ("deeplab", _small("deeplab", backbone="resnet18", output_stride=16,
                                                 aspp_channels=8))}
# Not overfit: ResNet-18 at stride 16 sees 2 x 2 maps of a 32-px image, and 30 steps of it take
# about 4 s against 0.2 s for the `simple` DeepLab case, which overfits the same head.
NOT_OVERFIT = {"deeplab-resnet18"}


@pytest.fixture(params=list(CASES))
def case(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    """``(zoo name, builder options)`` of one small model."""
    return CASES[request.param]


def _build(case: tuple[str, dict[str, Any]], **extra: Any) -> SemanticModel:
    """The case's model, its weights drawn after ``torch.manual_seed(0)``."""
    name, kw = case
    torch.manual_seed(0)
    return build_model(name, CLASSES, **kw, **extra)


def test_every_small_setting_names_a_semantic_zoo_model():
    assert set(SMALL) <= set(SEMANTIC), "SMALL names a model that is not a semantic zoo entry"
    assert NOT_OVERFIT <= set(CASES)


def test_train_mode_gives_losses_only_unless_asked(case, batch):
    ims, tgs = batch
    m = _build(case).train()
    assert isinstance(m, SemanticModel) and m.task == "semantic" and m.num_classes == 3
    out = m(ims, tgs)
    assert isinstance(out, ModelOutput) and out.predictions is None
    assert set(out.losses) == {"loss_sem_seg"} and out.loss.requires_grad
    out = m(ims, tgs, with_predictions=True)
    assert len(out.predictions) == 2 and set(out.losses) == {"loss_sem_seg"}


def test_eval_mode_predicts_at_original_size_with_losses_given_targets(case, batch):
    ims, tgs = batch
    m = _build(case).eval()
    out = m(ims)
    assert out.losses == {} and len(out.predictions) == 2
    for im, p in zip(ims, out.predictions):
        assert set(p) == {"sem_seg", "scores"}  # no sem_seg_logits unless asked
        assert p["sem_seg"].shape == im.shape[1:] and p["sem_seg"].dtype == torch.int64
        assert 0 <= int(p["sem_seg"].min()) and int(p["sem_seg"].max()) < len(CLASSES)
        assert p["scores"].ndim == 0 and 0 < float(p["scores"]) <= 1
    out = m(ims, tgs, with_logits=True)
    assert set(out.losses) == {"loss_sem_seg"} and math.isfinite(out.loss.item())
    for im, p in zip(ims, out.predictions):
        assert p["sem_seg_logits"].shape == (len(CLASSES), *im.shape[1:])
        assert torch.equal(p["sem_seg_logits"].argmax(0), p["sem_seg"])
    if "return_logits" in model_options(case[0]):
        assert "sem_seg_logits" in _build(case, return_logits=True).eval()(ims).predictions[1]


def test_gradient_reaches_the_first_layer_and_every_trainable_parameter(case, batch, first_conv):
    ims, tgs = batch
    m = _build(case).train()
    first = first_conv(m, ims)
    assert first.in_channels == 3  # the layer that sees the (normalised) image
    m(ims, tgs).loss.backward()
    assert first.weight.grad is not None and first.weight.grad.abs().sum() > 0
    unused = [n for n, p in m.named_parameters() if p.requires_grad and p.grad is None]
    assert unused == []


def test_builder_args_rebuild_an_identical_model(case, batch):
    ims, _ = batch
    name, kw = case
    m = _build(case).eval()
    assert m.builder_name == name and m.builder_args == {"classes": CLASSES, **kw}
    torch.manual_seed(123)  # a different draw: only the state dict can make them equal
    copy = build_model(m.builder_name, **m.builder_args).eval()
    copy.load_state_dict(m.state_dict())
    with torch.no_grad():
        a, b = m(ims, with_logits=True), copy(ims, with_logits=True)
    for p, q in zip(a.predictions, b.predictions):
        assert torch.equal(p["sem_seg_logits"], q["sem_seg_logits"])


@pytest.mark.parametrize("case_id", [c for c in CASES if c not in NOT_OVERFIT])
def test_overfits_one_tiny_batch(case_id, shapes_batch, train_steps):
    case = CASES[case_id]
    m = _build(case).train()
    first, last = train_steps(m, *shapes_batch, lr=1e-2, steps=30)
    assert last < 0.5 * first, (case, first, last)
