"""``detseg data check PATH``: what a dataset holds and every problem found while reading it.

The report lists the sniffed format and root, images per split (and where the split comes from),
classes, objects per class (pixels per class for semantic labels, joint counts for keypoints),
image sizes, and every :class:`~detseg.structures.Problem` with its file and field: missing or
corrupt images, zero-area or out-of-image boxes, unknown labels, label/image size mismatches,
keypoints outside the image. Every image is decoded in full (in parallel threads, with a progress
bar) to find empty, non-image, truncated and corrupt files and sizes other than the annotation's;
semantic label PNGs are decoded once to count pixels and find unknown values.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from detseg.data import is_shapes_spec, open_data
from detseg.data.base import read_image
from detseg.data.split import SPLITS, header_error
from detseg.structures import IGNORE_INDEX, Problem

DECODE_WORKERS = 4  # threads decoding images for the check
FORMAT_NAMES = {
    "coco": "COCO json", "voc": "PASCAL VOC", "seg_folders": "image/label PNG folders",
    "lsp": "LSP/LSPET joints", "pennfudan": "Penn-Fudan",
}


def check_dataset(spec: str | Path | None, format: str | None = None, val_fraction: float = 0.2,
                  seed: int = 0, images: str | Path | None = None, annotations: str | Path | None = None,
                  workers: int = DECODE_WORKERS, progress: bool = False) -> dict[str, Any]:
    """Read every annotation and decode every image of the data at ``spec`` (a path, a dataset
    yaml, or ``images``/``annotations`` named explicitly); return the report dict.

    Keys: ``format``, ``root``, ``task``, ``n_images``, ``splits`` ``{name: n_images}``,
    ``split_source``, ``classes``, ``classes_source``, ``objects_per_class``, ``n_objects``,
    ``n_objects_in_files``, ``image_sizes``, ``extra`` (format-specific counts), ``problems``
    (list of :class:`Problem`), ``seconds``.
    """
    start = time.perf_counter()
    if spec is not None and is_shapes_spec(spec) and images is None and annotations is None:
        return _check_shapes(str(spec), start)
    ds, _, fmt = open_data(spec, "all", val_fraction, seed, format=format, images=images,
                           annotations=annotations)
    root = ds.root
    decode_images(ds, workers=workers, progress=progress)
    kept = set(ds.keys)  # type: ignore[attr-defined]
    splits = {s: sum(k in kept for k in ds.split_keys[s]) for s in SPLITS  # type: ignore[attr-defined]
              if s in ds.split_keys}  # type: ignore[attr-defined]
    report: dict[str, Any] = {
        "format": fmt, "root": str(root), "task": ds.task, "n_images": len(ds), "splits": splits,
        "split_source": ds.split_source,  # type: ignore[attr-defined]
        "classes": list(ds.seg_classes if ds.task == "semantic" else ds.classes),
        "classes_source": getattr(ds, "classes_source", "annotation"),
        "image_sizes": size_summary(ds.sizes),  # type: ignore[attr-defined]
        "extra": {},
    }
    if ds.task == "semantic":
        report["objects_per_class"] = pixel_counts(ds)
        report["n_objects"] = None
    else:
        labels = (ds.annotation(i)["labels"] for i in range(len(ds)))  # type: ignore[attr-defined]
        counts = Counter(int(v) for lab in labels for v in lab)
        report["objects_per_class"] = {c: counts.get(i + 1, 0) for i, c in enumerate(ds.classes)}
        report["n_objects"] = sum(counts.values())
    report["n_objects_in_files"] = getattr(ds, "n_raw_objects", report["n_objects"])
    report["n_crowd"] = getattr(ds, "n_crowd", 0)
    if report["n_crowd"]:
        report["extra"]["crowd annotations (left out of targets)"] = ds.n_crowd  # type: ignore[attr-defined]
    if ds.keypoint_names:
        report["extra"].update(keypoint_counts(ds))
    report["problems"] = list(ds.problems)
    report["seconds"] = round(time.perf_counter() - start, 2)
    return report


def decode_one(path: str) -> tuple[tuple[int, int] | None, str | None]:
    """Decode one image fully (not only its header): ``((H, W), None)`` or ``(None, what is wrong)``."""
    try:
        image = read_image(path, strict=True)
    except ValueError as e:
        return None, header_error(e)
    return (int(image.shape[1]), int(image.shape[2])), None


def decode_images(ds, workers: int = DECODE_WORKERS, progress: bool = False) -> None:
    """Decode every image of ``ds`` in parallel; a Problem names each one that is empty, not an
    image, truncated, corrupt, or of another size than its annotation says.

    Threads suffice: PIL releases the GIL while it decodes.
    """
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    files = list(ds.files)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(tqdm(pool.map(decode_one, files), total=len(files), desc="decode images",
                            disable=not progress, dynamic_ncols=True, mininterval=0.5))
    for i, (path, (hw, error)) in enumerate(zip(files, results)):
        if error is not None:
            ds.problem(path, "image", error)
        elif hw != tuple(ds.sizes[i]):
            ds.problem(path, "size", f"image is {hw[1]}x{hw[0]} but the annotation says "
                       f"{ds.sizes[i][1]}x{ds.sizes[i][0]}")
    ds.headers_checked = True


def size_summary(sizes: list[tuple[int, int]]) -> dict[str, Any]:
    """Widths and heights (min, max), the most common ``WxH`` and how many share it."""
    if not sizes:
        return {}
    hs, ws = np.array([s[0] for s in sizes]), np.array([s[1] for s in sizes])
    (h, w), n = Counter(map(tuple, sizes)).most_common(1)[0]
    return {"width": [int(ws.min()), int(ws.max())], "height": [int(hs.min()), int(hs.max())],
            "most_common": f"{w}x{h}", "most_common_count": n, "distinct": len(set(map(tuple, sizes)))}


def pixel_counts(ds) -> dict[str, float]:
    """Fraction of labelled pixels per class (decodes every label); unknown values -> Problem."""
    total = np.zeros(256, np.int64)
    known = ds.value_map != IGNORE_INDEX
    known[IGNORE_INDEX] = True
    for i in range(len(ds)):
        hist = np.bincount(ds.read_label(i).ravel(), minlength=256)
        bad = np.nonzero((hist > 0) & ~known & _not_void(ds))[0]
        if len(bad):
            ds.problem(ds.label_files[i], "label", f"values {bad.tolist()} are not classes "
                       f"(0..{len(ds.seg_classes) - 1}): ignored")
        total += hist
    mapped = np.zeros(len(ds.seg_classes), np.int64)
    for value, cls in enumerate(ds.value_map):
        if cls != IGNORE_INDEX:
            mapped[cls] += total[value]
    denom = max(int(total.sum()), 1)
    out = {c: round(float(mapped[i]) / denom, 4) for i, c in enumerate(ds.seg_classes)}
    out["(ignored)"] = round(1.0 - float(mapped.sum()) / denom, 4)
    return out


def _not_void(ds) -> np.ndarray:
    """Label values that are a known 'void' of the layout (SegNet CamVid's 11): not a problem."""
    mask = np.ones(256, bool)
    if str(getattr(ds, "classes_source", "")).startswith("SegNet CamVid"):
        mask[11] = False
    return mask


def keypoint_counts(ds) -> dict[str, int]:
    kps = [ds.annotation(i)["keypoints"] for i in range(len(ds))]
    if not kps:
        return {}
    v = np.concatenate([k.reshape(-1, 3)[:, 2] for k in kps])
    return {"keypoints visible (v=2)": int((v == 2).sum()), "keypoints occluded (v=1)": int((v == 1).sum()),
            "keypoints not labelled (v=0)": int((v == 0).sum())}


def _check_shapes(spec: str, start: float) -> dict[str, Any]:
    from detseg.data import build_dataset

    train, val = build_dataset(spec, split="train"), build_dataset(spec, split="val")
    report = {"format": "shapes", "root": spec, "task": "every task (by mode)",
              "classes_source": "built in", "split_source": "generated from different seeds",
              "n_objects_in_files": None, **train.stats()}
    report["classes"] = list(train.classes)
    report["splits"] = {"train": len(train), "val": len(val)}
    report["n_images"] = len(train) + len(val)
    report["seconds"] = round(time.perf_counter() - start, 2)
    return report


def format_report(report: dict[str, Any]) -> str:
    """The report as the text ``detseg data check`` prints (every problem on its own line)."""
    lines = [f"format    {report['format']} ({FORMAT_NAMES.get(report['format'], report['format'])})",
             f"root      {report['root']}",
             f"task      {report['task']}",
             f"images    {report['n_images']}  (" + ", ".join(f"{k} {v}" for k, v in report["splits"].items())
             + f"; split: {report['split_source']})"]
    classes = report["classes"]
    lines.append(f"classes   {len(classes)}: {', '.join(classes)}  ({report['classes_source']})")
    lines += _objects_lines(report)
    s = report["image_sizes"]
    if s:
        lines.append(f"sizes     width {s['width'][0]}-{s['width'][1]}, height {s['height'][0]}-{s['height'][1]}; "
                     f"most common {s['most_common']} ({s['most_common_count']} images, {s['distinct']} distinct)")
    for k, v in report["extra"].items():
        lines.append(f"          {k}: {v}")
    problems: list[Problem] = [Problem(*p) for p in report["problems"]]
    if problems:
        by_field = Counter(_field_kind(p.field) for p in problems)
        lines.append(f"problems  {len(problems)} (" + ", ".join(f"{n} x {f}" for f, n in by_field.most_common()) + ")")
        lines += [f"  {p}" for p in problems]
    else:
        lines.append("problems  none")
    lines.append(f"checked in {report['seconds']:.1f} s")
    return "\n".join(lines)


def _objects_lines(report: dict[str, Any]) -> list[str]:
    per = report["objects_per_class"]
    if report["n_objects"] is None:
        return ["pixels    " + ", ".join(f"{c} {v:.3f}" for c, v in per.items())] if per else []
    dropped = (report["n_objects_in_files"] or 0) - report["n_objects"] - report.get("n_crowd", 0)
    note = f" ({report['n_objects_in_files']} in the files, {dropped} dropped: see problems)" if dropped > 0 else ""
    return [f"objects   {report['n_objects']}{note}: " + ", ".join(f"{c} {n}" for c, n in per.items())]


def _field_kind(field: str) -> str:
    """``object[12].bndbox`` -> ``bndbox``: problems grouped by the kind of field."""
    return field.split(".")[-1].split("[")[0] or field
