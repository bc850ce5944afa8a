"""Region-based detection parts (lecture sections 3-4): the pieces every two-stage detector shares.

- :mod:`~detseg.models.detection.matcher` -- IoU matcher with positive / negative / ignore bands;
- :mod:`~detseg.models.detection.sampler` -- balanced positive/negative mini-batches;
- :mod:`~detseg.models.detection.box_coder` -- ``(dx, dy, dw, dh)`` box regression targets;
- :mod:`~detseg.models.detection.proposals` -- sliding windows, selective search, precomputed boxes;
- :mod:`~detseg.models.detection.two_stage` -- the two-stage meta-architecture (``TwoStageDetector``);
- :mod:`~detseg.models.detection.roi` -- RoI pooling, RoIAlign and R-CNN's warped image crops;
- :mod:`~detseg.models.detection.box_head` -- FC layers -> class scores over C+1 and per-class deltas;
- :mod:`~detseg.models.detection.builders` -- ``fast_rcnn``, ``rcnn``, ``sliding_window_det`` (the zoo's).

Single-shot detectors (lecture section 5) share :mod:`~detseg.models.detection.one_stage` (resize,
target checks, NMS, mapping back): :mod:`~detseg.models.detection.yolo_v1` (``yolo_v1``),
:mod:`~detseg.models.detection.yolo` (``yolo``: k-means anchors, FPN/PAN) and
:mod:`~detseg.models.detection.ssd` (``ssd``: default boxes, hard negative mining).

Proposal recall is an evaluator (:mod:`detseg.evaluation.proposals`); the ``detseg proposals`` and
``detseg svm`` verbs live with the rest of the command line (``cli/detection.py``). Submodules are imported on use
(``from detseg.models.detection.matcher import Matcher``): importing this package loads no torch.
"""
