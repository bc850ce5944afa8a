"""Keypoint metrics: PCK (single- and multi-person), PCP, OKS with per-joint sigmas, the pose evaluator.

PCK@alpha ("Percentage of Correct Keypoints"; Yang & Ramanan, PAMI 2013; the LSP variant of
Sapp & Taskar, CVPR 2013): a joint is correct when its distance to the ground truth is at most
``alpha`` times a reference length of the person. For 14 LSP joints the reference is the *torso
diameter* measured on the ground truth, ``|| left_shoulder - right_hip ||`` (LSP joints 10 and 3,
1-based; as in the widely used LSP evaluation code, e.g. bearpaw/eval_pose ``eval_pck.m``, whose
comment calls the same pair "right shoulder and left hip from the observer's perspective").
Otherwise -- other K, or either torso joint not labelled -- the reference is the larger side of the
person's box (the target box, else the tight box around its labelled joints), the PCKh-free
convention of Yang & Ramanan. Only ground-truth joints with visibility > 0 count (labelled ones:
COCO's v=1 "occluded" joints still have true coordinates); the rest are neither right nor wrong.

PCP ("Percentage of Correct Parts", strict; Ferrari et al., CVPR 2008, as used on LSP by Johnson &
Everingham, BMVC 2010): a part (a stick between two endpoints) is correct when *both* predicted
endpoints lie within ``0.5`` x the ground-truth part length of their ground-truth endpoints. For 14
LSP joints the 10 standard parts are those of the widely used LSP evaluation code (bearpaw/eval_pose
``keypoints2sticks.m``): lower/upper legs and lower/upper arms of both sides, the head (neck -> head
top) and the torso (hip centre -> shoulder centre, each centre the mean of the left and right
joints). A part counts only when all the ground-truth joints it is built from are labelled.
``PCP`` pools every counted part; ``PCP/<part>`` pools left and right (as that code prints them).
PCP is reported for K == 14 only (no standard parts otherwise).

OKS ("Object Keypoint Similarity", COCO keypoint challenge) needs one sigma per joint:

- K == 17: COCO's sigmas (nose .026, eyes .025, ears .035, shoulders .079, elbows .072,
  wrists .062, hips .107, knees .087, ankles .089);
- K == 14 (LSP order): the same per-joint values for the 12 limb joints; ``neck`` and ``head_top``
  use .079, the values of CrowdPose's 14-joint evaluation (Li et al., CVPR 2019), which has the
  same joints. We do not use the nose's .026 for the head top: the top of the head is clicked far
  less precisely than the nose, so .026 would make OKS hinge on a noisy joint;
- other K: .079 for every joint (a warning says so); pass ``sigmas=[...]`` to override any default.
"""

from __future__ import annotations

import warnings
from typing import Any, Iterable, Sequence

import numpy as np

from detseg.evaluation.coco_api import coco_detections, coco_ground_truth, run_cocoeval
from detseg.evaluation.common import Evaluator, boxes_of, metrics_table, to_numpy
from detseg.structures import LSP_KEYPOINTS
from detseg.tables import format_table

COCO_KEYPOINTS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
COCO_SIGMAS = (.026, .025, .025, .035, .035, .079, .079, .072, .072, .062, .062, .107, .107,
               .087, .087, .089, .089)
_JOINT_SIGMA = {"ankle": .089, "knee": .087, "hip": .107, "wrist": .062, "elbow": .072,
                "shoulder": .079, "neck": .079, "head_top": .079}
LSP_SIGMAS = tuple(_JOINT_SIGMA[n.replace("right_", "").replace("left_", "")]
                   for n in LSP_KEYPOINTS)
# The torso diameter of LSP PCK: left shoulder to right hip (0-based indices in LSP order).
LSP_TORSO = (LSP_KEYPOINTS.index("left_shoulder"), LSP_KEYPOINTS.index("right_hip"))


