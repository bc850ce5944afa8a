"""COCO JSON reader: boxes, polygon/RLE instance masks and keypoints.

Format: Lin et al., "Microsoft COCO: Common Objects in Context", ECCV 2014, and the data format
page of cocodataset.org. ``bbox`` is ``[x, y, w, h]`` in pixels -> xyxy; ``segmentation`` is a
list of polygons or an RLE (compressed string or uncompressed list ``counts``), decoded with
faster-coco-eval's mask utilities (pycocotools is only a test reference); ``keypoints`` is
``[x1, y1, v1, ...]`` with COCO's visibility (0 not labelled, 1 occluded, 2 visible). Category
ids are mapped to contiguous labels ``1..C`` in id order, ``classes`` are their names. Crowd
annotations (``iscrowd = 1``) are left out of the targets and counted (``n_crowd``). An image
``id`` given twice keeps its first image (the annotations cannot tell which they belong to), a
``file_name`` given twice its first entry, each a Problem; repeated annotation ids are kept, one
Problem per id. An image whose pixels are of another size than the json says is skipped when
loaded if it has masks (they are drawn at the json's size), a Problem ``size``.

Where the data is: a json file, or a folder holding ``annotations/*.json`` (``instances_*``
preferred over ``person_keypoints_*``) or ``*.json``; images are looked up beside the json, one
level up, in ``images/``, or in a folder named after the file's split (``train2017/``).

Splits: a json named for a split (``instances_train2017.json``) is that split, and its siblings
(``instances_val2017.json``, ...) are the others; a json with no split in its name has none ->
the hash split of :mod:`detseg.data.split`. Image sizes are taken from the json; ``detseg data
check`` reads every header to confirm them.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from detseg.data.base import SampleSkipped, Transform, read_image
from detseg.data.split import SplitReader, is_file
from detseg.structures import Problem

SPLIT_WORD = re.compile(r"(?:^|[_\-.])(train|val|valid|validation|test|trainval)(?=\d|[_\-.]|$)",
                        re.IGNORECASE)
SPLIT_OF_WORD = {"train": "train", "trainval": "train", "val": "val", "valid": "val",
                 "validation": "val", "test": "test"}
SKIP_PREFIXES = ("captions", "image_info", "panoptic", "stuff")


def looks_like_coco(path: Path) -> bool:
    """A json whose first 64 KB mention ``"images"`` or ``"annotations"`` (cheap; no full parse)."""
    if path.suffix.lower() != ".json" or path.name.lower().startswith(SKIP_PREFIXES):
        return False
    try:
        with open(path, "rb") as f:
            head = f.read(65536)
    except OSError:
        return False
    return b'"images"' in head or b'"annotations"' in head


def split_word(path: Path) -> str | None:
    m = SPLIT_WORD.search(path.stem)
    return SPLIT_OF_WORD[m.group(1).lower()] if m else None


def coco_files(path: Path) -> tuple[Path, dict[str, Path]]:
    """``(root, {split: json})`` for a json file or a folder; ``{"all": json}`` when unsplit."""
    path = Path(path)
    if path.is_file():
        root = path.parent.parent if path.parent.name.lower() == "annotations" else path.parent
        if split_word(path) is None:
            return root, {"all": path}
        m = SPLIT_WORD.search(path.stem)
        assert m is not None
        head, tail = path.stem[:m.start(1)], path.stem[m.end(1):] + path.suffix
        files = {split_word(path): path}
        for word in SPLIT_OF_WORD:
            sib = path.with_name(head + word + tail)
            if sib.is_file() and SPLIT_OF_WORD[word] not in files:
                files[SPLIT_OF_WORD[word]] = sib
        return root, files  # type: ignore[return-value]
    folders = [path / "annotations", path] if (path / "annotations").is_dir() else [path]
    found = [p for d in folders for p in sorted(d.glob("*.json")) if looks_like_coco(p)]
    found.sort(key=lambda p: (not p.name.startswith("instances"), not p.name.startswith("person_keypoints")))
    files: dict[str, Path] = {}
    for p in found:
        files.setdefault(split_word(p) or "all", p)
    if "all" in files and len(files) > 1:
        del files["all"]  # split-named files win over an unsplit extra
    unsplit = [p for p in found if split_word(p) is None]
    if "all" in files and len(unsplit) > 1:
        raise ValueError(f"{path}: several COCO json files and none named for a split "
                         f"({', '.join(p.name for p in unsplit)}): pass one of them")
    return path, files


MAX_SIDE = 2**16  # a side longer than this is no image size (and its masks would not fit in memory)


def _is_id(v: Any) -> bool:
    return (isinstance(v, int) and not isinstance(v, bool)) or isinstance(v, str)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _size(v: Any) -> int | None:
    """A json height/width as a positive int (``8`` or ``8.0``), else None."""
    if not _is_number(v) or v != int(v) or not 1 <= v <= MAX_SIDE:
        return None
    return int(v)


def _rle_problem(seg: dict, hw: tuple[int, int]) -> str | None:
    """Why an RLE cannot be this image's mask (None when it can): its size must be the image's and
    an uncompressed ``counts`` list must add up to H x W; a compressed string is checked by the
    decoder when the mask is decoded (it raises for a string that overruns the size)."""
    size, counts = seg.get("size"), seg.get("counts")
    if not (isinstance(size, list) and len(size) == 2 and all(_is_number(v) for v in size)):
        return f"size {size!r:.30} is not [height, width]"
    if tuple(int(v) for v in size) != hw:
        return f"size {size} is not the image's {list(hw)}"
    if isinstance(counts, str):
        return None if counts.isascii() and counts.isprintable() else "counts is not an RLE string"
    if not (isinstance(counts, list) and all(isinstance(c, int) and not isinstance(c, bool) and c >= 0
                                             for c in counts)):
        return "counts is neither an RLE string nor a list of non-negative integers"
    if sum(counts) != hw[0] * hw[1]:
        return f"counts add up to {sum(counts)} pixels, not {hw[0]} x {hw[1]}"
    return None


def flip_pairs_from_names(names: list[str]) -> list[tuple[int, int]]:
    """Index pairs of ``left_*``/``right_*`` keypoint names (swapped by a horizontal flip)."""
    index = {n: i for i, n in enumerate(names)}
    pairs = []
    for i, n in enumerate(names):
        for a, b in (("left_", "right_"), ("left", "right"), ("l_", "r_")):
            if n.startswith(a) and b + n[len(a):] in index:
                pairs.append((i, index[b + n[len(a):]]))
                break
    return pairs


class COCODataset(SplitReader):
    """COCO: ``boxes``, ``labels`` and, where annotated, ``masks`` and ``keypoints``."""

    def __init__(self, root: str | Path, split: str = "train", val_fraction: float = 0.2,
                 seed: int = 0, transforms: Transform | None = None, images: Path | None = None):
        super().__init__(root, split, val_fraction, seed, transforms)
        self.image_root = Path(images) if images is not None else None  # named by a dataset yaml / --images
        base, files = coco_files(Path(root))
        if not files:
            raise ValueError(f"{root}: no COCO json (with \"images\" and \"annotations\") found")
        self.headers_checked = False
        self.n_crowd = 0
        self._cats: dict[int, dict] = {}
        needed = self._files_needed(files)
        loaded = {s: self._read_json(files[s]) for s in needed}
        self._set_classes(loaded)
        entries: dict[str, tuple[Path, dict, list[dict]]] = {}
        own: dict[str, list[str]] = {}
        for s, data in loaded.items():
            folder = self._image_folder(base, files[s], data["images"])
            by_image: dict[Any, list[dict]] = {}
            for a in data.get("annotations", []):
                by_image.setdefault(a.get("image_id"), []).append(a)
            self._orphans(files[s], data, by_image)
            self._repeated_annotation_ids(files[s], data["annotations"])
            seen: dict[Any, str] = {}
            for img in data["images"]:
                name = str(img.get("file_name", ""))  # a non-text name is reported when the image is added
                key = name if s == "all" else f"{s}/{name}"
                if self._repeated_image(files[s], img, name, seen, key in entries):
                    continue
                entries[key] = (files[s], img, by_image.get(img.get("id"), []))
                if s != "all":
                    own.setdefault(s, []).append(key)
                img["_folder"] = folder
        self.files_json: list[str] = []
        self.boxes: list[np.ndarray] = []
        self.labels: list[np.ndarray] = []
        self.segms: list[list[Any]] = []
        self.keypoints: list[np.ndarray | None] = []
        self.image_ids: list[int] = []
        chosen = self._choose(list(entries), own, files)
        self.n_raw_objects = sum(len(entries[k][2]) for k in chosen)
        self.index_samples(chosen, lambda k: self._add(*entries[k]))
        self.task = "keypoints" if self.keypoint_names else "instance" if self.has_masks else "detection"
        self.target_keys = ("boxes", "labels") + (("masks",) if self.has_masks else ()) \
            + (("keypoints",) if self.keypoint_names else ())

    def _files_needed(self, files: dict[str, Path]) -> list[str]:
        if "all" in files:
            return ["all"]
        if self.base_split == "all":
            return list(files)
        if self.split in files:
            return [self.split]
        if self.split == "val" and "train" in files:
            return ["train"]  # hashed out of train
        if self.split == "train" and "val" in files and "train" not in files:
            raise ValueError(f"{self.root}: only a val json ({files['val'].name}) found; no train split")
        have = ", ".join(files)
        raise ValueError(f"{self.root}: no {self.split!r} split in this data (json files for: {have})")

    def _choose(self, keys: list[str], own: dict[str, list[str]], files: dict[str, Path]) -> list[str]:
        """The keys of the split: a split's own json is taken whole, never re-hashed."""
        if "all" in files:
            return self.select(keys, None)
        if self.split in own and (self.split != "train" or "val" in files):
            self.split_keys = {"all": keys, **own}
            self.split_source = "the dataset's own json file per split"
            return own[self.split]
        return self.select(keys, own)

    @staticmethod
    def _read_json(path: Path) -> dict:
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
            raise ValueError(f"{path}: cannot read COCO json ({type(e).__name__}: {e})") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a json object with images, annotations, categories; "
                             f"got a {type(data).__name__}")
        for key in ("images", "categories"):
            if not isinstance(data.get(key), list):
                raise ValueError(f"{path}: {key}: missing or not a list")
        if not isinstance(data.setdefault("annotations", []), list):
            raise ValueError(f"{path}: annotations: not a list")
        for key in ("images", "annotations", "categories"):
            bad = next((i for i, x in enumerate(data[key]) if not isinstance(x, dict)), None)
            if bad is not None:
                raise ValueError(f"{path}: {key}[{bad}]: expected an object, got {data[key][bad]!r:.40}")
        for i, c in enumerate(data["categories"]):
            if not _is_id(c.get("id")):
                raise ValueError(f"{path}: categories[{i}].id: {'missing' if 'id' not in c else repr(c['id'])+' is not an id'}")
            kps = c.get("keypoints")
            if kps is not None and not (isinstance(kps, list) and all(isinstance(k, str) for k in kps)):
                raise ValueError(f"{path}: categories[{i}].keypoints: expected a list of names")
        for key in ("images", "annotations"):
            for x in data[key]:
                for f in ("id", "image_id", "category_id"):
                    if f in x and not _is_id(x[f]):
                        x[f] = repr(x[f])  # unhashable or odd ids: kept as text, so lookups fail cleanly
        return data

    def _set_classes(self, loaded: dict[str, dict]) -> None:
        for data in loaded.values():
            for c in data["categories"]:
                self._cats.setdefault(c["id"], c)
        ids = sorted(self._cats, key=lambda i: (isinstance(i, str), i))
        self.label_of = {cid: i + 1 for i, cid in enumerate(ids)}
        self.classes = [str(self._cats[c].get("name", c)) for c in ids]
        self.seg_classes = ["background", *self.classes]
        kp_cat = next((self._cats[c] for c in ids if self._cats[c].get("keypoints")), None)
        if kp_cat is not None:
            self.keypoint_names = list(kp_cat["keypoints"])
            self.flip_pairs = flip_pairs_from_names(self.keypoint_names)
        self.has_masks = any(a.get("segmentation") for d in loaded.values()
                             for a in d.get("annotations", []) if not a.get("iscrowd"))

    def _image_folder(self, base: Path, json_path: Path, images: list[dict]) -> Path:
        """The folder the ``file_name``s are relative to (the candidate holding most of the first 20)."""
        if self.image_root is not None:
            return self.image_root
        token = json_path.stem.split("_")[-1]
        split = split_word(json_path) or ""
        candidates = []
        for d in dict.fromkeys([json_path.parent, json_path.parent.parent, base]):
            for sub in ("", "images", token, f"images/{token}", split, f"images/{split}"):
                candidates.append(d / sub)
        # names that are not text are reported when their image is added; here they just don't vote
        names = [n for n in (i.get("file_name") for i in images[:20]) if isinstance(n, str) and n]
        scores = [sum(is_file(c / n) for n in names) for c in candidates]
        best = max(range(len(candidates)), key=lambda i: scores[i], default=0)
        return candidates[best] if scores and scores[best] else json_path.parent

    def _orphans(self, json_path: Path, data: dict, by_image: dict[Any, list[dict]]) -> None:
        known = {i.get("id") for i in data["images"]}
        for image_id, anns in by_image.items():
            if image_id not in known:
                self.problem(json_path, f"annotations[id={anns[0].get('id')}].image_id",
                             f"image id {image_id} not in images ({len(anns)} annotation(s) skipped)")

    def _repeated_image(self, json_path: Path, img: dict, name: str, seen: dict[Any, str],
                        name_seen: bool) -> bool:
        """Whether ``img`` repeats an earlier image's id or file name (a Problem says so: skipped)."""
        image_id = img.get("id")
        if image_id in seen:
            self.problem(json_path, f"images[id={image_id}]", f"id also used by {seen[image_id]!r:.60}: "
                         f"{name!r:.60} skipped (its annotations go to the first image of this id)")
            return True
        if name_seen:
            self.problem(json_path, f"images[id={image_id}].file_name", f"{name!r:.60} is listed twice: "
                         "the first entry is kept")
            return True
        if image_id is not None:
            seen[image_id] = name
        return False

    def _repeated_annotation_ids(self, json_path: Path, anns: list[dict]) -> None:
        counts: dict[Any, int] = {}
        for a in anns:
            if "id" in a:
                counts[a["id"]] = counts.get(a["id"], 0) + 1
        for aid, n in counts.items():
            if n > 1:
                self.problem(json_path, f"annotations[id={aid}]", f"id used by {n} annotations: all kept "
                             "(problems naming this id are ambiguous)")

    def _add(self, json_path: Path, img: dict, anns: list[dict]) -> None:
        missing = [k for k in ("id", "file_name", "height", "width") if k not in img]
        if missing:
            self.problem(json_path, f"images[id={img.get('id')}].{missing[0]}", "missing: image skipped")
            return
        if not isinstance(img["file_name"], str) or not img["file_name"].strip() or "\x00" in img["file_name"]:
            self.problem(json_path, f"images[id={img['id']}].file_name", f"{img['file_name']!r:.60} is not a "
                         "file name: image skipped")
            return
        if not isinstance(img["id"], int):
            self.problem(json_path, f"images[id={img['id']}].id", "not an integer: image skipped")
            return
        path = img["_folder"] / img["file_name"]
        if not is_file(path):
            self.problem(path, "image", f"file not found (images[id={img['id']}] of {json_path.name}): "
                         "sample skipped")
            return
        h, w = _size(img.get("height")), _size(img.get("width"))
        if h is None or w is None:
            self.problem(json_path, f"images[id={img['id']}].{'height' if h is None else 'width'}",
                         f"height={img['height']!r:.20} width={img['width']!r:.20}: not a size in pixels "
                         f"(1..{MAX_SIDE}): image skipped")
            return
        self._size_of_current = (h, w)
        boxes, labels, segms, kps = [], [], [], []
        for a in anns:
            if a.get("iscrowd"):
                self.n_crowd += 1
                continue
            parsed = self._annotation(json_path, a, h, w)
            if parsed is not None:
                boxes.append(parsed[0])
                labels.append(parsed[1])
                segms.append(parsed[2])
                kps.append(parsed[3])
        self.files.append(str(path))
        self.files_json.append(str(json_path))
        self.sizes.append((h, w))
        self.image_ids.append(int(img["id"]))
        self.boxes.append(np.asarray(boxes, np.float32).reshape(-1, 4))
        self.labels.append(np.asarray(labels, np.int64))
        self.segms.append(segms)
        k = len(self.keypoint_names)
        self.keypoints.append(np.asarray(kps, np.float32).reshape(-1, k, 3) if k else None)

    def _annotation(self, json_path: Path, a: dict, h: int, w: int):
        field = f"annotations[id={a.get('id')}]"
        cid = a.get("category_id")
        if cid not in self.label_of:
            self.problem(json_path, f"{field}.category_id", f"unknown label {cid!r}: dropped")
            return None
        bbox = a.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
            self.problem(json_path, f"{field}.bbox", f"{bbox!r:.80} is not [x, y, w, h] of finite numbers: dropped")
            return None
        x, y, bw, bh = (float(v) for v in bbox)
        if bw <= 0 or bh <= 0:
            self.problem(json_path, f"{field}.bbox", f"[{x:g}, {y:g}, {bw:g}, {bh:g}] has zero area: dropped")
            return None
        box = [min(max(x, 0.0), w), min(max(y, 0.0), h), min(max(x + bw, 0.0), w), min(max(y + bh, 0.0), h)]
        if box[2] <= box[0] or box[3] <= box[1]:
            self.problem(json_path, f"{field}.bbox", f"box lies outside the {w}x{h} image: dropped")
            return None
        if x < 0 or y < 0 or x + bw > w + 0.5 or y + bh > h + 0.5:  # half a pixel of rounding is fine
            self.problem(json_path, f"{field}.bbox", f"box reaches outside the {w}x{h} image: clipped")
        return box, self.label_of[cid], self._segmentation(json_path, field, a), self._keypoints(json_path, field, a)

    def _segmentation(self, json_path: Path, field: str, a: dict) -> Any:
        seg = a.get("segmentation")
        if not self.has_masks:
            return None
        if isinstance(seg, dict) and "counts" in seg:
            why = _rle_problem(seg, self._size_of_current)
            if why is None:
                return seg
            self.problem(json_path, f"{field}.segmentation", f"RLE {why}: empty mask")
            return []
        if isinstance(seg, list) and seg:
            polys = [p for p in seg if isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0
                     and all(_is_number(v) for v in p)]
            # A vertex far outside the image (a typo'd 1e9) makes the rasteriser walk a huge
            # polygon: minutes and gigabytes for one mask. One image side of slack is plenty.
            h, w = self._size_of_current
            far = [p for p in polys if any(not -w <= x <= 2 * w for x in p[0::2])
                   or any(not -h <= y <= 2 * h for y in p[1::2])]
            kept = [p for p in polys if p not in far]
            then = "dropped" if kept else "empty mask"
            if len(polys) < len(seg):
                self.problem(json_path, f"{field}.segmentation", "polygon with fewer than 3 points (or not "
                             f"an even list of finite numbers): {then}")
            if far:
                self.problem(json_path, f"{field}.segmentation", f"polygon vertex more than one image side "
                             f"outside the {w}x{h} image: {'polygon dropped' if kept else 'empty mask'}")
            return kept
        self.problem(json_path, f"{field}.segmentation", "missing: empty mask")
        return []

    def _keypoints(self, json_path: Path, field: str, a: dict) -> list[list[float]] | None:
        k = len(self.keypoint_names)
        if not k:
            return None
        raw = a.get("keypoints")
        if not raw:
            return [[0.0, 0.0, 0.0]] * k
        if not (isinstance(raw, list) and all(_is_number(v) for v in raw)):
            self.problem(json_path, f"{field}.keypoints", f"{raw!r:.60} is not a list of finite numbers: unlabelled")
            return [[0.0, 0.0, 0.0]] * k
        if len(raw) != 3 * k:
            self.problem(json_path, f"{field}.keypoints", f"{len(raw)} numbers, expected {3 * k}: unlabelled")
            return [[0.0, 0.0, 0.0]] * k
        return np.asarray(raw, np.float32).reshape(k, 3).tolist()

    def annotation(self, index: int) -> dict[str, Any]:
        out = {"boxes": self.boxes[index], "labels": self.labels[index]}
        if self.keypoints[index] is not None:
            out["keypoints"] = self.keypoints[index]
        return out

    def decode_masks(self, index: int) -> Tensor:
        """``uint8 [N, H, W]`` masks of sample ``index`` (faster-coco-eval's RLE decoder)."""
        from faster_coco_eval.core import mask as mask_utils

        h, w = self.sizes[index]
        out = np.zeros((len(self.segms[index]), h, w), np.uint8)
        for i, seg in enumerate(self.segms[index]):
            if seg:
                try:
                    out[i] = mask_utils.decode(mask_utils.segmToRle(seg, w, h))
                except (ValueError, TypeError, OverflowError, RuntimeError) as e:  # an RLE that lies
                    raise ValueError(f"{self.files_json[index]}: segmentation of {Path(self.files[index]).name} "
                                     f"(instance {i}): cannot decode ({e})") from None
        return torch.from_numpy(out)

    def load(self, index: int) -> tuple[Tensor, dict[str, Any]]:
        image = read_image(self.files[index])
        h, w = image.shape[-2:]
        target: dict[str, Any] = {
            "boxes": torch.from_numpy(self.boxes[index].copy()),
            "labels": torch.from_numpy(self.labels[index].copy()),
            "image_id": self.image_ids[index],
            "orig_size": torch.tensor([h, w], dtype=torch.int64),
        }
        if self.has_masks:
            jh, jw = self.sizes[index]
            if (jh, jw) != (h, w):  # checked before the masks are allocated at the json's size
                raise SampleSkipped(Problem(self.files[index], "size", f"image is {w}x{h} but the json "
                                            f"says {jw}x{jh} (its masks would not fit): sample skipped"))
            target["masks"] = self.decode_masks(index)
        if self.keypoints[index] is not None:
            target["keypoints"] = torch.from_numpy(self.keypoints[index].copy())
        return image, target
