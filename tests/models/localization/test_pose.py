"""Pose models (DeepPose regression, simple-baselines heatmaps): protocol, invisible joints out of
the loss, heatmap encode -> decode, original-pixel predictions, gradients, rebuilding, overfit."""

from functools import partial

import pytest
import torch

from detseg.data import build_dataset
from detseg.models.localization.pose import from_normalised, to_normalised
from detseg.models.localization.pose_heatmap import decode_heatmaps, encode_heatmaps
from detseg.models.transform import preprocess
from detseg.models.zoo import build_model
from detseg.visualize import draw_prediction

CLASSES = ["person"]
MODELS = [("pose_regression", {}), ("pose_regression", {"cascade_stages": 1}),
          ("pose_heatmap", {})]
IDS = ["regression", "cascade", "heatmap"]


@pytest.fixture
def tiny(tiny_model):
    """``tiny(name, **kw)``: a small pose model on the ``simple`` backbone, seeded."""
    return partial(tiny_model, classes=CLASSES)


def person(h: int, w: int, gen: torch.Generator, k: int = 14) -> dict:
    """A target with ``k`` random joints in the central 80% of an ``h x w`` image, the last two not
    labelled."""
    kps = (torch.rand(1, k, 3, generator=gen) * torch.tensor([0.8 * w, 0.8 * h, 0])
           + torch.tensor([0.1 * w, 0.1 * h, 2]))
    kps[0, -2:, 2] = 0
    return {"keypoints": kps, "boxes": torch.tensor([[0.0, 0, w, h]]), "labels": torch.tensor([1])}


@pytest.fixture
def pose_batch(images, generator):
    return images, [person(*im.shape[1:], generator) for im in images]


@pytest.mark.parametrize("name,kw", MODELS, ids=IDS)
def test_protocol_and_prediction_format(name, kw, tiny, pose_batch):
    m = tiny(name, **kw).train()
    ims, tgs = pose_batch
    out = m(ims, tgs)
    assert out.losses and out.predictions is None
    if kw.get("cascade_stages"):
        assert set(out.losses) == {"loss_joints", "loss_refine1"}
    assert len(m(ims, tgs, with_predictions=True).predictions) == 2
    m.eval()
    assert m(ims).losses == {} and set(m(ims, tgs).losses) == set(out.losses)
    for im, p in zip(ims, m(ims).predictions):
        h, w = im.shape[1:]
        kp = p["keypoints"]
        assert kp.shape == (1, 14, 3) and p["boxes"].shape == (1, 4)
        assert p["scores"].shape == (1,) and p["labels"].tolist() == [1]
        assert (kp[..., 0] >= 0).all() and (kp[..., 0] <= w - 1).all()
        assert (kp[..., 1] >= 0).all() and (kp[..., 1] <= h - 1).all()
        assert (kp[..., 2] > 0).all()  # every joint is drawn
        x1, y1, x2, y2 = p["boxes"][0].tolist()
        assert x1 <= kp[0, :, 0].min() and kp[0, :, 0].max() < x2 <= w and y2 <= h
        drawn = draw_prediction(im, p, "pose", CLASSES)
        assert drawn.shape[0] >= h and drawn.dtype.name == "uint8"


@pytest.mark.parametrize("name,kw", MODELS, ids=IDS)
def test_invisible_joints_do_not_change_the_loss(name, kw, tiny, pose_batch):
    m = tiny(name, **kw).eval()
    ims, tgs = pose_batch
    ref = m(ims, tgs).losses
    moved = [{**t, "keypoints": t["keypoints"].clone()} for t in tgs]
    moved[0]["keypoints"][0, -1, :2] = torch.tensor([1e4, -1e4])
    moved[1]["keypoints"][0, -2, :2] = float("nan")
    for k, v in m(ims, moved).losses.items():
        assert torch.equal(v, ref[k]), k
    moved[0]["keypoints"][0, 0, 0] += 7.0  # a labelled joint does count
    assert not torch.equal(m(ims, moved).loss, m(ims, tgs).loss)


