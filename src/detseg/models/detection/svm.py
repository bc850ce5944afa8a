"""R-CNN's second stage: one linear SVM per class on the fc7 features, with hard-negative mining.

Girshick et al., "Rich feature hierarchies for accurate object detection and semantic
segmentation", CVPR 2014 (https://arxiv.org/abs/1311.2524), sec. 2.3 and appendix B, as in the
authors' ``rcnn_train.m``:

- after the CNN is trained (softmax over C+1), every training image's regions go through it once
  and their fc7 features are kept (in memory, or in an on-disk cache keyed by the image content
  and the network's weights, so a second fit -- another ``C``, say -- computes nothing);
- class ``j``: positives are the ground-truth boxes of class ``j`` only; negatives are proposals
  with IoU ``< 0.3`` with every box of class ``j`` (the grey zone is ignored);
- features are scaled so their mean L2 norm is 20; each SVM is liblinear's L2-regularised hinge
  loss (``C = 0.001``, positives weighted 2, an intercept feature of 10), here scikit-learn's
  :class:`~sklearn.svm.LinearSVC`, which wraps the same liblinear;
- hard-negative mining (Felzenszwalb et al., PAMI 2010): one pass over the images; the first
  image's negatives all enter a cache, later images add only the negatives the current SVM scores
  above ``-1`` (inside the margin); the SVM is retrained when ``retrain_limit`` new negatives have
  arrived and after the last image, and each retrain evicts cached negatives scored below ``-1.2``.
  The paper found that one pass is enough (mAP stops rising after it).

The fitted weights (with the feature scale folded in) are written into the box head's
``svm_weight`` / ``svm_bias`` buffers (:class:`~detseg.models.detection.box_head.BoxHead`), which then
scores regions at inference. Why the paper used SVMs at all: the CNN was fine-tuned with a looser
definition of positives (IoU >= 0.5, many jittered boxes) than suits precise localisation;
appendix B reports the softmax 1.6-3.3 mAP points behind on VOC 2007 -- Fast R-CNN closed that gap
by training end to end, and dropped the SVMs.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchvision.ops import box_iou

from detseg.models.detection.proposals import image_hash
from detseg.tables import format_table


@dataclass
class SVMConfig:
    """The SVM stage's settings; defaults are the paper's (``rcnn_train.m``)."""

    C: float = 1e-3                 # liblinear's C: the hinge loss weight against 0.5 ||w||^2
    pos_weight: float = 2.0         # positives' loss weight (-w1 2)
    neg_iou: float = 0.3            # negatives: IoU below this with every box of the class
    feat_norm: float = 20.0         # features scaled to this mean L2 norm
    bias_scale: float = 10.0        # liblinear's -B: the intercept feature's value
    hard_thresh: float = -1.0001    # a negative is hard when scored above this
    evict_thresh: float = -1.2      # cached negatives scored below this are dropped at a retrain
    retrain_limit: int = 2000       # retrain after this many new negatives
    max_iter: int = 20000


@dataclass
class RegionFeatures:
    """One image's fc7 features: ground-truth boxes (positives) and proposals (negatives)."""

    gt_feats: Tensor    # [G, D] float16
    gt_labels: Tensor   # [G] int64, 1..C
    feats: Tensor       # [N, D] float16, the proposals
    overlap: Tensor     # [N, C] float16: max IoU of each proposal with the boxes of each class

    def to_dict(self) -> dict[str, Tensor]:
        return asdict(self)


@dataclass
class ClassReport:
    """What the mining did for one class."""

    positives: int = 0
    negatives_seen: int = 0
    hard_added: int = 0
    cached_at_end: int = 0
    retrains: int = 0
    train_accuracy: float = float("nan")


@dataclass
class SVMReport:
    """The fit's figures (``detseg svm`` prints them and stores them in the checkpoint)."""

    images: int = 0
    feature_seconds: float = 0.0
    mining_seconds: float = 0.0
    cached_images: int = 0
    feature_scale: float = 1.0
    classes: dict[str, ClassReport] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ----------------------------------------------------------------------------- features
