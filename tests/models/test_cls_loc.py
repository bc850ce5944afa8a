"""Classification + localization: protocol, predictions in original pixels, the multi-task loss
(CE + lambda * L2 | L1 | smooth L1), target selection, rebuilding, and a tiny overfit."""

from functools import partial

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import box_convert

from detseg.models.cls_loc import SMOOTH_L1_BETA, build_cls_loc, regression_loss
from detseg.models.transform import preprocess
from detseg.models.zoo import build_model

CLASSES = ["circle", "square", "triangle"]


@pytest.fixture
def tiny(tiny_model):
    """``tiny(**kw)``: a small cls_loc model, the same weights on every call."""
    return partial(tiny_model, "cls_loc", CLASSES, hidden=32)


@pytest.fixture
def batch(images):
    tgs = [{"boxes": torch.tensor([[10.0, 20.0, 50.0, 90.0]]), "labels": torch.tensor([2])},
           {"boxes": torch.tensor([[0.0, 0.0, 32.0, 16.0]]), "labels": torch.tensor([3])}]
    return images, tgs


def raw_outputs(m, ims):
    b = preprocess(ims, m.img_size, keep_aspect=False, stride=32)
    return m.head(m.backbone(b.tensor)[m.feature])


def test_modes_and_prediction_format(tiny, batch):
    m = tiny().train()
    ims, tgs = batch
    out = m(ims, tgs)
    assert set(out.losses) == {"loss_cls", "loss_box"} and out.predictions is None
    assert len(m(ims, tgs, with_predictions=True).predictions) == 2
    m.eval()
    out = m(ims)
    assert out.losses == {}
    for im, p in zip(ims, out.predictions):
        h, w = im.shape[1:]
        assert p["class"].dtype == torch.int64 and p["class"].ndim == 0 and 1 <= p["class"] <= 3
        assert p["box"].shape == (4,) and p["boxes"].shape == (1, 4)
        assert p["scores"].shape == (1,) and p["labels"].tolist() == [int(p["class"])]
        x1, y1, x2, y2 = p["box"].tolist()
        assert 0 <= x1 <= x2 <= w and 0 <= y1 <= y2 <= h
    assert set(m(ims, tgs).losses) == {"loss_cls", "loss_box"}


def test_boxes_map_back_to_original_pixels_per_axis(tiny, batch):
    m = tiny().eval()
    ims, _ = batch
    _, boxes = raw_outputs(m, ims)
    p = m(ims).predictions[0]
    norm = box_convert(boxes[0][None], "cxcywh", "xyxy").clamp(0, 1)[0]
    torch.testing.assert_close(p["box"], norm * torch.tensor([80.0, 100.0, 80.0, 100.0]))


@pytest.mark.parametrize("kind", ["smooth_l1", "l1", "l2"])
def test_loss_is_ce_plus_lambda_regression(kind, tiny, batch):
    ims, tgs = batch
    m = tiny(loss=kind, lam=1.0).eval()
    logits, boxes = raw_outputs(m, ims)
    goal = torch.stack([
        box_convert(t["boxes"] / torch.tensor([w, h, w, h]), "xyxy", "cxcywh")[0]
        for t, (h, w) in zip(tgs, [(100, 80), (64, 64)])])
    ref = {"l2": lambda d: d**2, "l1": lambda d: d.abs(),
           "smooth_l1": lambda d: torch.where(d.abs() < SMOOTH_L1_BETA, 0.5 * d**2 / SMOOTH_L1_BETA,
                                              d.abs() - 0.5 * SMOOTH_L1_BETA)}[kind]
    losses = m(ims, tgs).losses
    torch.testing.assert_close(losses["loss_box"], ref(boxes - goal).sum(1).mean())
    torch.testing.assert_close(losses["loss_cls"], F.cross_entropy(logits, torch.tensor([1, 2])))
    m.lam = 2.5
    torch.testing.assert_close(m(ims, tgs).losses["loss_box"], 2.5 * losses["loss_box"])
    assert m(ims, tgs).losses["loss_cls"] == losses["loss_cls"]


def test_regression_loss_names():
    p, t = torch.rand(3, 4), torch.rand(3, 4)
    torch.testing.assert_close(regression_loss(p, t, "l2"), F.mse_loss(p, t) * 4)
    with pytest.raises(ValueError, match="smooth_l1"):
        regression_loss(p, t, "huber")
    with pytest.raises(ValueError, match="loss must be one of"):
        build_cls_loc(CLASSES, loss="l3")


def test_largest_box_is_the_target_and_empty_targets_add_nothing(tiny, batch):
    m = tiny().eval()
    ims, tgs = batch
    several = dict(tgs[0])
    several["boxes"] = torch.tensor([[0.0, 0.0, 5.0, 5.0], *tgs[0]["boxes"]])
    several["labels"] = torch.tensor([1, 2])
    ref = m(ims[:1], tgs[:1]).losses
    got = m(ims[:1], [several]).losses
    for k in ref:
        torch.testing.assert_close(got[k], ref[k])
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    got = m(ims, [tgs[0], empty]).losses
    for k in ref:
        torch.testing.assert_close(got[k], ref[k])
    with pytest.raises(ValueError, match="no target in this batch has a box"):
        m(ims, [empty, empty])


def test_bad_targets_are_named(tiny, batch):
    m = tiny().eval()
    ims, tgs = batch
    with pytest.raises(ValueError, match=r"targets\[1\]\['labels'\]: 0 is outside 1..3"):
        m(ims, [tgs[0], {"boxes": tgs[1]["boxes"], "labels": torch.tensor([0])}])
    with pytest.raises(ValueError, match=r"targets\[0\]: no 'boxes'"):
        m(ims, [{"labels": torch.tensor([1])}, tgs[1]])


def test_gradients_reach_the_first_layer(tiny, batch):
    m = tiny().train()
    ims, tgs = batch
    m(ims, tgs).loss.backward()
    assert m.backbone.stages["c1"][0].weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in m.parameters())  # DDP needs every parameter used


def test_rebuild_from_builder_args_gives_identical_outputs(tiny, batch):
    m = tiny(loss="l1", lam=0.5).eval()
    copy = build_model(m.builder_name, **m.builder_args).eval()
    copy.load_state_dict(m.state_dict())
    ims, tgs = batch
    a, b = m(ims, tgs), copy(ims, tgs)
    assert copy.loss_kind == "l1" and copy.lam == 0.5
    for p, q in zip(a.predictions, b.predictions):
        assert torch.equal(p["box"], q["box"]) and torch.equal(p["scores"], q["scores"])
    assert torch.equal(a.loss, b.loss)


def test_default_build_runs():
    m = build_cls_loc(CLASSES, img_size=64).eval()
    assert m.task == "cls_loc"
    assert m([torch.rand(3, 30, 50)]).predictions[0]["box"].shape == (4,)


def test_overfits_one_tiny_batch(train_steps):
    torch.manual_seed(0)
    m = build_cls_loc(CLASSES, img_size=32, backbone="simple", hidden=32).train()
    ims, tgs = [], []
    for i in range(6):
        im = torch.rand(3, 32, 32) * 0.2
        x, y = 2 + 3 * i, 4 + 2 * i
        im[:, y:y + 10, x:x + 12] += 0.7
        ims.append(im)
        tgs.append({"boxes": torch.tensor([[x, y, x + 12, y + 10]], dtype=torch.float32),
                    "labels": torch.tensor([1 + i % 3])})
    first, last = train_steps(m, ims, tgs, lr=3e-3, steps=40)
    assert last < 0.5 * first
