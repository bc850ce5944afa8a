"""Region proposal generators behind one interface: sliding windows, selective search, a file.

The proposal slot of a two-stage detector (DESIGN.md, "Parts of a detector"; Detectron2's
``modeling/proposal_generator``)::

    proposals, losses = generator(images, features=None, targets=None)

``images`` is a ``list[Tensor[3, H, W]]`` float in ``[0, 1]``; ``proposals`` is a
``list[Tensor[N_i, 4]]`` float32 xyxy in absolute pixels of each image passed (x2/y2 exclusive,
see :mod:`detseg.structures`), every box inside its image with positive width and height, no exact
duplicates, best-first where the method has an order. ``losses`` is empty for the generators here
(the RPN, a learned generator, will fill it).

- :class:`SlidingWindowProposals` -- the exhaustive baseline: a multi-scale, multi-aspect grid.
- :class:`SelectiveSearchProposals` -- Uijlings et al., "Selective Search for Object Recognition",
  IJCV 2013, as in R-CNN, through OpenCV contrib's ``cv2.ximgproc.segmentation``, cached on disk.
- :class:`PrecomputedProposals` -- boxes read from a ``.json`` / ``.npz`` file (see there).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from detseg.io import atomic_path, write_json

# ---------------------------------------------------------------- shared helpers


def to_uint8_hwc(image: Tensor) -> np.ndarray:
    """``Tensor[3, H, W]`` float in [0, 1] -> ``uint8 [H, W, 3]`` RGB (what OpenCV and hashes see)."""
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"proposals: image must be Tensor[3, H, W], got shape {tuple(image.shape)}")
    arr = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)
    return np.ascontiguousarray(arr.permute(1, 2, 0).cpu().numpy())


def image_hash(image: Tensor) -> str:
    """A content key of an image: SHA-1 of its uint8 pixels and shape (``"sha1:<hex>"``)."""
    arr = to_uint8_hwc(image)
    h = hashlib.sha1(repr(arr.shape).encode())
    h.update(arr.tobytes())
    return f"sha1:{h.hexdigest()}"


def finalize_boxes(boxes: Tensor | np.ndarray, height: int, width: int, min_size: float = 1.0,
                   max_boxes: int | None = None) -> Tensor:
    """Clip ``[N, 4]`` xyxy boxes to the image, drop thin ones and exact duplicates, keep order.

    Returns ``Tensor[M, 4]`` float32, every box inside ``[0, W] x [0, H]`` with width and height
    ``>= min_size``; the first occurrence of a duplicate is kept, and at most ``max_boxes`` boxes.
    """
    b = torch.as_tensor(np.asarray(boxes, dtype=np.float32) if isinstance(boxes, np.ndarray) else boxes)
    b = b.detach().to(torch.float32).reshape(-1, 4).cpu().clone()
    b[:, 0::2] = b[:, 0::2].clamp(0, width)
    b[:, 1::2] = b[:, 1::2].clamp(0, height)
    keep = ((b[:, 2] - b[:, 0]) >= min_size) & ((b[:, 3] - b[:, 1]) >= min_size)
    b = b[keep]
    if len(b):
        _, first = np.unique(b.numpy(), axis=0, return_index=True)
        b = b[torch.from_numpy(np.sort(first))]
    return b[:max_boxes] if max_boxes is not None else b


class ProposalGenerator(nn.Module):
    """Base class: ``forward(images, features=None, targets=None) -> (proposals, losses)``.

    Subclasses without learning implement :meth:`propose` for one image; learned ones (the RPN)
    override :meth:`forward`. Being an ``nn.Module`` lets a detector hold any generator as a part.
    """

    def forward(self, images: list[Tensor], features: dict[str, Tensor] | None = None,
                targets: list[dict[str, Any]] | None = None) -> tuple[list[Tensor], dict[str, Tensor]]:
        if targets is not None and len(targets) != len(images):
            raise ValueError(f"{type(self).__name__}: {len(images)} images but {len(targets)} targets")
        proposals = [self.propose(img, None if targets is None else targets[i])
                     for i, img in enumerate(images)]
        return proposals, {}

    def propose(self, image: Tensor, target: dict[str, Any] | None = None) -> Tensor:
        """``Tensor[N, 4]`` float32 xyxy proposals of one ``Tensor[3, H, W]`` image."""
        raise NotImplementedError


# ---------------------------------------------------------------- sliding windows


class SlidingWindowProposals(ProposalGenerator):
    """Every window of a multi-scale, multi-aspect grid (the exhaustive baseline).

    Args:
        scales: window sizes as fractions of the image's shorter side; a window of scale ``s`` and
            aspect ratio ``a`` (height / width) has area ``(s * min(H, W))**2``, width
            ``s * min(H, W) / sqrt(a)`` and height ``s * min(H, W) * sqrt(a)`` (torchvision's
            anchor convention), so the same generator suits 64 px shapes and 500 px photos.
        aspect_ratios: height / width ratios.
        stride_fraction: step between neighbouring windows as a fraction of the window's own
            width / height (0.5 = half-overlapping windows).
        max_proposals: keep at most this many (None = all).

    Windows along each axis are spread evenly from the image's start to its end, so the grid covers
    the border; windows larger than the image are clipped to it. Order: largest scale first
    (coarse to fine), then aspect ratio, then row-major position -- so "the first K" is a coarse
    grid rather than one corner of the image.
    """

    def __init__(self, scales: Sequence[float] = (0.1, 0.15, 0.22, 0.33, 0.5, 0.75, 1.0),
                 aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0), stride_fraction: float = 0.5,
                 max_proposals: int | None = None) -> None:
        super().__init__()
        if not scales or min(scales) <= 0:
            raise ValueError(f"SlidingWindowProposals: scales must be positive, got {scales}")
        if not aspect_ratios or min(aspect_ratios) <= 0:
            raise ValueError(f"SlidingWindowProposals: aspect_ratios must be positive, got {aspect_ratios}")
        if not 0 < stride_fraction <= 1:
            raise ValueError(f"SlidingWindowProposals: stride_fraction must be in (0, 1], got {stride_fraction}")
        self.scales = sorted((float(s) for s in scales), reverse=True)
        self.aspect_ratios = [float(a) for a in aspect_ratios]
        self.stride_fraction = float(stride_fraction)
        self.max_proposals = max_proposals

    def propose(self, image: Tensor, target: dict[str, Any] | None = None) -> Tensor:
        h, w = image.shape[-2:]
        return finalize_boxes(self.windows(h, w), h, w, max_boxes=self.max_proposals)

    def windows(self, height: int, width: int) -> Tensor:
        """All grid windows of an ``height x width`` image, ``Tensor[N, 4]`` xyxy (unclipped)."""
        side = min(height, width)
        out = []
        for s in self.scales:
            for a in self.aspect_ratios:
                ww, wh = s * side / a ** 0.5, s * side * a ** 0.5
                xs = _positions(width, ww, self.stride_fraction * ww)
                ys = _positions(height, wh, self.stride_fraction * wh)
                y, x = torch.meshgrid(ys, xs, indexing="ij")
                x, y = x.reshape(-1), y.reshape(-1)
                out.append(torch.stack([x, y, x + ww, y + wh], dim=1))
        return torch.cat(out)


def _positions(extent: int, size: float, stride: float) -> Tensor:
    """Start coordinates of windows of ``size`` stepping by at most ``stride`` across ``extent``."""
    if size >= extent:
        return torch.zeros(1)
    n = int(np.ceil((extent - size) / stride)) + 1
    return torch.linspace(0, extent - size, n)


# ---------------------------------------------------------------- selective search

SELECTIVE_SEARCH_MODES = ("fast", "quality")


class SelectiveSearchProposals(ProposalGenerator):
    """Selective search (Uijlings et al. 2013) via OpenCV contrib ``ximgproc``, with a disk cache.

    Args:
        mode: ``"fast"`` (``switchToSelectiveSearchFast``: 2 colour spaces x 2 strategies, the
            R-CNN setting) or ``"quality"`` (``switchToSelectiveSearchQuality``: more diversity,
            several times slower).
        max_proposals: keep the first this many after deduplication (OpenCV's order: the paper's
            pseudo-random ranking ``random * hierarchy level``, small regions first). None = all.
        max_side: shrink images whose longer side exceeds this before the search (boxes are scaled
            back); None = never shrink. Time grows faster than linearly with the pixel count.
        max_aspect: images longer than ``max_aspect`` times their width (or wider than that times
            their height) are zero-padded on the bottom / right to that ratio before the search --
            the guard against opencv_contrib#2102 (see below). Boxes are clipped back to the image;
            boxes lying only in the padding disappear.
        seed: seeds the C library's ``rand()`` (which OpenCV's ranking draws from) right before each
            search, so the order -- and with ``max_proposals`` the set -- is reproducible. None =
            leave it alone.
        base_k, inc_k, sigma: fast mode's graph segmentations (Felzenszwalb-Huttenlocher) run at
            ``k = base_k, base_k + inc_k, base_k + 2 inc_k`` with smoothing ``sigma``; OpenCV's
            defaults are 150, 150, 0.8. A smaller k gives smaller initial regions and more
            proposals: 50, 50 is about the paper's fast setting (k = 50, 100) and gives ~2k
            proposals on 500x375 images (docs/BENCHMARKS.md). Ignored in quality mode.
        cache_dir: folder of ``<key>.npy`` files (``float32 [N, 4]`` xyxy, original pixels), key =
            SHA-1 of the image's uint8 pixels and every parameter above and the OpenCV version.
            Files are written atomically. None = no cache.

    opencv_contrib#2102 (= #705, opencv#14363): the texture strategy rotates the image by 45 degrees
    and crops the rotated gradient back to the image size; for images with an aspect ratio above
    about 2.4 the crop rectangle has a negative corner and ``process()`` raises (OpenCV < 4.1.1,
    fixed by opencv_contrib PR #2132). Padding extreme images to ``max_aspect`` (2.0 by default)
    avoids it on every OpenCV version and leaves the pixels' geometry unchanged (a resize would
    distort the segments). A remaining ``cv2.error`` is re-raised as ``RuntimeError`` naming the
    image size.
    """

    def __init__(self, mode: str = "fast", max_proposals: int | None = 2000, max_side: int | None = 500,
                 max_aspect: float = 2.0, seed: int | None = 0, cache_dir: str | Path | None = None,
                 base_k: int = 150, inc_k: int = 150, sigma: float = 0.8) -> None:
        super().__init__()
        if mode not in SELECTIVE_SEARCH_MODES:
            raise ValueError(f"SelectiveSearchProposals: mode must be one of {SELECTIVE_SEARCH_MODES}, got {mode!r}")
        if max_aspect < 1:
            raise ValueError(f"SelectiveSearchProposals: max_aspect must be >= 1, got {max_aspect}")
        self.mode = mode
        self.max_proposals = max_proposals
        self.max_side = max_side
        self.max_aspect = float(max_aspect)
        self.seed = seed
        self.base_k, self.inc_k, self.sigma = int(base_k), int(inc_k), float(sigma)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.computed = 0  # searches actually run (not served from the cache): tests and stats

    def propose(self, image: Tensor, target: dict[str, Any] | None = None) -> Tensor:
        rgb = to_uint8_hwc(image)
        path = self._cache_path(rgb)
        if path is not None and path.is_file():
            return torch.from_numpy(np.load(path))
        boxes = self.search(rgb)
        if path is not None:
            with atomic_path(path) as tmp:
                with open(tmp, "wb") as fh:
                    np.save(fh, boxes.numpy())
        return boxes

    def search(self, rgb: np.ndarray) -> Tensor:
        """Run the search on a ``uint8 [H, W, 3]`` RGB image; ``Tensor[N, 4]`` float32 xyxy."""
        import cv2

        h, w = rgb.shape[:2]
        scale = 1.0
        if self.max_side is not None and max(h, w) > self.max_side:
            scale = self.max_side / max(h, w)
            rgb = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))),
                             interpolation=cv2.INTER_AREA)
        sh, sw = rgb.shape[:2]
        bgr = pad_to_aspect(np.ascontiguousarray(rgb[:, :, ::-1]), self.max_aspect)
        rects = self._run_opencv(bgr, (h, w))
        boxes = rects.astype(np.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]  # (x, y, w, h) -> xyxy, x2/y2 exclusive
        # Clip to the unpadded (shrunk) image first, then scale each axis back exactly.
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, sw) * (w / sw)
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, sh) * (h / sh)
        self.computed += 1
        return finalize_boxes(boxes, h, w, max_boxes=self.max_proposals)

    def _run_opencv(self, bgr: np.ndarray, orig_hw: tuple[int, int]) -> np.ndarray:
        import cv2

        ss = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
        ss.setBaseImage(bgr)
        if self.mode == "fast":
            ss.switchToSelectiveSearchFast(self.base_k, self.inc_k, self.sigma)
        else:
            ss.switchToSelectiveSearchQuality()
        if self.seed is not None:
            _seed_c_rand(self.seed)
        try:
            return np.asarray(ss.process())
        except cv2.error as e:
            raise RuntimeError(f"selective search failed on an image of {orig_hw[0]}x{orig_hw[1]} px "
                               f"(searched at {bgr.shape[0]}x{bgr.shape[1]}): {e}") from None

    def _cache_path(self, rgb: np.ndarray) -> Path | None:
        if self.cache_dir is None:
            return None
        import cv2

        h = hashlib.sha1(repr(rgb.shape).encode())
        h.update(rgb.tobytes())
        params = (self.mode, self.max_proposals, self.max_side, self.max_aspect, self.seed, cv2.__version__)
        if self.mode == "fast" and (self.base_k, self.inc_k, self.sigma) != (150, 150, 0.8):
            params += (self.base_k, self.inc_k, self.sigma)  # old cache keys stay valid
        h.update(repr(params).encode())
        return self.cache_dir / f"ss_{h.hexdigest()}.npy"


def pad_to_aspect(image: np.ndarray, max_aspect: float) -> np.ndarray:
    """Zero-pad ``[H, W, C]`` on the bottom or right so that ``max(H, W) / min(H, W) <= max_aspect``."""
    h, w = image.shape[:2]
    if max(h, w) <= max_aspect * min(h, w):
        return image
    ph = int(np.ceil(w / max_aspect)) - h if w > h else 0
    pw = int(np.ceil(h / max_aspect)) - w if h > w else 0
    return np.pad(image, ((0, max(ph, 0)), (0, max(pw, 0)), (0, 0)))


def _seed_c_rand(seed: int) -> None:
    """Seed libc ``rand()`` (OpenCV's selective search ranks regions with it); no-op if unavailable."""
    global _LIBC
    if _LIBC is None:
        name = ctypes.util.find_library("c")
        _LIBC = ctypes.CDLL(name) if name else False
    if _LIBC:
        _LIBC.srand(ctypes.c_uint(seed))


_LIBC: Any = None


# ---------------------------------------------------------------- precomputed


class PrecomputedProposals(ProposalGenerator):
    """Proposals read from a file, e.g. the selective-search boxes released with R-CNN / Fast R-CNN.

    File formats (boxes are xyxy in pixels of the image as stored on disk, x2/y2 exclusive)::

        proposals.json   {"<key>": [[x1, y1, x2, y2], ...], ...}
        proposals.npz    one float array [N, 4] per key (np.savez(path, **{key: boxes}))

    A key is, tried in this order for each image: the target's ``file`` (full path, then file
    name, then stem) when the target has one, ``str(target["image_id"])``, and the image's content
    hash :func:`image_hash`. :func:`save_proposals` writes either format.

    When the target carries ``orig_size`` and the image passed has another size (a model resized
    it), boxes are scaled by the same factors. Boxes are then clipped, deduplicated and truncated to
    ``max_proposals``.
    """

    def __init__(self, path: str | Path, max_proposals: int | None = None) -> None:
        super().__init__()
        self.path = Path(path)
        self.max_proposals = max_proposals
        self.table = load_proposals(self.path)

    def propose(self, image: Tensor, target: dict[str, Any] | None = None) -> Tensor:
        h, w = image.shape[-2:]
        keys = list(self._keys(image, target))
        boxes = next((self.table[k] for k in keys if k in self.table), None)
        if boxes is None:
            raise ValueError(f"{self.path}: no proposals for the image (keys tried: {', '.join(keys)})")
        boxes = boxes.clone()
        if target is not None and "orig_size" in target:
            oh, ow = (int(v) for v in target["orig_size"])
            if (oh, ow) != (h, w):
                boxes[:, 0::2] *= w / ow
                boxes[:, 1::2] *= h / oh
        return finalize_boxes(boxes, h, w, max_boxes=self.max_proposals)

    @staticmethod
    def _keys(image: Tensor, target: dict[str, Any] | None) -> Iterable[str]:
        if target is not None and target.get("file"):
            f = Path(str(target["file"]))
            yield from (str(f), f.name, f.stem)
        if target is not None and "image_id" in target:
            yield str(int(target["image_id"]))
        yield image_hash(image)


def load_proposals(path: str | Path) -> dict[str, Tensor]:
    """Read a ``.json`` or ``.npz`` proposal file into ``{key: Tensor[N, 4] float32}``.

    Raises ``ValueError`` naming the file and the key whose boxes are not ``[N, 4]``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: proposals: file not found")
    if path.suffix.lower() == ".npz":
        with np.load(path, allow_pickle=False) as z:
            raw: Mapping[str, Any] = {k: z[k] for k in z.files}
    elif path.suffix.lower() == ".json":
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: proposals: not valid JSON ({e})") from None
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: proposals: expected an object mapping keys to box lists")
    else:
        raise ValueError(f"{path}: proposals: unknown format (expected .json or .npz)")
    table = {}
    for key, boxes in raw.items():
        arr = np.asarray(boxes if len(boxes) else np.zeros((0, 4)), dtype=np.float32)
        if arr.ndim != 2 or arr.shape[1] != 4 or not np.isfinite(arr).all():
            raise ValueError(f"{path}: proposals[{key!r}]: expected finite [N, 4] xyxy boxes, "
                             f"got shape {arr.shape}")
        table[str(key)] = torch.from_numpy(arr)
    return table


def save_proposals(path: str | Path, proposals: Mapping[str, Tensor | np.ndarray]) -> None:
    """Write ``{key: [N, 4] xyxy}`` as ``.json`` or ``.npz`` (by suffix), atomically."""
    path = Path(path)
    arrays = {str(k): np.asarray(torch.as_tensor(v).cpu(), dtype=np.float32).reshape(-1, 4)
              for k, v in proposals.items()}
    if path.suffix.lower() == ".npz":
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)
    elif path.suffix.lower() == ".json":
        write_json(path, {k: v.tolist() for k, v in arrays.items()})
    else:
        raise ValueError(f"{path}: proposals: unknown format (expected .json or .npz)")


# ---------------------------------------------------------------- a trained detector's RPN


class DetectorProposals(ProposalGenerator):
    """The proposals of a trained two-stage detector's own generator (Faster R-CNN's RPN), in the
    original image's pixels, best first: so that ``detseg proposals eval --method rpn --checkpoint
    FILE`` scores a learned RPN with the same evaluator as selective search and sliding windows.

    The detector's resize, backbone and RPN run in eval mode; ``max_proposals`` sets the RPN's
    test-time post-NMS count (Ren et al. evaluate 300 and 2000, sec. 4.1).
    """

    def __init__(self, detector: nn.Module, max_proposals: int | None = None) -> None:
        super().__init__()
        gen = getattr(detector, "proposal_generator", None)
        if gen is None or getattr(gen, "frame", None) != "batch":
            raise ValueError(f"{getattr(detector, 'builder_name', type(detector).__name__)}: no learned "
                             "proposal generator (an RPN) to evaluate; --method rpn needs a faster_rcnn, "
                             "mask_rcnn or keypoint_rcnn checkpoint")
        self.detector = detector.eval()
        if max_proposals:
            gen.post_nms_top_n = {**gen.post_nms_top_n, "testing": int(max_proposals)}

    @torch.no_grad()
    def forward(self, images: list[Tensor], features: dict[str, Tensor] | None = None,
                targets: list[dict[str, Any]] | None = None) -> tuple[list[Tensor], dict[str, Tensor]]:
        from detseg.models.transform import rescale_boxes

        model = self.detector
        device = next(model.parameters()).device
        batch, _ = model.transform([im.to(device) for im in images])
        props, _ = model.proposal_generator(batch, model.backbone(batch.tensor), None)
        return [rescale_boxes(p.float(), size, orig).cpu() for p, size, orig
                in zip(props, batch.image_sizes, batch.original_sizes)], {}