@torch.no_grad()
def region_features(model, images: list[Tensor], targets: list[dict[str, Tensor]]) -> list[RegionFeatures]:
    """The fc7 features of each image's ground-truth boxes and proposals, as the detector sees them.

    ``model`` is a :class:`~detseg.models.detection.two_stage.TwoStageDetector` in eval mode whose box head
    has ``features`` (:class:`~detseg.models.detection.box_head.BoxHead`); boxes are matched in the
    model's resized frame, the one its proposals and RoI extractor use.
    """
    batch, resized = model.transform([im.to(model.device) for im in images])
    scaled = model.scale_targets(targets, batch)
    features = model.backbone(batch.tensor) if model.backbone is not None else None
    proposals, _ = model.propose(images, resized, features, targets, scaled, batch)
    boxes = [torch.cat([t["boxes"], p]) for t, p in zip(scaled, proposals)]
    feats = model.box_head.features(model.roi_extractor(features, batch.tensor, boxes)).float().cpu()
    out = []
    for f, t, p in zip(feats.split([len(b) for b in boxes]), scaled, proposals):
        g = len(t["boxes"])
        overlap = torch.zeros(len(p), model.num_classes)
        if g and len(p):
            iou = box_iou(p.cpu(), t["boxes"].cpu())
            for j in range(model.num_classes):
                mine = t["labels"].cpu() == j + 1
                if mine.any():
                    overlap[:, j] = iou[:, mine].amax(1)
        out.append(RegionFeatures(f[:g].half(), t["labels"].cpu().long(), f[g:].half(), overlap.half()))
    return out


def model_fingerprint(model) -> str:
    """SHA-1 of what the features depend on: the weights (SVMs excluded), the image size and the
    proposal generator's settings. A changed network gets a fresh cache folder."""
    h = hashlib.sha1(f"{type(model).__name__}:{model.img_size}".encode())
    gen = model.proposal_generator
    settings = {k: v for k, v in sorted(vars(gen).items())
                if isinstance(v, (int, float, str, bool, type(None), tuple)) and not k.startswith("_")}
    h.update(f"{type(gen).__name__}{settings}".encode())
    for name, tensor in model.state_dict().items():
        if ".svm_" in name:
            continue
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class FeatureCache:
    """``folder/<model fingerprint[:16]>/<image key>.pt``: one file of :class:`RegionFeatures` per
    image, written atomically, read with ``weights_only=True``."""

    def __init__(self, folder: str | Path, model) -> None:
        self.folder = Path(folder) / model_fingerprint(model)[:16]
        self.folder.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def key(image: Tensor, target: dict[str, Tensor]) -> str:
        h = hashlib.sha1(image_hash(image).encode())
        for k in ("boxes", "labels"):
            h.update(torch.as_tensor(target[k]).detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()

    def path(self, image: Tensor, target: dict[str, Tensor]) -> Path:
        return self.folder / f"{self.key(image, target)}.pt"

    def load(self, path: Path) -> RegionFeatures | None:
        if not path.is_file():
            return None
        try:
            return RegionFeatures(**torch.load(path, map_location="cpu", weights_only=True))
        except Exception:  # a torn or foreign file: recompute it
            return None

    def save(self, path: Path, region: RegionFeatures) -> None:
        from detseg.io import atomic_path

        with atomic_path(path) as tmp:
            torch.save(region.to_dict(), tmp)


class CachedRegions(Sequence):
    """The cache files of :func:`collect_features` as a sequence of :class:`RegionFeatures`,
    each read when indexed (one image in memory at a time)."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> RegionFeatures:
        return RegionFeatures(**torch.load(self.paths[i], map_location="cpu", weights_only=True))


def collect_features(model, dataset, cache_dir: str | Path | None = None, limit: int | None = None,
                     progress: bool = True) -> tuple[list[RegionFeatures | Path], int]:
    """Each training image's :class:`RegionFeatures` (or, with ``cache_dir``, its cache file, read
    back one at a time while mining); and how many came from the cache."""
    from tqdm import tqdm

    cache = FeatureCache(cache_dir, model) if cache_dir is not None else None
    n = len(dataset) if limit is None else min(int(limit), len(dataset))
    items: list[RegionFeatures | Path] = []
    hits = 0
    for i in tqdm(range(n), desc="svm features", disable=not progress, dynamic_ncols=True, mininterval=1.0):
        image, target = dataset[i]
        if cache is None:
            items.append(region_features(model, [image], [target])[0])
            continue
        path = cache.path(image, target)
        if cache.load(path) is not None:
            hits += 1
        else:
            cache.save(path, region_features(model, [image], [target])[0])
        items.append(path)
    return items, hits


# ----------------------------------------------------------------------------- mining + fit
def _fit_linear_svm(pos: np.ndarray, neg: np.ndarray, cfg: SVMConfig) -> tuple[np.ndarray, float, float]:
    """``(w [D], b, training accuracy)`` of liblinear's hinge-loss SVM, positives weighted."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.svm import LinearSVC

    x = np.concatenate([pos, neg])
    y = np.concatenate([np.ones(len(pos)), -np.ones(len(neg))])
    svc = LinearSVC(C=cfg.C, loss="hinge", dual=True, class_weight={1: cfg.pos_weight, -1: 1.0},
                    intercept_scaling=cfg.bias_scale, max_iter=cfg.max_iter)
    with warnings.catch_warnings():  # liblinear's dual solver is slow to reach tol; the fit is usable
        warnings.simplefilter("ignore", ConvergenceWarning)
        svc.fit(x, y)
    w, b = svc.coef_[0].astype(np.float32), float(svc.intercept_[0])
    return w, b, float(((x @ w + b > 0) == (y > 0)).mean())


