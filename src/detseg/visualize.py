"""Drawing predictions and ground truth for every task, on torchvision's drawing utilities.

``draw_prediction`` / ``draw_target`` turn an image (``Tensor[3, H, W]`` float in [0, 1]) and a dict
in the :mod:`detseg.structures` convention into a ``uint8 [H', W', 3]`` numpy array, using
``torchvision.utils.draw_bounding_boxes``, ``draw_segmentation_masks`` and ``draw_keypoints``.
Small images are first enlarged by an integer factor (nearest neighbour) to at least
:data:`MIN_SIDE` pixels on their longer side so that label text stays readable; boxes, masks and
keypoints are mapped with the same factor. Poses with 14 joints are drawn with the LSP skeleton,
the person's right side in red, the left in blue, the head and neck in yellow.
``draw_proposals`` outlines region proposals (thin, unlabelled) for the detection pictures.
"""

from __future__ import annotations

import colorsys
import math
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor
from torchvision.utils import draw_bounding_boxes, draw_keypoints, draw_segmentation_masks

from detseg.structures import IGNORE_INDEX, LSP_KEYPOINTS, LSP_SKELETON

MIN_SIDE = 256
RIGHT, LEFT, CENTRE = (230, 40, 40), (40, 110, 255), (255, 210, 0)


def palette(n: int) -> list[tuple[int, int, int]]:
    """``n`` distinct RGB colours, the same for the same ``n`` (golden-ratio hue steps)."""
    out = []
    for i in range(n):
        h = (i * 0.618033988749895) % 1.0
        s, v = (0.75, 0.95) if i % 2 == 0 else (0.95, 0.75)
        out.append(tuple(int(round(c * 255)) for c in colorsys.hsv_to_rgb(h, s, v)))
    return out  # type: ignore[return-value]


def draw_prediction(
    image: Tensor,
    prediction: dict[str, Any],
    task: str,
    classes: Sequence[str],
    score_thresh: float = 0.3,
    keypoint_names: Sequence[str] | None = None,
) -> np.ndarray:
    """A model's prediction drawn on ``image`` -> ``uint8 [H', W', 3]`` (H', W' >= H, W).

    Args:
        image: ``Tensor[3, H, W]`` float in [0, 1].
        prediction: the convention's prediction dict (``boxes`` xyxy, ``labels``, ``scores``,
            ``masks``, ``keypoints``, ``sem_seg``; ``class``/``box`` for cls_loc).
        task: the task name; picks what is drawn.
        classes: foreground names (``labels`` index them 1-based); for ``semantic`` the
            ``seg_classes`` (``sem_seg`` values index them 0-based).
        score_thresh: instances scoring below it are not drawn (detection-like tasks).
        keypoint_names: names of the K joints (default: LSP names when K == 14).
    """
    p = dict(prediction)
    if task in ("detection", "instance", "keypoints") and "scores" in p:
        keep = _as_tensor(p["scores"]).reshape(-1) >= score_thresh
        for k in ("boxes", "labels", "scores", "masks", "keypoints"):
            if k in p and _as_tensor(p[k]).shape[:1] == keep.shape:
                p[k] = _as_tensor(p[k])[keep]
    if task == "cls_loc":
        p = _single_object(p)
    return _draw(image, p, task, classes, keypoint_names, with_scores=True)


def draw_target(
    image: Tensor,
    target: dict[str, Any],
    task: str,
    classes: Sequence[str],
    keypoint_names: Sequence[str] | None = None,
) -> np.ndarray:
    """The ground truth drawn on ``image`` (same layout as :func:`draw_prediction`, no scores)."""
    return _draw(image, target, task, classes, keypoint_names, with_scores=False)


def draw_proposals(image: Tensor, boxes: Tensor, max_boxes: int | None = 50,
                   width: int = 1) -> np.ndarray:
    """Region proposals as thin unlabelled outlines on ``image`` -> ``uint8 [H', W', 3]``.

    Args:
        image: ``Tensor[3, H, W]`` float in [0, 1] (enlarged like :func:`draw_prediction`).
        boxes: ``Tensor[N, 4]`` xyxy in ``image``'s pixels, in the generator's order.
        max_boxes: draw only the first this many (None = all); the rest would hide the image.
        width: line width in pixels of the enlarged picture.
    """
    img, f = _enlarged(image)
    boxes = _as_tensor(boxes).float().reshape(-1, 4)[:max_boxes] * f
    if len(boxes):
        # one colour per box, so that overlapping outlines stay apart
        img = draw_bounding_boxes(img, boxes, colors=palette(len(boxes)), width=width)
    return img.permute(1, 2, 0).numpy()


