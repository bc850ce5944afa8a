"""Region-based detection parts (lecture sections 3-4): the pieces every two-stage detector shares.

- :mod:`~detseg.detection.matcher` -- IoU matcher with positive / negative / ignore bands;
- :mod:`~detseg.detection.sampler` -- balanced positive/negative mini-batches;
- :mod:`~detseg.detection.box_coder` -- ``(dx, dy, dw, dh)`` box regression targets;
- :mod:`~detseg.detection.proposals` -- sliding windows, selective search, precomputed boxes;
- :mod:`~detseg.detection.proposal_eval` -- recall@K, MABO, seconds per image;
- :mod:`~detseg.detection.cli` -- the ``detseg proposals eval`` verb;
- :mod:`~detseg.detection.two_stage` -- the two-stage meta-architecture (``TwoStageDetector``);
- :mod:`~detseg.detection.roi` -- RoI pooling, RoIAlign and R-CNN's warped image crops;
- :mod:`~detseg.detection.box_head` -- FC layers -> class scores over C+1 and per-class deltas;
- :mod:`~detseg.detection.builders` -- ``fast_rcnn``, ``rcnn``, ``sliding_window_det`` (the zoo's).

Submodules are imported on use (``from detseg.detection.matcher import Matcher``) so that the CLI
parser can import :mod:`detseg.detection.cli` without loading torch.
"""