def mine_and_fit(regions: Sequence[RegionFeatures], num_classes: int, dim: int,
                 config: SVMConfig | None = None) -> tuple[np.ndarray, np.ndarray, float, list[ClassReport]]:
    """Hard-negative mining and the per-class fits on :class:`RegionFeatures` (module docstring).

    Args:
        regions: the images' features, in order (walked twice: pass 1 collects the positives and
            the feature scale, pass 2 mines); a list, or :class:`CachedRegions` reading the disk.
        num_classes, dim: ``C`` and ``D``.
    Returns:
        ``(w [C, D], b [C], feature scale, per-class reports)``; the SVM of class ``j`` (label
        ``j + 1``) scores scaled features: ``(scale * x) @ w[j] + b[j]``. A class without
        positives keeps ``w = 0``, ``b = -20`` (it never fires).
    """
    cfg = config or SVMConfig()
    c, d = num_classes, dim
    # Pass 1: every positive, and the feature scale (mean L2 norm -> feat_norm).
    pos: list[list[np.ndarray]] = [[] for _ in range(c)]
    norms, counted = [], 0
    for r in regions:
        for j in range(c):
            pos[j].append(r.gt_feats[r.gt_labels == j + 1].float().numpy())
        if counted < 100_000:  # a sample is enough for the mean norm
            n = torch.cat([r.gt_feats, r.feats]).float().norm(dim=1).numpy()
            norms.append(n)
            counted += len(n)
    mean_norm = float(np.concatenate(norms).mean()) if counted else 0.0
    scale = cfg.feat_norm / mean_norm if mean_norm > 0 else 1.0
    positives = [np.concatenate(p) * scale if p else np.zeros((0, d), np.float32) for p in pos]

    # Pass 2: hard-negative mining, all classes side by side (rcnn_train.m).
    w = np.zeros((c, d), np.float32)
    b = np.full(c, -20.0, np.float32)  # a class with no positives never fires (sigmoid ~ 2e-9)
    trained = [False] * c
    cache = [np.zeros((0, d), np.float32) for _ in range(c)]
    new = [0] * c
    reports = [ClassReport(positives=len(positives[j])) for j in range(c)]
    for i in range(len(regions)):
        r = regions[i]
        x = r.feats.float().numpy() * scale
        last = i == len(regions) - 1
        for j in range(c):
            cand = r.overlap[:, j].float().numpy() < cfg.neg_iou
            reports[j].negatives_seen += int(cand.sum())
            if trained[j]:  # after the first fit only the negatives inside the margin enter
                cand &= x @ w[j] + b[j] > cfg.hard_thresh
            if cand.any():
                cache[j] = np.concatenate([cache[j], x[cand]])
                new[j] += int(cand.sum())
                reports[j].hard_added += int(cand.sum())
            if (new[j] > cfg.retrain_limit or last) and len(positives[j]) and len(cache[j]):
                w[j], b[j], reports[j].train_accuracy = _fit_linear_svm(positives[j], cache[j], cfg)
                trained[j], new[j] = True, 0
                reports[j].retrains += 1
                cache[j] = cache[j][cache[j] @ w[j] + b[j] >= cfg.evict_thresh]  # drop easy ones
    for j in range(c):
        reports[j].cached_at_end = len(cache[j])
    return w, b, scale, reports