def make_grid(
    rows: Sequence[Sequence[np.ndarray]],
    titles: Sequence[Sequence[str] | str] | None = None,
    gap: int = 4,
    fill: int = 255,
) -> np.ndarray:
    """Tile ``uint8 [H, W, 3]`` pictures: one list per row; cells are padded to the largest size.

    ``titles`` (optional) mirrors ``rows`` with one string per cell (a plain string titles the
    row's first cell); each title is written in a strip above its cell.
    """
    cells = [c for r in rows for c in r]
    if not cells:
        raise ValueError("make_grid: no pictures")
    cell_h = max(c.shape[0] for c in cells)
    cell_w = max(c.shape[1] for c in cells)
    title_h = 14 if titles else 0
    ncols = max(len(r) for r in rows)
    H = len(rows) * (cell_h + title_h) + (len(rows) + 1) * gap
    W = ncols * cell_w + (ncols + 1) * gap
    grid = np.full((H, W, 3), fill, dtype=np.uint8)
    for i, row in enumerate(rows):
        y = gap + i * (cell_h + title_h + gap) + title_h
        for j, cell in enumerate(row):
            x = gap + j * (cell_w + gap)
            cell = _rgb(cell)
            grid[y: y + cell.shape[0], x: x + cell.shape[1]] = cell
    if titles:
        canvas = Image.fromarray(grid)
        draw = ImageDraw.Draw(canvas)
        font = _font()
        for i, row_titles in enumerate(titles):
            if isinstance(row_titles, str):
                row_titles = [row_titles]
            y = gap + i * (cell_h + title_h + gap)
            for j, t in enumerate(row_titles):
                draw.text((gap + j * (cell_w + gap), y), str(t), fill=(0, 0, 0), font=font)
        grid = np.asarray(canvas).copy()
    return grid


# -- internals ----------------------------------------------------------------------------------
def _draw(image: Tensor, d: dict[str, Any], task: str, classes: Sequence[str],
          keypoint_names: Sequence[str] | None, with_scores: bool) -> np.ndarray:
    img = _to_uint8(image)
    h, w = img.shape[-2:]
    f = max(1, math.ceil(MIN_SIDE / max(h, w)))
    if f > 1:
        img = img.repeat_interleave(f, 1).repeat_interleave(f, 2)
    legend: list[tuple[str, tuple[int, int, int]]] = []
    if task == "semantic":
        if "sem_seg" in d:
            img, legend = _draw_sem_seg(img, _as_tensor(d["sem_seg"]), classes, f)
        return _add_legend(img.permute(1, 2, 0).numpy(), legend)
    colours = palette(len(classes) + 1)
    labels = _as_tensor(d.get("labels", torch.zeros(0, dtype=torch.int64))).reshape(-1).long()
    if "masks" in d and task == "instance" and len(d["masks"]):
        masks = _as_tensor(d["masks"])
        masks = (masks > 0.5) if masks.is_floating_point() else masks.bool()
        if f > 1:
            masks = masks.repeat_interleave(f, 1).repeat_interleave(f, 2)
        mask_colours = [colours[int(l) % len(colours)] for l in labels] or None
        img = draw_segmentation_masks(img, masks, alpha=0.45, colors=mask_colours)
    if "keypoints" in d and task in ("pose", "keypoints") and len(d["keypoints"]):
        img = _draw_keypoints(img, _as_tensor(d["keypoints"]).float(), f, keypoint_names)
    if "boxes" in d and task != "pose" and len(d["boxes"]):
        boxes = _as_tensor(d["boxes"]).float().reshape(-1, 4) * f
        scores = _as_tensor(d["scores"]).reshape(-1) if with_scores and "scores" in d else None
        texts = []
        for i in range(len(boxes)):
            name = _name(classes, int(labels[i])) if i < len(labels) else ""
            if scores is not None and i < len(scores):
                name = f"{name} {float(scores[i]):.2f}"
            texts.append(name)
        box_colours = [colours[int(labels[i]) % len(colours)] if i < len(labels) else colours[0]
                       for i in range(len(boxes))]
        img = draw_bounding_boxes(img, boxes, labels=texts, colors=box_colours,
                                  width=2 if f > 1 else 1, fill_labels=True,
                                  label_colors=(255, 255, 255))
    return img.permute(1, 2, 0).numpy()


def _enlarged(image: Tensor) -> tuple[Tensor, int]:
    """``(uint8 Tensor[3, f*H, f*W], f)``: the nearest-neighbour enlargement :func:`_draw` uses."""
    img = _to_uint8(image)
    f = max(1, math.ceil(MIN_SIDE / max(img.shape[-2:])))
    if f > 1:
        img = img.repeat_interleave(f, 1).repeat_interleave(f, 2)
    return img, f


