"""What ``detseg serve`` reads and writes: an uploaded image's bytes in, a prediction's JSON out.

The JSON of ``POST /predict`` is :meth:`detseg.results.Results.to_dict` (the structure ``detseg
predict`` writes to ``predictions.json``: names, xyxy boxes, scores, keypoints, COCO RLE masks),
plus what a page needs to draw a semantic prediction -- the label map itself, run-length encoded
row by row (``to_dict`` only counts its pixels). ``GET /model`` describes the model once: classes,
their colours (:func:`detseg.visualize.palette`, so the page and ``detseg predict`` agree), input
size and, for pose models, the joint names and skeleton.

Nothing here touches the file system: an upload's name is echoed back only as a display name.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from detseg.evaluation.keypoints import default_keypoint_names
from detseg.structures import LSP_SKELETON
from detseg.visualize import palette

# PIL formats the server decodes. PIL also opens EPS/PDF-like formats through Ghostscript and a
# few exotic ones; a server taking files from anyone restricts itself to the common raster ones.
FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP", "PPM")
MAX_PIXELS = 40_000_000
# Limbs by joint index: LSP's 14 joints, and COCO's 17 (its person category's 0-based skeleton).
SKELETONS = {14: LSP_SKELETON,
             17: ((15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7),
                  (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6))}  # width x height; beyond this even a small (compressed) file is refused


class UploadError(ValueError):
    """A rejected upload: ``status`` is the HTTP status (413 too large, 415 not an image)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def display_name(name: str | None) -> str:
    """An upload's file name as a harmless label: the last path component (``/`` or ``\\``),
    control characters dropped, at most 120 characters. It is never used as a path."""
    base = str(name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(c for c in base if ord(c) >= 32 and ord(c) != 127).strip()
    return (base if base not in ("", ".", "..") else "upload")[:120]


def decode_image(data: bytes, name: str, content_type: str | None = None,
                 max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """An upload's bytes -> ``uint8 [H, W, 3]``.

    Raises:
        UploadError: 415 naming the file, its declared type and what is wrong (empty, not an
            image of a known format, truncated, corrupt); 413 when it has more than
            ``max_pixels`` pixels (a decompression bomb is refused before it is decoded).
    """
    declared = f" (sent as {content_type})" if content_type else ""
    if not data:
        raise UploadError(415, f"{name}{declared}: not an image: the file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=FORMATS) as im:
                w, h = im.size
                if w * h > max_pixels:
                    raise UploadError(413, f"{name}: image is {w}x{h} = {w * h} pixels, more than "
                                           f"the server's limit of {max_pixels}")
                im.load()  # decode fully now: truncation and corruption surface here
                return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except UploadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise UploadError(413, f"{name}: image is too large to decode ({e})") from None
    except UnidentifiedImageError:
        head = data[:12]
        kind = "text" if all(32 <= c < 127 or c in b"\t\r\n" for c in head) else "data"
        raise UploadError(415, f"{name}{declared}: not an image: {kind} of no accepted format "
                               f"({', '.join(FORMATS)}), starts {head!r}") from None
    except (OSError, SyntaxError, ValueError) as e:
        what = "truncated" if "truncated" in str(e).lower() else "corrupt"
        raise UploadError(415, f"{name}{declared}: not a readable image: {what} ({e})") from None


def input_size(model: Any) -> int | list[int] | None:
    """The model's input size: ``img_size`` (the side images are resized to), else the fixed
    ``[H, W]`` of an exported file."""
    for obj in (model, getattr(model, "shell", None)):
        size = getattr(obj, "img_size", None)
        if isinstance(size, int):
            return size
    size = getattr(model, "builder_args", {}).get("img_size")
    if size is not None:
        return size
    meta = getattr(model, "meta", None) or {}
    return meta.get("input_hw")


def model_info(model: Any, path: str | Path) -> dict[str, Any]:
    """``GET /model``: name, task, classes (+ colours), input size, file and runtime."""
    classes = list(model.classes)
    info: dict[str, Any] = {
        "name": model.builder_name, "task": model.task, "classes": classes,
        # detections index the palette by label (1-based), semantic maps by class index
        "colors": [list(c) for c in palette(len(classes) + 1)],
        "input_size": input_size(model), "file": Path(path).name,
        "runtime": "onnxruntime" if Path(path).suffix.lower() == ".onnx" else "pytorch",
    }
    if model.task in ("pose", "keypoints"):
        k = getattr(model, "num_keypoints", None) or model.builder_args.get("num_keypoints") or 14
        names = list((model.dataset_info or {}).get("keypoint_names") or default_keypoint_names(k))
        info["keypoint_names"] = names
        info["skeleton"] = [list(e) for e in SKELETONS.get(len(names), ())]
    return info


def encode_label_map(sem: Any) -> dict[str, Any]:
    """``[H, W]`` class indices -> ``{"size": [H, W], "runs": [v0, n0, v1, n1, ...]}``: row-major
    runs of equal values (exact, and short for the blobby maps segmentation gives)."""
    flat = torch.as_tensor(sem).reshape(-1).long()
    h, w = (int(s) for s in torch.as_tensor(sem).shape[-2:])
    if flat.numel() == 0:
        return {"size": [h, w], "runs": []}
    starts = torch.ones(flat.numel(), dtype=torch.bool)
    starts[1:] = flat[1:] != flat[:-1]
    idx = torch.nonzero(starts).reshape(-1)
    lengths = torch.diff(torch.cat([idx, torch.tensor([flat.numel()])]))
    runs = torch.stack([flat[idx], lengths], 1).reshape(-1)
    return {"size": [h, w], "runs": runs.tolist()}


def decode_label_map(enc: dict[str, Any]) -> np.ndarray:
    """The inverse of :func:`encode_label_map` (tests, and clients in Python)."""
    runs = np.asarray(enc["runs"], dtype=np.int64).reshape(-1, 2)
    return np.repeat(runs[:, 0], runs[:, 1]).reshape(enc["size"])


def prediction_json(result: Any, conf: float) -> dict[str, Any]:
    """``POST /predict``'s body: ``Results.to_dict()``, the threshold applied, the label map."""
    d = result.to_dict()
    d["conf"] = conf
    if result.task == "semantic" and "sem_seg" in result.prediction:
        d["sem_seg"] = encode_label_map(result.prediction["sem_seg"])
    return d