def fit_svms(model, dataset, config: SVMConfig | None = None, cache_dir: str | Path | None = None,
             limit: int | None = None, progress: bool = True) -> SVMReport:
    """Fit R-CNN's per-class SVMs (module docstring) and write them into ``model.box_head``.

    Args:
        model: a trained :class:`~detseg.models.detection.two_stage.TwoStageDetector` whose box head was
            built with ``svm=True`` (the ``rcnn`` builder's head is).
        dataset: the training split, un-augmented: ``(image, target)`` with ``boxes``/``labels``.
        config: :class:`SVMConfig` (the paper's settings by default).
        cache_dir: keep the fc7 features on disk there (keyed by image and weights).
        limit: use the first ``limit`` images only.
    Returns:
        an :class:`SVMReport`; the model is left in eval mode, scoring with the SVMs.
    """
    cfg = config or SVMConfig()
    head = model.box_head
    if not getattr(head, "has_svm", False):
        raise ValueError(f"svm: the {type(model).__name__}'s box head has no SVMs "
                         "(R-CNN's head has them: build the model with the 'rcnn' builder)")
    model.eval()
    t0 = time.perf_counter()
    items, hits = collect_features(model, dataset, cache_dir, limit, progress)
    if not items:
        raise ValueError("svm: the training set has no images")
    report = SVMReport(images=len(items), cached_images=hits, config=asdict(cfg),
                       feature_seconds=time.perf_counter() - t0)
    t0 = time.perf_counter()
    regions = items if cache_dir is None else CachedRegions(items)
    w, b, scale, reports = mine_and_fit(regions, model.num_classes, head.feature_dim, cfg)
    report.feature_scale = scale
    report.classes = dict(zip(model.classes, reports))
    report.mining_seconds = time.perf_counter() - t0

    # Fold the scale into the weights: w . (s x) + b = (s w) . x + b.
    head.svm_weight.copy_(torch.from_numpy(w * scale))
    head.svm_bias.copy_(torch.from_numpy(b))
    head.svm_fitted.fill_(True)
    return report


def report_table(report: SVMReport) -> str:
    """The per-class mining figures as a text table."""

    rows = [(name, r.positives, r.negatives_seen, r.hard_added, r.cached_at_end, r.retrains,
             f"{r.train_accuracy:.3f}") for name, r in report.classes.items()]
    return format_table(["class", "positives", "negatives seen", "hard added", "cached at end",
                         "retrains", "train acc"], rows)
