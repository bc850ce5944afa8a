"""Proposal evaluation (detseg.evaluation.proposals) on a hand-made case, and the
`detseg proposals eval` verb end to end on a tiny shapes set."""

import json
import math

import pytest
import torch

from detseg.cli import main
from detseg.cli.detection import build_generator
from detseg.evaluation.proposals import ProposalEvaluator, best_overlaps
from detseg.models.detection.proposals import PrecomputedProposals, SelectiveSearchProposals, SlidingWindowProposals


def test_best_overlaps_follow_the_proposal_order():
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    props = torch.tensor([[0.0, 0.0, 10.0, 2.0], [0.0, 0.0, 10.0, 8.0], [0.0, 0.0, 10.0, 10.0]])
    b = best_overlaps(gt, props, ks=(1, 2, 5))
    torch.testing.assert_close(b["1"], torch.tensor([0.2]))
    torch.testing.assert_close(b["2"], torch.tensor([0.8]))
    torch.testing.assert_close(b["5"], torch.tensor([1.0]))  # K beyond N: all proposals
    assert best_overlaps(gt, torch.zeros(0, 4))["all"].tolist() == [0.0]


def test_hand_made_recall_and_mabo():
    ev = ProposalEvaluator(ks=(1, 2), ious=(0.5, 0.7))
    # Image 1: two objects of class 1; the first proposal covers object A at IoU 0.6, the second
    # covers object B exactly. Image 2: one object of class 2, best IoU 0.25; image 3: no objects.
    ev.add(torch.tensor([[0.0, 0.0, 10.0, 6.0], [20.0, 20.0, 30.0, 30.0]]),
           {"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]]), "labels": torch.tensor([1, 1])},
           seconds=1.0)
    ev.add(torch.tensor([[0.0, 0.0, 5.0, 5.0]]),
           {"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0]]), "labels": torch.tensor([2])}, seconds=3.0)
    ev.add(torch.tensor([[0.0, 0.0, 5.0, 5.0]]),
           {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}, seconds=2.0)
    s = ev.summary()
    assert s["recall@1_iou0.5"] == pytest.approx(1 / 3)   # only A (0.6)
    assert s["recall@1_iou0.7"] == pytest.approx(0.0)
    assert s["recall@2_iou0.5"] == pytest.approx(2 / 3)   # A and B
    assert s["recall@2_iou0.7"] == pytest.approx(1 / 3)   # B
    assert s["mabo"] == pytest.approx(((0.6 + 1.0) / 2 + 0.25) / 2)
    assert s["abo"] == pytest.approx((0.6 + 1.0 + 0.25) / 3)
    assert s["seconds_per_image"] == pytest.approx(2.0)
    assert s["proposals_per_image"] == pytest.approx(4 / 3)
    assert s["objects"] == 3 and s["images"] == 3
    assert "MABO 0.525" in ev.table()


def test_no_objects_gives_nan_not_an_error():
    ev = ProposalEvaluator()
    ev.add(torch.zeros(0, 4), {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)})
    assert math.isnan(ev.summary()["recall@100_iou0.5"]) and math.isnan(ev.summary()["mabo"])


def test_build_generator_names():
    assert isinstance(build_generator("sliding_window"), SlidingWindowProposals)
    assert build_generator("selective_search_quality").mode == "quality"
    assert isinstance(build_generator("selective_search_fast"), SelectiveSearchProposals)
    with pytest.raises(ValueError, match="--method"):
        build_generator("edge_boxes")


def test_precomputed_method_reads_a_file(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"0": [[0, 0, 1, 1]]}))
    assert isinstance(build_generator(f"precomputed:{path}"), PrecomputedProposals)


def test_cli_proposals_eval_sliding_window(tmp_path, capsys):
    out = tmp_path / "m.json"
    rc = main(["proposals", "eval", "--method", "sliding_window", "--data", "shapes:size=64,n=8",
               "--json", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "recall IoU>=0.5" in text and "MABO" in text
    m = json.loads(out.read_text())
    assert m["method"] == "sliding_window" and m["images"] > 0 and 0 <= m["recall@2000_iou0.5"] <= 1
    assert m["recall@2000_iou0.5"] >= m["recall@100_iou0.5"]


def test_cli_help_and_bad_method(capsys):
    with pytest.raises(SystemExit) as e:
        main(["proposals", "eval", "--help"])
    assert e.value.code == 0 and "--method" in capsys.readouterr().out
    assert main(["proposals", "eval", "--method", "nope", "--data", "shapes:size=64,n=8"]) == 2


def test_cli_proposals_eval_of_a_trained_rpn(tmp_path, capsys):
    opts = ["-o", "backbone=alexnet_small_fpn", "-o", "backbone_width=8", "-o", "fpn_channels=16",
            "-o", "representation=32", "-o", "anchor_sizes=[8,16,32,48,64]"]
    assert main(["train", "faster_rcnn", "--data", "shapes:size=64,mode=scene,n=8,n_val=4", "--epochs", "1",
                 "--img-size", "64", "--batch", "4", "--out", str(tmp_path), *opts]) == 0
    ckpt = next(tmp_path.rglob("last.pt"))
    out = tmp_path / "rpn.json"
    assert main(["proposals", "eval", "--method", "rpn", "--checkpoint", str(ckpt), "--max-proposals", "300",
                 "--data", "shapes:size=64,mode=scene,n=8,n_val=4", "--json", str(out)]) == 0
    m = json.loads(out.read_text())
    assert m["method"] == "rpn" and m["images"] == 4 and 0 <= m["recall@100_iou0.5"] <= 1
    # the RPN is best-first: recall can only grow with the number of proposals
    assert m["recall@2000_iou0.5"] >= m["recall@100_iou0.5"]
    assert main(["proposals", "eval", "--method", "rpn", "--data", "shapes:size=64,n=8"]) == 2
    assert "--checkpoint" in capsys.readouterr().err