# LSP PCP parts: (name, first endpoint joints, second endpoint joints); an endpoint with two joints
# is their mean. Indices are 0-based in LSP order (see the module docstring).
LSP_PCP_PARTS: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...] = (
    ("lower_leg", (0,), (1,)), ("upper_leg", (1,), (2,)), ("upper_leg", (3,), (4,)),
    ("lower_leg", (4,), (5,)), ("lower_arm", (6,), (7,)), ("upper_arm", (7,), (8,)),
    ("upper_arm", (9,), (10,)), ("lower_arm", (10,), (11,)), ("head", (12,), (13,)),
    ("torso", (2, 3), (8, 9)),
)
PCP_THRESHOLD = 0.5


def pcp_correct(pred_kps: np.ndarray, gt_kps: np.ndarray,
                parts: Sequence[tuple[str, Sequence[int], Sequence[int]]] = LSP_PCP_PARTS,
                threshold: float = PCP_THRESHOLD) -> tuple[np.ndarray, np.ndarray]:
    """Strict PCP: ``(correct [P, S], counted [P, S])``, ``pred [P, K, >=2]`` vs ``gt [P, K, 3]``.

    Part ``s`` is counted when every ground-truth joint of both its endpoints is labelled, and
    correct when both predicted endpoints are within ``threshold`` x its ground-truth length.
    """
    vis = gt_kps[:, :, 2] > 0
    correct = np.zeros((len(gt_kps), len(parts)), dtype=bool)
    counted = np.zeros_like(correct)
    for s, (_, a, b) in enumerate(parts):
        a, b = list(a), list(b)
        ga, gb = gt_kps[:, a, :2].mean(1), gt_kps[:, b, :2].mean(1)
        pa, pb = pred_kps[:, a, :2].mean(1), pred_kps[:, b, :2].mean(1)
        length = np.linalg.norm(ga - gb, axis=1)
        counted[:, s] = vis[:, a + b].all(1)
        with np.errstate(invalid="ignore"):
            ok = ((np.linalg.norm(pa - ga, axis=1) <= threshold * length)
                  & (np.linalg.norm(pb - gb, axis=1) <= threshold * length))
        correct[:, s] = counted[:, s] & ok
    return correct, counted


def pcp_metrics(correct: np.ndarray, counted: np.ndarray,
                parts: Sequence[tuple[str, Sequence[int], Sequence[int]]] = LSP_PCP_PARTS
                ) -> dict[str, float]:
    """``PCP`` over every counted part, ``PCP/<name>`` pooled by part name (NaN if never counted)."""
    out = {"PCP": float(correct.sum() / counted.sum()) if counted.sum() else 0.0}
    names = list(dict.fromkeys(name for name, _, _ in parts))
    for name in names:
        cols = [i for i, (n, _, _) in enumerate(parts) if n == name]
        n = counted[:, cols].sum()
        out[f"PCP/{name}"] = float(correct[:, cols].sum() / n) if n else float("nan")
    return out


def default_sigmas(num_keypoints: int) -> tuple[float, ...]:
    """OKS sigmas for ``num_keypoints`` joints (see the module docstring)."""
    if num_keypoints == 17:
        return COCO_SIGMAS
    if num_keypoints == 14:
        return LSP_SIGMAS
    warnings.warn(f"no standard OKS sigmas for {num_keypoints} keypoints: using .079 for every "
                  f"joint; pass sigmas=[...] to the evaluator to set them", stacklevel=2)
    return (0.079,) * num_keypoints


def default_keypoint_names(num_keypoints: int) -> list[str]:
    if num_keypoints == 14:
        return list(LSP_KEYPOINTS)
    if num_keypoints == 17:
        return list(COCO_KEYPOINTS)
    return [f"kp{i}" for i in range(num_keypoints)]


