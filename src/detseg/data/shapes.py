"""The shapes world: detseg's built-in, procedurally generated, deterministic data.

Every sample is drawn from its own ``numpy.random.Generator`` seeded by ``(seed, split, index)``
(``numpy.random.SeedSequence``), so ``ds[i]`` is the same in every process and in any order — DDP
ranks and DataLoader workers agree without sharing anything — and the train, val and test splits
never share an image. Samples are generated lazily on first access and cached as uint8.

An image (``size x size``, default 128) has a textured, noisy background (a random two-colour
gradient, low-frequency colour blobs, sinusoidal stripes, per-pixel Gaussian noise) and objects of
the classes ``circle, rectangle, triangle, person`` (labels 1..4). Object colours are random (never
tied to the class: the class is told by its shape) but kept apart from the background under the
object and from the objects drawn before it. A *person* is a 14-joint stick figure in the order of
the Leeds Sports Pose dataset (:data:`detseg.structures.LSP_KEYPOINTS`) with a random pose, drawn as
thick lines with a head disc. The figure faces the viewer: the person's *right* joints appear on the
image's *left*, so a horizontal flip must swap the ``flip_pairs``.

Occlusion: objects are painted in order, later over earlier. An earlier object's instance mask loses
the covered pixels; an object that would keep less than ``min_visible`` (20 %) of its area is never
made — the occluder is re-sampled instead. ``boxes`` are the tight boxes of the *visible* masks
(xyxy, x2/y2 exclusive), so box, mask and semantic map always agree. Keypoint coordinates are the
pixel indices of the drawn joints (an integer is a pixel centre, as torchvision's ``KeyPoints``
assume); visibility 2 = visible, 1 = in the image but covered by a later object, 0 = outside.

Modes: ``scene`` (1..max_objects objects of any class; detection, instance, semantic),
``single`` (exactly one object of any class, fully in frame; classification + localization),
``person`` (exactly one person, fully in frame; pose) and ``persons`` (a scene of 1..max_objects
persons only; keypoint detection). Objects span ``min_size..max_size`` of the image side (their
larger extent); the defaults depend on the mode (:data:`SIZE_RANGES`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor

from detseg.data.base import DetsegDataset, Transform
from detseg.structures import LSP_FLIP_PAIRS, LSP_KEYPOINTS, LSP_SKELETON

CLASSES = ("circle", "rectangle", "triangle", "person")
SEG_CLASSES = ("background", *CLASSES)
CIRCLE, PERSON = CLASSES.index("circle") + 1, CLASSES.index("person") + 1
NUM_JOINTS = len(LSP_KEYPOINTS)
MODES = ("scene", "single", "person", "persons")
SPLITS = {"train": 0, "val": 1, "test": 2}
# Default object extent (fraction of the image side) per mode: single objects and lone persons are
# larger so that a box or 14 joints are resolvable at 64 px.
SIZE_RANGES = {"scene": (0.15, 0.5), "single": (0.25, 0.7), "person": (0.55, 0.9), "persons": (0.3, 0.7)}
TASK_MODES = {"cls_loc": "single", "pose": "person", "keypoints": "persons",
              "semantic": "scene", "detection": "scene", "instance": "scene"}
DEFAULT_N = {"train": 2000, "val": 300, "test": 300}
SPEC_KEYS = ("size", "n", "n_val", "mode", "seed", "max_objects", "min_size", "max_size",
             "min_visible", "cache")

# Person drawing: the skeleton plus the pelvis line closes the torso.
_PERSON_LINES = (*LSP_SKELETON, (2, 3))
_MAX_TRIES = 12


@dataclass
class _Shape:
    """One object's geometry in pixels. ``pts``: circle -> [centre]; polygon -> vertices;
    person -> 14 joints then the head centre. ``radius``: circle / head radius; ``width``: limb width."""

    label: int
    pts: np.ndarray
    radius: float = 0.0
    width: int = 0

    def extent(self) -> tuple[float, float, float, float]:
        """``(x0, y0, x1, y1)`` of everything drawn."""
        if self.label == CIRCLE:
            (cx, cy), r = self.pts[0], self.radius
            return cx - r, cy - r, cx + r, cy + r
        if self.label == PERSON:
            j, h, r, w = self.pts[:NUM_JOINTS], self.pts[NUM_JOINTS], self.radius, self.width / 2
            lo = np.minimum(j.min(0) - w, h - r)
            hi = np.maximum(j.max(0) + w, h + r)
            return lo[0], lo[1], hi[0], hi[1]
        lo, hi = self.pts.min(0), self.pts.max(0)
        return lo[0], lo[1], hi[0], hi[1]


class _Sample(NamedTuple):
    """What the cache holds: uint8 pixels and an instance-id map (visible masks are disjoint)."""

    image: np.ndarray  # uint8 [H, W, 3]
    ids: np.ndarray  # uint8 [H, W]: 0 = background, k + 1 = object k
    boxes: np.ndarray  # float32 [N, 4] xyxy of the visible masks
    labels: np.ndarray  # int64 [N]
    keypoints: np.ndarray  # float32 [N, 14, 3]


class ShapesDataset(DetsegDataset):
    """The shapes world as a map-style dataset of ``(image, target)`` pairs.

    Args:
        split: ``train``, ``val`` or ``test`` (each from its own seed stream).
        size: image side in pixels (square images).
        n: number of samples; default 2000 for ``train``, 300 for ``val``/``test``.
        mode: ``scene``, ``single``, ``person`` or ``persons`` (see the module docstring).
        seed: data seed; the same seed gives the same images everywhere.
        max_objects: most objects per scene (``scene``/``persons`` modes).
        min_size, max_size: object extent as a fraction of ``size`` (default per mode).
        min_visible: smallest visible share of an occluded object's area.
        cache: keep generated samples in memory (uint8, about ``4 * size**2`` bytes each).
        transforms: callable ``(image, target) -> (image, target)`` applied after generation.
    """

    name = "shapes"

    def __init__(
        self,
        split: str = "train",
        size: int = 128,
        n: int | None = None,
        mode: str = "scene",
        seed: int = 0,
        max_objects: int = 4,
        transforms: Transform | None = None,
        min_size: float | None = None,
        max_size: float | None = None,
        min_visible: float = 0.2,
        cache: bool = True,
    ):
        super().__init__(transforms)
        if split not in SPLITS:
            raise ValueError(f"shapes: split: {split!r} is not one of {', '.join(SPLITS)}")
        if mode not in MODES:
            raise ValueError(f"shapes: mode: {mode!r} is not one of {', '.join(MODES)}")
        lo, hi = SIZE_RANGES[mode]
        self.split, self.mode, self.seed = split, mode, int(seed)
        self.size = _check_int("size", size, 16)
        self.n = _check_int("n", DEFAULT_N[split] if n is None else n, 0)
        self.max_objects = _check_int("max_objects", max_objects, 1)
        if self.max_objects > 254:
            raise ValueError("shapes: max_objects: at most 254 (masks are cached as uint8 ids)")
        self.min_size = float(lo if min_size is None else min_size)
        self.max_size = float(hi if max_size is None else max_size)
        if not 0 < self.min_size <= self.max_size <= 1:
            raise ValueError(f"shapes: min_size/max_size: need 0 < min_size <= max_size <= 1, got "
                             f"{self.min_size}, {self.max_size}")
        if not 0 <= min_visible < 1:
            raise ValueError(f"shapes: min_visible: need 0 <= min_visible < 1, got {min_visible}")
        self.min_visible = float(min_visible)
        self.cache = bool(cache)
        self.classes = list(CLASSES)
        self.seg_classes = list(SEG_CLASSES)
        self.keypoint_names = list(LSP_KEYPOINTS)
        self.flip_pairs = [tuple(p) for p in LSP_FLIP_PAIRS]
        self.root = f"shapes:size={self.size},n={self.n},mode={mode},seed={self.seed}"
        self._cache: dict[int, _Sample] = {}
        ys, xs = np.mgrid[0:self.size, 0:self.size].astype(np.float32) / max(self.size - 1, 1)
        self._grid = (xs, ys)

    # -- construction from a --data string ----------------------------------------------------
    @classmethod
    def from_spec(cls, spec: str, split: str = "train", task: str | None = None,
                  transforms: Transform | None = None) -> ShapesDataset:
        """Parse ``"shapes"`` or ``"shapes:size=96,n=2000,mode=single,seed=3"``.

        Keys: ``size, n, n_val, mode, seed, max_objects, min_size, max_size, min_visible, cache``.
        ``n`` applies to every split unless ``n_val`` is given for val/test; without either the
        split's default (2000 train, 300 val/test) applies. ``task`` picks the default mode
        (:data:`TASK_MODES`); an explicit ``mode=`` wins.
        """
        opts = parse_spec(spec)
        n_val = opts.pop("n_val", None)
        if n_val is not None and split != "train":
            opts["n"] = n_val
        if "mode" not in opts and task is not None:
            if task not in TASK_MODES:
                raise ValueError(f"{spec}: task {task!r} has no shapes mode; known: {', '.join(TASK_MODES)}")
            opts["mode"] = TASK_MODES[task]
        try:
            ds = cls(split=split, transforms=transforms, **opts)
        except ValueError as e:
            raise ValueError(f"{spec}: {e}") from None
        ds.root = spec
        return ds

    # -- the dataset protocol ------------------------------------------------------------------
    def __len__(self) -> int:
        return self.n

    def load(self, index: int) -> tuple[Tensor, dict[str, Any]]:
        if not -self.n <= index < self.n:
            raise IndexError(f"shapes: index {index} out of range for {self.n} samples")
        index %= self.n
        s = self._cache.get(index)
        if s is None:
            s = self.generate(index)
            if self.cache:
                self._cache[index] = s
        return _to_convention(s, index)

    def generate(self, index: int) -> _Sample:
        """Draw sample ``index`` from its own seed stream (no caching)."""
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, SPLITS[self.split], index]))
        return _Generator(self, rng).run()

    def stats(self) -> dict[str, Any]:
        """Counts for ``detseg data check``, keyed like :func:`detseg.data.check.check_dataset`'s
        report (generates every sample; cached ones are reused, new ones are not kept)."""
        counts = np.zeros(len(CLASSES), dtype=np.int64)
        vis = np.zeros(3, dtype=np.int64)
        for i in range(self.n):
            s = self._cache.get(i) or self.generate(i)
            counts += np.bincount(s.labels - 1, minlength=len(CLASSES))
            person_v = s.keypoints[s.labels == PERSON][..., 2].astype(np.int64).ravel()
            vis += np.bincount(person_v, minlength=3)
        S = self.size
        return {
            "format": "shapes", "root": self.root, "split": self.split, "n_images": self.n,
            "classes": list(self.classes),
            "objects_per_class": {c: int(k) for c, k in zip(CLASSES, counts)},
            "n_objects": int(counts.sum()),
            "image_sizes": {"width": [S, S], "height": [S, S], "most_common": f"{S}x{S}",
                            "most_common_count": self.n, "distinct": 1} if self.n else {},
            "extra": {"mode": self.mode, "keypoints visible (v=2)": int(vis[2]),
                      "keypoints occluded (v=1)": int(vis[1]),
                      "keypoints outside the image (v=0)": int(vis[0])},
            "problems": list(self.problems),
        }


def parse_spec(spec: str) -> dict[str, Any]:
    """``"shapes:size=96,mode=single"`` -> ``{"size": 96, "mode": "single"}`` (ints, floats, strings)."""
    head, _, rest = spec.partition(":")
    if head.strip() != "shapes":
        raise ValueError(f"{spec}: not a shapes spec (expected 'shapes' or 'shapes:key=value,...')")
    opts: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = (s.strip() for s in item.partition("="))
        if not eq or not value:
            raise ValueError(f"{spec}: {item!r} is not key=value")
        if key not in SPEC_KEYS:
            raise ValueError(f"{spec}: unknown key {key!r}; valid keys: {', '.join(SPEC_KEYS)}")
        opts[key] = _parse_value(value)
    return opts


def _parse_value(value: str) -> int | float | str:
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def _check_int(field: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"shapes: {field}: need an integer >= {minimum}, got {value!r}")
    return int(value)


def _to_convention(s: _Sample, index: int) -> tuple[Tensor, dict[str, Any]]:
    """Fresh tensors in the :mod:`detseg.structures` convention (the cache stays untouched)."""
    h, w = s.ids.shape
    ids = torch.from_numpy(s.ids)
    n = len(s.labels)
    masks = (ids[None] == torch.arange(1, n + 1, dtype=torch.uint8)[:, None, None]).to(torch.uint8)
    lut = torch.from_numpy(np.concatenate([[0], s.labels]).astype(np.int64))
    image = torch.from_numpy(s.image).permute(2, 0, 1).float().div_(255.0)
    target = {
        "boxes": torch.from_numpy(s.boxes.copy()),
        "labels": torch.from_numpy(s.labels.copy()),
        "masks": masks,
        "keypoints": torch.from_numpy(s.keypoints.copy()),
        "sem_seg": lut[ids.long()],
        "image_id": index,
        "orig_size": torch.tensor([h, w], dtype=torch.int64),
    }
    return image, target


# -- generation ---------------------------------------------------------------------------------
class _Generator:
    """Draws one sample: background, then objects one by one with occlusion bookkeeping."""

    def __init__(self, ds: ShapesDataset, rng: np.random.Generator):
        self.ds, self.rng, self.S = ds, rng, ds.size
        self.shapes: list[_Shape] = []
        self.full: list[np.ndarray] = []  # bool [S, S], everything the object covers in the image
        self.visible: list[np.ndarray] = []
        self.colours: list[np.ndarray] = []

    def run(self) -> _Sample:
        mode, rng = self.ds.mode, self.rng
        self.image = _background(rng, self.S, self.ds._grid)
        if mode in ("single", "person"):
            count, out_frac = 1, 0.0
        else:
            count, out_frac = int(rng.integers(1, self.ds.max_objects + 1)), 0.2
        for k in range(count):
            # The first object gets many more tries: no image may come out empty.
            for _ in range(20 * _MAX_TRIES if k == 0 else _MAX_TRIES):
                label = PERSON if mode in ("person", "persons") else int(rng.integers(1, PERSON + 1))
                if self._try_add(label, out_frac):
                    break
        if not self.shapes:
            raise RuntimeError(f"shapes: no object fits a {self.S}px image with min_size="
                               f"{self.ds.min_size}, max_size={self.ds.max_size}")
        self.image += rng.standard_normal(self.image.shape, dtype=np.float32) * rng.uniform(3, 12)
        np.clip(self.image, 0, 255, out=self.image)
        return self._sample()

    def _try_add(self, label: int, out_frac: float) -> bool:
        shape = self._place(_make_shape(self.rng, label), out_frac)
        if shape is None:
            return False
        mask = _render(shape, self.S)
        area = int(mask.sum())
        if area < max(6, 0.02 * self.S):
            return False
        still = [v & ~mask for v in self.visible]
        if any(s.sum() < self.ds.min_visible * f.sum() for s, f in zip(still, self.full)):
            return False  # it would hide an earlier object: re-sample it instead
        colour = self._colour(mask)
        if colour is None:
            return False
        self.visible = [*still, mask]
        self.full.append(mask)
        self.shapes.append(shape)
        self.colours.append(colour)
        self._paint(shape, mask, colour)
        return True

    def _place(self, shape: _Shape, out_frac: float) -> _Shape | None:
        """Scale ``shape`` to a random extent and move it to a random position.

        ``out_frac``: share of the extent allowed beyond each border (0 keeps it fully in frame).
        """
        S, rng = self.S, self.rng
        x0, y0, x1, y1 = shape.extent()
        target = rng.uniform(self.ds.min_size, self.ds.max_size) * S
        scale = target / max(x1 - x0, y1 - y0)
        w, h = (x1 - x0) * scale, (y1 - y0) * scale
        lo_x, hi_x = -out_frac * w, S - 1 - (1 - out_frac) * w
        lo_y, hi_y = -out_frac * h, S - 1 - (1 - out_frac) * h
        if hi_x < lo_x or hi_y < lo_y:
            return None
        off = np.array([rng.uniform(lo_x, hi_x) - x0 * scale, rng.uniform(lo_y, hi_y) - y0 * scale])
        pts = shape.pts * scale + off
        radius = shape.radius * scale
        width = 0
        if shape.label == PERSON:
            # Integer joints: the keypoints are exactly the drawn pixels, so flips stay exact.
            pts = np.round(pts)
            radius = max(2.0, round(radius))
            width = max(2, int(round(0.05 * target)))
        return _Shape(shape.label, pts, radius, width)

    def _colour(self, mask: np.ndarray) -> np.ndarray | None:
        """A random colour far from the background under ``mask`` and from overlapped objects."""
        under = self.image[mask].mean(0)
        touched = [c for c, f in zip(self.colours, self.full) if (f & mask).any()]
        for _ in range(20):
            c = self.rng.uniform(0, 255, 3).astype(np.float32)
            if np.linalg.norm(c - under) >= 90 and all(np.linalg.norm(c - t) >= 70 for t in touched):
                return c
        return None

    def _paint(self, shape: _Shape, mask: np.ndarray, colour: np.ndarray) -> None:
        ys, xs = np.nonzero(mask)
        # A mild linear shading so objects are not flat patches (the class is in the shape).
        g = self.rng.uniform(-25, 25, 2) / max(1, self.S * self.ds.max_size)
        shade = (xs - xs.mean()) * g[0] + (ys - ys.mean()) * g[1]
        self.image[ys, xs] = colour + shade[:, None].astype(np.float32)

    def _sample(self) -> _Sample:
        S, n = self.S, len(self.shapes)
        ids = np.zeros((S, S), dtype=np.uint8)
        boxes = np.zeros((n, 4), dtype=np.float32)
        keypoints = np.zeros((n, NUM_JOINTS, 3), dtype=np.float32)
        for k, (shape, vis) in enumerate(zip(self.shapes, self.visible)):
            ids[vis] = k + 1
            rows, cols = np.flatnonzero(vis.any(1)), np.flatnonzero(vis.any(0))
            boxes[k] = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
            if shape.label == PERSON:
                keypoints[k] = _joint_visibility(shape.pts[:NUM_JOINTS], vis)
        labels = np.array([s.label for s in self.shapes], dtype=np.int64)
        return _Sample(self.image.astype(np.uint8), ids, boxes, labels, keypoints)


def _joint_visibility(joints: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """``[14, 3]``: v = 2 on the visible mask, 1 in the image but covered, 0 outside the image."""
    S = visible.shape[0]
    out = np.zeros((len(joints), 3), dtype=np.float32)
    out[:, :2] = joints
    x, y = joints[:, 0].astype(int), joints[:, 1].astype(int)
    inside = (x >= 0) & (x < S) & (y >= 0) & (y < S)
    xi, yi = np.clip(x, 0, S - 1), np.clip(y, 0, S - 1)
    out[:, 2] = np.where(inside, np.where(visible[yi, xi], 2, 1), 0)
    return out


def _background(rng: np.random.Generator, S: int, grid: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """float32 ``[S, S, 3]``: gradient + low-frequency blobs + stripes (noise is added last)."""
    xs, ys = grid
    c0, c1 = rng.uniform(0, 255, (2, 3)).astype(np.float32)
    th = rng.uniform(0, 2 * math.pi)
    ct, st = math.cos(th), math.sin(th)
    t = xs * ct + ys * st
    t -= min(0.0, ct) + min(0.0, st)  # xs, ys in [0, 1]: t's exact range, no image-wide min/max
    t /= abs(ct) + abs(st)
    image = c0 + t[..., None] * (c1 - c0)
    k = int(rng.integers(3, 7))
    blobs = rng.uniform(-45, 45, (k, k, 3)) + 128
    blobs = Image.fromarray(blobs.astype(np.uint8)).resize((S, S), Image.BILINEAR)
    image += np.asarray(blobs, dtype=np.float32) - 128
    period = rng.uniform(4, 16)  # pixels; independent of S so stripes stay texture, not shape
    phi = rng.uniform(0, 2 * math.pi)
    phase = (xs * math.cos(phi) + ys * math.sin(phi)) * (2 * math.pi * (S - 1) / period)
    direction = rng.normal(0, 1, 3).astype(np.float32)
    direction *= rng.uniform(0, 28) / (np.linalg.norm(direction) + 1e-6)
    image += np.sin(phase + rng.uniform(0, 2 * math.pi))[..., None] * direction
    return image


# -- shapes in unit coordinates (scaled and placed by _Generator._place) -------------------------
def _make_shape(rng: np.random.Generator, label: int) -> _Shape:
    name = CLASSES[label - 1]
    if name == "circle":
        return _Shape(label, np.zeros((1, 2)), radius=0.5)
    if name == "rectangle":
        w, h = 1.0, rng.uniform(0.35, 1.0)
        corners = np.array([[-w, -h], [w, -h], [w, h], [-w, h]]) / 2
        return _Shape(label, corners @ _rotation(rng.uniform(0, math.pi)).T)
    if name == "triangle":
        # Vertices spread around a circle: no sliver triangles that would read as lines.
        angles = rng.uniform(0, 2 * math.pi) + np.array([0, 2, 4]) * math.pi / 3
        angles += rng.uniform(-0.35, 0.35, 3)
        radii = rng.uniform(0.75, 1.0, 3)
        return _Shape(label, np.stack([np.cos(angles), np.sin(angles)], 1) * radii[:, None])
    return _person(rng)


def _rotation(theta: float) -> np.ndarray:
    c, s = math.cos(theta), math.sin(theta)
    return np.array([[c, -s], [s, c]])


def _person(rng: np.random.Generator) -> _Shape:
    """A stick figure facing the viewer (its right = image left), about 1 unit tall, pelvis at 0.

    Image coordinates: x right, y down. Limb angles are measured from straight down, positive
    away from the body's midline, so the same numbers give mirrored right/left limbs.
    """
    u = lambda a, b: rng.uniform(a, b)  # noqa: E731
    torso, neck_gap, head_r = u(0.28, 0.34), u(0.02, 0.04), u(0.065, 0.085)
    thigh, shin = u(0.21, 0.27), u(0.21, 0.27)
    upper, fore = u(0.15, 0.19), u(0.14, 0.18)
    hip_w, sh_w = u(0.05, 0.08), u(0.08, 0.12)
    j = np.zeros((NUM_JOINTS + 1, 2))

    def limb(start: np.ndarray, side: int, angle: float, length: float) -> np.ndarray:
        return start + length * np.array([side * math.sin(angle), math.cos(angle)])

    for side, (hip, knee, ankle, sho, elb, wri) in ((-1, (2, 1, 0, 8, 7, 6)), (1, (3, 4, 5, 9, 10, 11))):
        j[hip] = (side * hip_w, 0.0)
        j[sho] = (side * sh_w, -torso)
        a = math.radians(u(-15, 45))
        j[knee] = limb(j[hip], side, a, thigh)
        j[ankle] = limb(j[knee], side, a + math.radians(u(-50, 40)), shin)
        a = math.radians(u(-20, 170))
        j[elb] = limb(j[sho], side, a, upper)
        j[wri] = limb(j[elb], side, a + math.radians(u(-110, 110)), fore)
    j[12] = (0.0, -torso - 0.02)
    j[NUM_JOINTS] = (0.0, j[12, 1] - neck_gap - head_r)  # head centre
    j[13] = (0.0, j[NUM_JOINTS, 1] - 0.7 * head_r)  # head top, inside the head disc
    j = j @ _rotation(math.radians(u(-15, 15))).T
    return _Shape(PERSON, j, radius=head_r)


def _render(shape: _Shape, S: int) -> np.ndarray:
    """bool ``[S, S]``: the pixels ``shape`` covers (PIL rasterisation, no antialiasing)."""
    canvas = Image.new("1", (S, S), 0)
    draw = ImageDraw.Draw(canvas)
    if shape.label == CIRCLE:
        (cx, cy), r = shape.pts[0], shape.radius
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=1)
    elif shape.label == PERSON:
        p, w = shape.pts, shape.width
        (hx, hy), r = p[NUM_JOINTS], shape.radius
        draw.ellipse([hx - r, hy - r, hx + r, hy + r], fill=1)
        for a, b in _PERSON_LINES:
            draw.line([tuple(p[a]), tuple(p[b])], fill=1, width=w)
        h = w / 2
        for x, y in p[:NUM_JOINTS]:  # round joints; also makes every joint pixel part of the mask
            draw.ellipse([x - h, y - h, x + h, y + h], fill=1)
            draw.point((x, y), fill=1)
    else:
        draw.polygon([tuple(q) for q in shape.pts], fill=1)
    return np.asarray(canvas, dtype=bool)