def _single_object(p: dict[str, Any]) -> dict[str, Any]:
    """cls_loc's ``class``/``box`` as one-element ``labels``/``boxes``/``scores``."""
    if "box" not in p:
        return {k: (_as_tensor(v)[:1] if k in ("boxes", "labels", "scores") else v) for k, v in p.items()}
    out: dict[str, Any] = {"boxes": _as_tensor(p["box"]).float().reshape(1, 4)}
    if "class" in p:
        out["labels"] = _as_tensor(p["class"]).reshape(1).long()
    if "scores" in p:
        s = _as_tensor(p["scores"]).float().reshape(-1)
        # a per-class score vector (take the winner's) or one score
        if len(s) > 1 and "labels" in out and 1 <= int(out["labels"][0]) <= len(s):
            s = s[int(out["labels"][0]) - 1]
        out["scores"] = s.max().reshape(1) if s.numel() else s
    return out


def _draw_sem_seg(img: Tensor, sem: Tensor, classes: Sequence[str], f: int):
    sem = sem.long()
    if f > 1:
        sem = sem.repeat_interleave(f, 0).repeat_interleave(f, 1)
    present = [int(c) for c in torch.unique(sem) if int(c) != IGNORE_INDEX]
    # "background" is left uncoloured so the image shows through; every other class is overlaid.
    shown = [c for c in present if not (c == 0 and classes and classes[0] == "background")]
    colours = palette(max([len(classes), *[c + 1 for c in present]]))
    legend = [(_name0(classes, c), colours[c]) for c in shown]
    if shown:
        masks = torch.stack([sem == c for c in shown])
        img = draw_segmentation_masks(img, masks, alpha=0.55, colors=[colours[c] for c in shown])
    return img, legend


def _draw_keypoints(img: Tensor, kps: Tensor, f: int, names: Sequence[str] | None) -> Tensor:
    """Limbs in the colour of their side (drawn with PIL: torchvision draws limbs white only),
    then the joints with ``draw_keypoints``: right red, left blue, others yellow."""
    if kps.dim() == 2:
        kps = kps[None]
    n, k = kps.shape[:2]
    xy = (kps[..., :2] + 0.5) * f - 0.5  # pixel-index coordinates: centres map to centres
    vis = kps[..., 2] > 0 if kps.shape[-1] > 2 else torch.ones(n, k, dtype=torch.bool)
    names = list(names) if names is not None else (list(LSP_KEYPOINTS) if k == 14 else None)
    side = [_side(nm) for nm in names] if names and len(names) == k else ["centre"] * k
    colour = {"right": RIGHT, "left": LEFT, "centre": CENTRE}
    radius, width = max(2, f + 1), max(2, f)
    if k == 14:
        canvas = Image.fromarray(img.permute(1, 2, 0).numpy())
        draw = ImageDraw.Draw(canvas)
        for pts, v in zip(xy.tolist(), vis.tolist()):
            for a, b in LSP_SKELETON:
                if v[a] and v[b]:
                    c = colour[side[a]] if side[a] == side[b] else CENTRE
                    draw.line([tuple(pts[a]), tuple(pts[b])], fill=c, width=width)
        img = torch.from_numpy(np.asarray(canvas).copy()).permute(2, 0, 1)
    for group in ("centre", "right", "left"):
        joints = torch.tensor([s == group for s in side])
        if joints.any():
            img = draw_keypoints(img, xy, colors=colour[group], radius=radius,
                                 visibility=vis & joints[None])
    return img


def _side(name: str) -> str:
    n = name.lower()
    if n.startswith(("right", "r_")):
        return "right"
    if n.startswith(("left", "l_")):
        return "left"
    return "centre"


def _add_legend(img: np.ndarray, entries: list[tuple[str, tuple[int, int, int]]]) -> np.ndarray:
    if not entries:
        return img
    canvas = Image.fromarray(np.ascontiguousarray(img))
    draw = ImageDraw.Draw(canvas)
    font = _font()
    y = 2
    for name, colour in entries:
        tw = int(draw.textlength(name, font=font))
        draw.rectangle([2, y, 16 + tw, y + 12], fill=(0, 0, 0))
        draw.rectangle([4, y + 2, 12, y + 10], fill=colour)
        draw.text((15, y), name, fill=(255, 255, 255), font=font)
        y += 14
    return np.asarray(canvas).copy()


def _font() -> ImageFont.ImageFont:
    return ImageFont.load_default()


def _name(classes: Sequence[str], label: int) -> str:
    return classes[label - 1] if 1 <= label <= len(classes) else str(label)


def _name0(classes: Sequence[str], index: int) -> str:
    return classes[index] if 0 <= index < len(classes) else str(index)


def _to_uint8(image: Tensor) -> Tensor:
    image = _as_tensor(image).detach().cpu()
    if image.dim() == 2:
        image = image[None]
    if image.shape[0] == 1:
        image = image.expand(3, -1, -1)
    if image.dtype == torch.uint8:
        return image.contiguous()
    return (image.float().clamp(0, 1) * 255).round().to(torch.uint8)


def _rgb(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    return a[..., :3].astype(np.uint8, copy=False)


def _as_tensor(x: Any) -> Tensor:
    if isinstance(x, Tensor):
        return x.detach().cpu()
    return torch.as_tensor(np.asarray(x))
