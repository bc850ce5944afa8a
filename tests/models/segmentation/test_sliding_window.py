"""Sliding-window segmenter: the convolutionalized classifier equals the window-by-window one
(the lecture's point), dense window inference labels every pixel, training always takes the FCN
path, and both inference modes give the same losses and labels. The model protocol (both modes,
gradients, rebuild, overfit) is in test_semantic_protocol.py; timing lives in
benchmarks/sliding_window.py."""

import math

import pytest
import torch
import torch.nn.functional as F

from detseg.models.segmentation.sliding_window import (PatchClassifier, SlidingWindowNet,
                                          build_sliding_window_seg, convolutionalize,
                                          pad_for_windows, window_logits)

CLASSES = ["background", "circle", "square"]
SMALL = {"img_size": 32, "patch": 9, "width": 8, "hidden": 16}


def _randomise_bn(module: torch.nn.Module, gen: torch.Generator) -> None:
    """Non-trivial running statistics, so eval-mode batch norm is a real affine map."""
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)


@pytest.mark.parametrize("padding", ["zeros", "reflect", "replicate"])
def test_convolutionalized_equals_window_by_window(padding):
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    clf = PatchClassifier(5)  # the zoo model's defaults: patch 17, width 32, hidden 64
    _randomise_bn(clf, gen)
    clf.eval()
    image = torch.randn(1, 3, 24, 20, generator=gen)
    with torch.no_grad():
        fcn = convolutionalize(clf, padding)(image)
    windows = window_logits(clf, image, padding, chunk=50)  # chunks of 2 rows: 12 chunks
    assert fcn.shape == windows.shape == (1, 5, 24, 20)
    assert (fcn - windows).abs().max() < 1e-5
    assert torch.equal(fcn.argmax(1), windows.argmax(1))


def test_window_inference_labels_every_pixel_with_its_own_window():
    gen = torch.Generator().manual_seed(1)
    torch.manual_seed(1)
    clf = PatchClassifier(4, patch=7, width=8, hidden=8).eval()
    images = torch.randn(2, 3, 11, 9, generator=gen)
    out = window_logits(clf, images, chunk=7)  # less than a row: one row per chunk
    assert out.shape == (2, 4, 11, 9) and torch.isfinite(out).all()
    labels = out.argmax(1)
    assert labels.shape == (2, 11, 9) and labels.min() >= 0 and labels.max() < 4
    # Each pixel's scores are the classifier's on the window centred there (zero-padded border).
    padded = F.pad(images, (3, 3, 3, 3))
    for b, y, x in [(0, 0, 0), (0, 10, 8), (1, 5, 0), (1, 10, 4), (0, 3, 6)]:
        expected = clf(padded[b:b + 1, :, y:y + 7, x:x + 7])[0]
        torch.testing.assert_close(out[b, :, y, x], expected, atol=1e-6, rtol=1e-5)


def test_convolutionalized_network_shares_the_classifier_parameters():
    torch.manual_seed(0)
    clf = PatchClassifier(3, patch=5, width=4, hidden=4)
    fcn = convolutionalize(clf)
    assert list(fcn.parameters()) == list(clf.parameters())
    fcn(torch.randn(1, 3, 8, 8)).sum().backward()
    assert clf.fc1.weight.grad is not None and clf.fc1.weight.grad.abs().sum() > 0
    first = clf.features[0].weight
    assert first.grad is not None and first.grad.abs().sum() > 0


def test_patch_classifier_layers_and_bad_inputs():
    clf = PatchClassifier(3, patch=17, width=8)
    convs = [m for m in clf.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 7 and all(c.padding == (0, 0) and c.stride == (1, 1) for c in convs)
    assert clf(torch.rand(2, 3, 17, 17)).shape == (2, 3)
    assert PatchClassifier(2, patch=3)(torch.rand(1, 3, 3, 3)).shape == (1, 2)
    with pytest.raises(ValueError, match=r"Tensor\[N, 3, 17, 17\]"):
        clf(torch.rand(2, 3, 16, 16))
    for bad in (4, 1, 16):
        with pytest.raises(ValueError, match="odd int >= 3"):
            PatchClassifier(3, patch=bad)
    with pytest.raises(ValueError, match="patch must be an odd"):
        build_sliding_window_seg(CLASSES, patch=8)
    with pytest.raises(ValueError, match="mode must be one of"):
        build_sliding_window_seg(CLASSES, mode="slow")
    with pytest.raises(ValueError, match="padding must be one of"):
        build_sliding_window_seg(CLASSES, padding="circular")
    with pytest.raises(ValueError, match="reflect"):
        pad_for_windows(torch.rand(1, 3, 4, 30), 9, "reflect")


def _tiny(**kw):
    torch.manual_seed(0)
    return build_sliding_window_seg(CLASSES, **{**SMALL, **kw})


def test_training_runs_the_fcn_path_in_either_mode(batch):
    ims, tgs = batch
    fcn = _tiny(mode="fcn").train()(ims, tgs)
    m = _tiny(mode="window").train()
    out = m(ims, tgs)
    assert out.predictions is None and set(out.losses) == {"loss_sem_seg"}
    assert out.loss.requires_grad
    torch.testing.assert_close(out.loss, fcn.loss)  # the same weights, the same (FCN) path
    assert len(m(ims, tgs, with_predictions=True).predictions) == 2


def test_eval_gives_the_same_losses_logits_and_labels_in_both_modes(batch):
    ims, tgs = batch
    m = _tiny().eval()
    assert m.mode == "fcn" and m.network.stride == 1
    fcn = m(ims, tgs, with_logits=True)
    m.mode = "window"
    win = m(ims, tgs, with_logits=True)
    assert math.isfinite(fcn.loss.item())
    torch.testing.assert_close(fcn.loss, win.loss, atol=1e-5, rtol=1e-5)
    for im, p, q in zip(ims, fcn.predictions, win.predictions):
        assert q["sem_seg"].shape == im.shape[1:] and q["sem_seg"].dtype == torch.int64
        assert 0 < float(q["scores"]) <= 1
        assert (p["sem_seg_logits"] - q["sem_seg_logits"]).abs().max() < 1e-5
        assert torch.equal(p["sem_seg"], q["sem_seg"])


def test_network_modes():
    net = SlidingWindowNet(3, patch=5, width=4, hidden=4, mode="window").eval()
    assert net(torch.rand(1, 3, 6, 7)).shape == (1, 3, 6, 7)
    with pytest.raises(ValueError, match="mode must be one of"):
        net.mode = "dense"
