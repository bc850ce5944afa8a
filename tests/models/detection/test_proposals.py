"""Proposal generators (detseg.models.detection.proposals): inside the image, deduplicated, cached, read
from files; selective search on very wide and very tall images (opencv_contrib#2102)."""

import json

import numpy as np
import pytest
import torch

from detseg.models.detection.proposals import (
    PrecomputedProposals,
    SelectiveSearchProposals,
    SlidingWindowProposals,
    finalize_boxes,
    image_hash,
    load_proposals,
    pad_to_aspect,
    save_proposals,
)

cv2 = pytest.importorskip("cv2")
cv2.setNumThreads(1)
if not hasattr(cv2, "ximgproc"):
    pytest.skip("opencv-contrib (cv2.ximgproc) is not installed", allow_module_level=True)


def _blocks(h: int, w: int, seed: int = 0) -> torch.Tensor:
    """A noisy image with two flat rectangles: Tensor[3, H, W] in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    img = 0.3 + 0.05 * torch.rand(3, h, w, generator=g)
    img[:, h // 4: h // 2, w // 5: w // 2] = torch.tensor([0.9, 0.1, 0.1])[:, None, None]
    img[:, h // 2: 3 * h // 4, w // 2: 4 * w // 5] = torch.tensor([0.1, 0.2, 0.9])[:, None, None]
    return img


def _assert_valid(boxes: torch.Tensor, h: int, w: int) -> None:
    assert boxes.dtype == torch.float32 and boxes.dim() == 2 and boxes.shape[1] == 4 and len(boxes) > 0
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
    assert (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    assert len(torch.unique(boxes, dim=0)) == len(boxes)


def test_finalize_clips_drops_thin_and_duplicates_in_order():
    b = torch.tensor([[-5.0, -5.0, 5.0, 5.0], [0.0, 0.0, 5.0, 5.0], [3.0, 3.0, 3.5, 8.0], [2.0, 2.0, 20.0, 9.0]])
    assert finalize_boxes(b, 8, 10).tolist() == [[0.0, 0.0, 5.0, 5.0], [2.0, 2.0, 10.0, 8.0]]


@pytest.mark.parametrize("hw", [(48, 64), (20, 200)])
def test_sliding_windows_cover_the_image(hw):
    h, w = hw
    gen = SlidingWindowProposals(scales=(0.25, 0.5, 1.0), aspect_ratios=(0.5, 1.0, 2.0), stride_fraction=0.5)
    (boxes,), losses = gen([torch.rand(3, h, w)])
    assert losses == {}
    _assert_valid(boxes, h, w)
    # The grid reaches the right and bottom border; the largest scale comes first.
    assert boxes[:, 2].max() == w and boxes[:, 3].max() == h
    side = min(h, w)
    assert (boxes[0, 2] - boxes[0, 0]) * (boxes[0, 3] - boxes[0, 1]) >= (0.5 * side) ** 2


def test_sliding_windows_count_is_hand_computed():
    # 40x40 image, one scale 0.5 (20 px square), stride 10: 3 x 3 positions.
    gen = SlidingWindowProposals(scales=(0.5,), aspect_ratios=(1.0,), stride_fraction=0.5)
    (boxes,), _ = gen([torch.rand(3, 40, 40)])
    assert boxes.tolist()[:2] == [[0.0, 0.0, 20.0, 20.0], [10.0, 0.0, 30.0, 20.0]] and len(boxes) == 9


@pytest.mark.parametrize("hw", [(60, 80), (40, 400), (400, 40)])
def test_selective_search_boxes_inside_image_including_extreme_aspects(hw):
    h, w = hw
    gen = SelectiveSearchProposals(mode="fast", max_proposals=500)
    (boxes,), losses = gen([_blocks(h, w)])
    assert losses == {}
    _assert_valid(boxes, h, w)
    assert len(boxes) <= 500


def test_selective_search_shrinks_large_images_and_maps_back():
    h, w = 90, 120
    gen = SelectiveSearchProposals(max_side=60)
    boxes = gen.propose(_blocks(h, w))
    _assert_valid(boxes, h, w)
    assert boxes[:, 2].max() > 60  # boxes are in the original pixel frame


def test_selective_search_is_reproducible():
    img = _blocks(50, 70)
    a = SelectiveSearchProposals(max_proposals=30).propose(img)
    b = SelectiveSearchProposals(max_proposals=30).propose(img)
    assert torch.equal(a, b)


def test_pad_to_aspect():
    assert pad_to_aspect(np.zeros((10, 100, 3)), 2.0).shape == (50, 100, 3)
    assert pad_to_aspect(np.zeros((100, 10, 3)), 2.0).shape == (100, 50, 3)
    assert pad_to_aspect(np.zeros((30, 50, 3)), 2.0).shape == (30, 50, 3)


def test_selective_search_cache_hit_skips_the_search(tmp_path):
    img = _blocks(40, 56)
    gen = SelectiveSearchProposals(cache_dir=tmp_path)
    first = gen.propose(img)
    assert gen.computed == 1 and len(list(tmp_path.glob("*.npy"))) == 1
    again = SelectiveSearchProposals(cache_dir=tmp_path)
    again.search = None  # would fail if called: the cached boxes must be served
    assert torch.equal(again.propose(img), first) and again.computed == 0
    other = SelectiveSearchProposals(mode="quality", cache_dir=tmp_path)
    other.propose(img)  # other parameters -> other key -> computed
    assert other.computed == 1 and len(list(tmp_path.glob("*.npy"))) == 2


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="mode"):
        SelectiveSearchProposals(mode="slow")


@pytest.mark.parametrize("suffix", [".json", ".npz"])
def test_precomputed_by_image_id_file_and_hash(tmp_path, suffix):
    img = torch.rand(3, 30, 40)
    path = tmp_path / f"props{suffix}"
    save_proposals(path, {"7": [[1, 2, 11, 12], [1, 2, 11, 12], [-3, 0, 50, 35]],
                          "cat.jpg": [[0, 0, 5, 5]],
                          image_hash(img): [[5, 5, 10, 10]]})
    gen = PrecomputedProposals(path)
    (by_id, by_file), _ = gen([img, img], targets=[{"image_id": 7}, {"image_id": 99, "file": "/x/cat.jpg"}])
    assert by_id.tolist() == [[1, 2, 11, 12], [0, 0, 40, 30]]  # deduplicated, clipped
    assert by_file.tolist() == [[0, 0, 5, 5]]
    assert gen([img])[0][0].tolist() == [[5, 5, 10, 10]]  # no target: content hash
    with pytest.raises(ValueError, match="no proposals"):
        gen([torch.rand(3, 30, 40)], targets=[{"image_id": 1}])


def test_precomputed_rescales_to_a_resized_image(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"0": [[10, 10, 20, 40]]}))
    (boxes,), _ = PrecomputedProposals(path)([torch.rand(3, 25, 50)],
                                              targets=[{"image_id": 0, "orig_size": torch.tensor([50, 100])}])
    assert boxes.tolist() == [[5.0, 5.0, 10.0, 20.0]]


def test_bad_proposal_file_names_file_and_key(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"3": [[1, 2, 3]]}))
    with pytest.raises(ValueError, match=r"bad.json: proposals\['3'\]"):
        load_proposals(path)
    txt = tmp_path / "p.txt"
    txt.write_text("x")
    with pytest.raises(ValueError, match="unknown format"):
        load_proposals(txt)


def test_selective_search_smaller_k_gives_more_proposals_and_its_own_cache_key(tmp_path):
    """base_k / inc_k set the graph segmentations' k: smaller k, finer initial regions, more boxes."""
    img = _blocks(96, 128)
    default = SelectiveSearchProposals(max_proposals=None, cache_dir=tmp_path).propose(img)
    fine = SelectiveSearchProposals(max_proposals=None, base_k=20, inc_k=20, cache_dir=tmp_path)
    boxes = fine.propose(img)
    _assert_valid(boxes, 96, 128)
    assert fine.computed == 1 and len(boxes) > len(default)
    assert len(list(tmp_path.glob("*.npy"))) == 2