def test_regression_loss_is_l2_over_labelled_joints(tiny, pose_batch):
    m = tiny("pose_regression").eval()
    ims, tgs = pose_batch
    stages = m.stages(preprocess(ims, m.img_size, keep_aspect=False, stride=m.backbone.out_stride))
    total = 0.0
    for uv, im, t in zip(stages[0], ims, tgs):
        size = tuple(im.shape[1:])
        goal = to_normalised(t["keypoints"][0, :, :2], size)
        vis = t["keypoints"][0, :, 2] > 0
        total = total + ((uv - goal) ** 2).sum(1)[vis].sum()
    torch.testing.assert_close(m(ims, tgs).losses["loss_joints"], total / 2)


def test_normalised_coordinates_round_trip():
    xy = torch.tensor([[0.0, 0.0], [79.0, 99.0], [12.3, 45.6]])
    uv = to_normalised(xy, (100, 80))
    assert uv[0].tolist() == pytest.approx([0.5 / 80, 0.5 / 100])
    assert uv[1].tolist() == pytest.approx([79.5 / 80, 99.5 / 100])
    torch.testing.assert_close(from_normalised(uv, (100, 80)), xy)


def test_heatmap_encode_decode_round_trip():
    gen = torch.Generator().manual_seed(0)
    # Heatmap as fine as the image (scale 1): the quarter-pixel rule is within 0.25 px.
    # Joints with both neighbours inside the map (at the border the argmax is not refined).
    xy = 1 + torch.rand(50, 2, generator=gen) * torch.tensor([37.0, 27.0])
    maps, weight = encode_heatmaps(xy, torch.ones(50, dtype=torch.bool), (1.0, 1.0), (30, 40), 2.0)
    assert weight.tolist() == [1.0] * 50 and maps.amax((1, 2)).min() > 0.88
    dec, peak = decode_heatmaps(maps)
    assert (dec - xy).abs().max() <= 0.25 + 1e-5
    assert (peak <= 1).all()
    # At stride 2 (0.5 heatmap px per image px): within 0.25 heatmap px = 0.5 image px.
    xy = 3 + torch.rand(50, 2, generator=gen) * torch.tensor([33.0, 24.0])  # off the border again
    maps, _ = encode_heatmaps(xy, torch.ones(50, dtype=torch.bool), (0.5, 0.5), (15, 20), 1.5)
    dec, _ = decode_heatmaps(maps)
    assert ((dec + 0.5) / 0.5 - 0.5 - xy).abs().max() <= 0.5 + 1e-5


def test_heatmap_weights_drop_unlabelled_and_far_outside_joints():
    xy = torch.tensor([[5.0, 5.0], [5.0, 5.0], [-20.0, 5.0], [10.4, 3.0]])
    labelled = torch.tensor([True, False, True, True])
    maps, weight = encode_heatmaps(xy, labelled, (1.0, 1.0), (8, 12), 2.0)
    assert weight.tolist() == [1.0, 0.0, 0.0, 1.0]
    assert maps[1].abs().max() == 0 and maps[2].abs().max() == 0
    assert maps[0, 5, 5] == 1.0
    dec, _ = decode_heatmaps(maps[[0, 3]])
    torch.testing.assert_close(dec, torch.tensor([[5.0, 5.0], [10.25, 3.0]]))  # argmax 10, +.25


@pytest.mark.parametrize("kw", [{}, {"cascade_stages": 2}], ids=["plain", "cascade"])
def test_regression_maps_back_per_axis(kw, tiny):
    """Non-square images of different sizes: normalised joints scale per axis to each image."""
    m = tiny("pose_regression", **kw).eval()
    gen = torch.Generator().manual_seed(1)
    ims = [torch.rand(3, h, w, generator=gen) for h, w in [(100, 80), (40, 130), (64, 64)]]
    with torch.no_grad():
        # Spread the joints over the image so the test is not about the centre only.
        m.head.out.bias.copy_(torch.linspace(0.1, 0.9, 28))
        final = m.stages(preprocess(ims, m.img_size, keep_aspect=False, stride=32))[-1]
    for uv, im, p in zip(final, ims, m(ims).predictions):
        h, w = im.shape[1:]
        expect = uv * torch.tensor([w, h]) - 0.5
        expect = torch.stack([expect[:, 0].clamp(0, w - 1), expect[:, 1].clamp(0, h - 1)], 1)
        torch.testing.assert_close(p["keypoints"][0, :, :2], expect)
        kp = p["keypoints"][0]
        assert kp[:, 0].max() > 0.8 * w - 1 and kp[:, 1].max() > 0.8 * h - 1