def oks(dt: np.ndarray, gt: np.ndarray, gt_area: np.ndarray, sigmas: Sequence[float]) -> np.ndarray:
    """OKS between ``dt [D, K, 3]`` and ``gt [G, K, 3]`` -> ``[D, G]`` over labelled GT joints.

    ``gt_area`` ``[G]`` is the object scale s^2 (COCO: its segment area). A person with no labelled
    joint gets OKS 0 here (COCO ignores such persons for AP).
    """
    var = (2 * np.asarray(sigmas, dtype=np.float64)) ** 2
    d2 = ((dt[:, None, :, :2] - gt[None, :, :, :2]) ** 2).sum(-1)  # [D, G, K]
    e = d2 / var / (gt_area[None, :, None] + np.spacing(1)) / 2
    vis = (gt[:, :, 2] > 0)[None]
    n = vis.sum(-1)
    return np.where(n > 0, (np.exp(-e) * vis).sum(-1) / np.maximum(n, 1), 0.0)


def reference_lengths(gt_kps: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """The PCK reference of each person: LSP torso diameter, else ``max(box w, h)``.

    Args:
        gt_kps: ``[P, K, 3]`` ground-truth joints. boxes: ``[P, 4]`` xyxy, a NaN row where a person
            has no box (then the tight box around its labelled joints is used; 0 if none).
    Returns:
        ``[P]`` lengths in pixels.
    """
    vis = gt_kps[:, :, 2] > 0
    xy = gt_kps[:, :, :2]
    # Tight boxes around labelled joints, for persons given without a box.
    lo = np.where(vis[..., None], xy, np.inf).min(1)
    hi = np.where(vis[..., None], xy, -np.inf).max(1)
    tight = np.where(vis.any(1)[:, None], np.concatenate([lo, hi], 1), 0.0)
    boxes = np.where(np.isnan(boxes).any(1, keepdims=True), tight, boxes)
    ref = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    if gt_kps.shape[1] == 14:
        a, b = LSP_TORSO
        torso = np.linalg.norm(xy[:, a] - xy[:, b], axis=1)
        use = vis[:, a] & vis[:, b] & (torso > 0)
        ref = np.where(use, torso, ref)
    return ref


def reference_length(gt_kps: np.ndarray, box: np.ndarray | None) -> float:
    """:func:`reference_lengths` of one person (``gt_kps [K, 3]``, ``box [4]`` or None)."""
    box = np.full(4, np.nan) if box is None else np.asarray(box, dtype=np.float64)
    return float(reference_lengths(gt_kps[None], box[None])[0])


def pck_correct(pred_kps: np.ndarray, gt_kps: np.ndarray, boxes: np.ndarray,
                alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """``(correct [P, K], counted [P, K])`` for ``pred [P, K, >=2]`` vs ``gt [P, K, 3]``.

    counted = labelled GT joints; a NaN prediction (an unmatched person) is never correct.
    """
    counted = gt_kps[:, :, 2] > 0
    ref = reference_lengths(gt_kps, boxes)
    dist = np.linalg.norm(pred_kps[:, :, :2] - gt_kps[:, :, :2], axis=2)
    with np.errstate(invalid="ignore"):
        return counted & (dist <= alpha * ref[:, None]), counted


def pck_metrics(correct: np.ndarray, counted: np.ndarray, names: Sequence[str],
                alpha: float) -> dict[str, float]:
    """``PCK@alpha`` over all counted joints and ``PCK@alpha/<joint>`` (NaN if never counted)."""
    key = f"PCK@{alpha:g}"
    out = {key: float(correct.sum() / counted.sum()) if counted.sum() else 0.0}
    with np.errstate(invalid="ignore", divide="ignore"):
        per = correct.sum(0) / counted.sum(0)
    for name, v in zip(names, per.tolist()):
        out[f"{key}/{name}"] = float(v)
    return out


def multi_person_pck(records: Sequence[dict[str, Any]], alpha: float,
                     sigmas: Sequence[float] | None,
                     names: Sequence[str] | None) -> dict[str, float]:
    """PCK over every labelled ground-truth person of the COCO evaluator's records.

    Each image's persons are matched one-to-one to predictions of the same class by maximal total
    OKS (Hungarian assignment); a person left without a prediction has all its joints wrong, and
    extra predictions do not count (AP already charges them).
    """
    from scipy.optimize import linear_sum_assignment

    gts, dts, boxes = [], [], []
    for r in records:
        gt, dt = r["gt_kps"], r["dt_kps"]
        if len(gt) == 0:
            continue
        matched = np.full(gt.shape, np.nan)
        if len(dt):
            sig = sigmas if sigmas is not None else default_sigmas(gt.shape[1])
            sim = oks(dt, gt, r["gt_area"], sig)
            sim = np.where(r["dt_labels"][:, None] == r["gt_labels"][None, :], sim, -1.0)
            g_idx, d_idx = linear_sum_assignment(-sim.T)
            ok = sim[d_idx, g_idx] >= 0  # never pair a person with another class's prediction
            matched[g_idx[ok]] = dt[d_idx[ok]]
        gts.append(gt), dts.append(matched), boxes.append(r["gt_boxes"])
    if not gts:
        return {f"PCK@{alpha:g}": 0.0}
    gt_all = np.concatenate(gts)
    correct, counted = pck_correct(np.concatenate(dts), gt_all, np.concatenate(boxes), alpha)
    names = list(names) if names else default_keypoint_names(gt_all.shape[1])
    return pck_metrics(correct, counted, names, alpha)


class PoseEvaluator(Evaluator):
    """Single-person pose (task ``pose``): PCK@alpha overall and per joint, PCP (K == 14), OKS AP.

    The prediction has ``keypoints`` ``[1, K, 3]`` (or ``[K, 3]``); the target's first person is the
    ground truth. When targets have ``boxes``, the prediction (score ``scores[0]``, else 1) is also
    scored by COCO OKS AP (``kp_mAP``, ``kp_mAP50``, ``kp_mAP75``) through faster-coco-eval.

    Args:
        classes: ignored beyond bookkeeping (a pose model has one subject).
        keypoint_names: joint names for the per-joint keys (default LSP/COCO names by K).
        sigmas: OKS sigmas (default :func:`default_sigmas`). pck_alpha: 0.2 -> ``PCK@0.2``.
    """

    task = "pose"

    def __init__(self, classes: Sequence[str] = ("person",),
                 keypoint_names: Sequence[str] | None = None,
                 sigmas: Sequence[float] | None = None, pck_alpha: float = 0.2):
        self.keypoint_names = list(keypoint_names) if keypoint_names else None
        self.sigmas = list(sigmas) if sigmas is not None else None
        self.pck_alpha = pck_alpha
        super().__init__(list(classes) or ["person"])

    def _clear(self) -> None:
        self.items: list[dict[str, Any]] = []

    def _add_image(self, p: dict[str, Any], t: dict[str, Any]) -> None:
        image_id = t.get("image_id", "?")
        if t.get("keypoints") is None or p.get("keypoints") is None:
            which = "target" if t.get("keypoints") is None else "prediction"
            raise ValueError(f"{which} of image {image_id}: field 'keypoints' is missing")
        gt = to_numpy(t["keypoints"], np.float64)
        dt = to_numpy(p["keypoints"], np.float64)
        gt = gt.reshape(-1, *gt.shape[-2:])
        dt = dt.reshape(-1, *dt.shape[-2:])
        if len(gt) == 0:
            return  # no person in this image: nothing to score
        if len(dt) == 0 or dt.shape[1] != gt.shape[1]:
            raise ValueError(f"prediction of image {image_id}: field 'keypoints' has shape "
                             f"{tuple(dt.shape)}, target {tuple(gt.shape)}")
        if dt.shape[2] == 2:
            dt = np.concatenate([dt, np.ones(dt.shape[:2] + (1,))], axis=2)
        box = boxes_of(t)
        pbox = boxes_of(p, "boxes") if "boxes" in p else boxes_of(p, "box")
        score = to_numpy(p["scores"]).reshape(-1)[:1] if p.get("scores") is not None else []
        self.items.append({
            "gt": gt[0], "dt": dt[0], "box": box[0] if len(box) else None,
            "pred_box": pbox[0] if len(pbox) else None,
            "score": float(score[0]) if len(score) else 1.0,
            "size": tuple(to_numpy(t["orig_size"]).tolist()) if t.get("orig_size") is not None
            else None,
        })

    def state(self) -> list[dict[str, Any]]:
        return self.items

    def merge(self, states: Iterable[list[dict[str, Any]]]) -> None:
        for s in states:
            self.items.extend(s)

    def compute(self) -> dict[str, float]:
        key = f"PCK@{self.pck_alpha:g}"
        if not self.items:
            self._metrics = {key: 0.0}
            return dict(self._metrics)
        k = self.items[0]["gt"].shape[0]
        boxes = np.stack([it["box"] if it["box"] is not None else np.full(4, np.nan)
                          for it in self.items])
        correct, counted = pck_correct(np.stack([it["dt"] for it in self.items]),
                                       np.stack([it["gt"] for it in self.items]), boxes,
                                       self.pck_alpha)
        names = self.keypoint_names or default_keypoint_names(k)
        metrics = pck_metrics(correct, counted, names, self.pck_alpha)
        if k == len(LSP_KEYPOINTS):
            metrics.update(pcp_metrics(*pcp_correct(np.stack([it["dt"] for it in self.items]),
                                                    np.stack([it["gt"] for it in self.items]))))
        if all(it["box"] is not None for it in self.items):
            metrics.update(self._oks_ap(k, names))
        self._metrics = metrics
        return dict(metrics)

    def _oks_ap(self, k: int, names: Sequence[str]) -> dict[str, float]:
        """COCO OKS AP with one ground-truth person and one scored prediction per image."""
        records = []
        for it in self.items:
            box = it["box"][None]
            pred_box = it["pred_box"][None] if it["pred_box"] is not None else np.concatenate(
                [it["dt"][:, :2].min(0), it["dt"][:, :2].max(0)])[None]
            size = it["size"] or (int(np.ceil(box[0, 3])), int(np.ceil(box[0, 2])))
            records.append({
                "size": size, "gt_boxes": box, "gt_labels": np.ones(1, dtype=np.int64),
                "gt_area": (box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1]),
                "gt_kps": it["gt"][None], "dt_boxes": pred_box, "dt_labels": np.ones(1, np.int64),
                "dt_scores": np.array([it["score"]]), "dt_kps": it["dt"][None],
            })
        gt = coco_ground_truth(records, ["person"], "keypoints", names)
        stats, _ = run_cocoeval(gt, coco_detections(records, "keypoints"), "keypoints",
                                self.sigmas or default_sigmas(k))
        return {"kp_mAP": float(stats[0]), "kp_mAP50": float(stats[1]), "kp_mAP75": float(stats[2])}

    def table(self) -> str:
        if not self._metrics:
            self.compute()
        key = f"PCK@{self.pck_alpha:g}"
        rows = [(k.split("/", 1)[1], v) for k, v in self._metrics.items() if k.startswith(key + "/")]
        rows.append(("all joints", self._metrics[key]))
        out = format_table(("joint", key), rows, title=f"pose: {key} per joint (- = never labelled)")
        pcp = [(k.split("/", 1)[1], v) for k, v in self._metrics.items() if k.startswith("PCP/")]
        if pcp:
            out += "\n\n" + format_table(("part", "PCP"), pcp + [("all parts", self._metrics["PCP"])],
                                          title="pose: strict PCP@0.5 per part (- = never labelled)")
        if "kp_mAP" in self._metrics:
            out += "\n\n" + metrics_table(self._metrics, ("kp_mAP", "kp_mAP50", "kp_mAP75"))
        return out