def test_heatmap_predictions_decode_to_original_pixels(tiny):
    """Feeding the target heatmaps as the head's output returns the target joints in pixels."""
    m = tiny("pose_heatmap").eval()
    gen = torch.Generator().manual_seed(3)
    for h, w in [(100, 80), (40, 130)]:
        t = person(h, w, gen)
        t["keypoints"][0, :, 2] = 2
        # img_size 64 at stride 4 -> 16 x 16 heatmaps; with exact targets the error is at most
        # a quarter heatmap pixel per axis.
        m.head.forward = lambda x, t=t, h=h, w=w: m.target_heatmaps(
            [t], [(16 / w, 16 / h)], (16, 16))[0]
        try:
            kp = m([torch.rand(3, h, w)]).predictions[0]["keypoints"][0]
        finally:
            del m.head.forward
        err = (kp[:, :2] - t["keypoints"][0, :, :2]).abs()
        assert (err <= 0.25 * torch.tensor([w, h]) / 16 + 1e-4).all()


@pytest.mark.parametrize("name,kw", MODELS, ids=IDS)
def test_gradient_reaches_the_first_layer(name, kw, tiny, pose_batch, first_conv):
    m = tiny(name, **kw).train()
    ims, tgs = pose_batch
    conv = first_conv(m, ims)
    m(ims, tgs).loss.backward()
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0
    if kw.get("cascade_stages"):
        assert m.refine[0].mlp[-1].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name,kw", MODELS, ids=IDS)
def test_zoo_round_trip(name, kw, pose_batch):
    torch.manual_seed(0)
    m = build_model(name, ["circle", "person"], img_size=64, backbone="simple", **kw).eval()
    assert m.task == "pose" and m.builder_args["classes"] == ["circle", "person"]
    again = build_model(m.builder_name, **m.builder_args).eval()
    again.load_state_dict(m.state_dict())
    ims, _ = pose_batch
    a, b = m(ims).predictions[0], again(ims).predictions[0]
    assert a["labels"].tolist() == [2]  # the "person" class
    for k in a:
        torch.testing.assert_close(a[k], b[k])


def test_wrong_joint_count_is_a_clear_error(tiny, pose_batch):
    ims, tgs = pose_batch
    m = tiny("pose_heatmap", num_keypoints=17)
    with pytest.raises(ValueError, match="num_keypoints=14"):
        m(ims, tgs)
    with pytest.raises(ValueError, match=r"targets\[0\].*keypoints"):
        m(ims, [{"boxes": torch.zeros(1, 4)}, tgs[1]])


def test_image_without_person_adds_nothing(tiny, pose_batch):
    m = tiny("pose_regression").eval()
    ims, tgs = pose_batch
    empty = {"keypoints": torch.zeros(0, 14, 3)}
    one = m(ims[:1], tgs[:1]).loss
    torch.testing.assert_close(m(ims, [tgs[0], empty]).loss, one / 2)


@pytest.mark.parametrize("name", ["pose_regression", "pose_heatmap"])
def test_tiny_overfit_on_stick_figures(name, train_steps):
    ds = build_dataset("shapes:size=64,mode=person", "train", task="pose")
    ims, tgs = zip(*[ds[i] for i in range(4)])
    torch.manual_seed(0)
    m = build_model(name, ds.classes, img_size=64, backbone_width=16).train()
    first, last = train_steps(m, list(ims), list(tgs), lr=3e-3, steps=30)
    assert last < 0.5 * first, (first, last)
