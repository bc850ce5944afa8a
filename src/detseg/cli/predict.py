"""The ``detseg predict`` verb: a checkpoint run over image files, folders, glob patterns and videos.

    detseg predict CHECKPOINT INPUT... --out DIR [--conf 0.3] [--save-json] [--device cpu]

Images give one drawn PNG each; a video (decoded frame by frame with OpenCV's ``VideoCapture``)
gives one annotated video (``mp4v`` in an ``.mp4``, the input's frame rate and size). One progress
bar with an ETA runs over every image and frame. ``predictions.json`` always lists each image or
frame with its id, source file, frame index and prediction; ``--save-json`` adds the COCO results
format for instance tasks (``coco_results.json``, which ``COCO.loadRes`` reads, plus
``coco_images.json`` mapping its ``image_id`` values to files and frames) or uint8 PNG label maps for
semantic models.

Output names come from the input file names, sanitised (only letters, digits, ``.``, ``_`` and
``-``; no leading dot; so nothing is written outside ``--out``) and made unique (``a/img.png`` and
``b/img.png`` give ``img.png`` and ``img_2.png``; ``predictions.json`` records which is which),
never the name of an input file lying in ``--out`` itself.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any, Iterator

EPILOG = """\
outputs in --out (names from the inputs, sanitised and made unique):
  NAME.png            each image with its prediction drawn
  NAME.mp4            each video, annotated (mp4v, the input's fps and size)
  predictions.json    every image/frame: image_id, file, frame (null for images), output, prediction
  with --save-json, detection-like tasks:
  coco_results.json   COCO results format (image_id, category_id, bbox xywh, score[, segmentation, keypoints])
  coco_images.json    {"images": [{"id", "file_name", "frame", "width", "height"}], "categories": [...]}
  with --save-json, semantic models:
  NAME_label.png, NAME_labels/frame_000000.png   uint8 label maps (pixel value = class index)

exit status: 0 when every input was predicted; 1 when some inputs could not be read (each is named
on stderr and skipped, the others are still predicted); 2 on an error that stops the run (a missing
input or checkpoint, no inputs at all).

examples:
  detseg predict best.pt photos/ --out preds/
  detseg predict best.pt 'photos/**/*.jpg' street.mp4 --out preds/ --save-json
"""

_UNSAFE = re.compile(r"[^\w.-]+")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``predict CHECKPOINT INPUT... --out DIR [--conf] [--save-json] [--device]``."""
    p = subparsers.add_parser(
        "predict", help="predict on images, folders, globs and videos; drawn PNGs / annotated videos + JSON",
        description="Run a checkpoint over images and videos; write drawn images, annotated videos "
                    "and machine-readable results.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="a checkpoint (.pt) or a file of `detseg export` (.onnx)")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image or video files, folders (searched recursively), or quoted glob patterns "
                        "such as 'photos/*.jpg' (expanded by detseg; ** searches subfolders)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--device", default="cpu")
    p.add_argument("--conf", type=float, default=0.3, help="score threshold for drawn/saved detections")
    p.add_argument("--save-json", action="store_true",
                   help="also write coco_results.json + coco_images.json (detections) or PNG label maps "
                        "(semantic)")
    p.add_argument("-o", "--opt", action="append", default=[], metavar="KEY=VALUE",
                   help="override a model option that keeps the weights (e.g. crf=true)")
    return p


def safe_stem(name: str) -> str:
    """A file stem that stays inside the output folder: ``"../../etc/passwd"`` -> ``"etc_passwd"``.

    Runs of anything but letters, digits, ``.``, ``_``, ``-`` become ``_``; leading/trailing dots
    and underscores go (no ``..``, no hidden files); at most 100 characters; never empty.
    """
    s = _UNSAFE.sub("_", name).strip("._")
    return s[:100] or "image"


class OutputNames:
    """Unique, safe output stems: every file a stem claims (``x.png``, ``x_label.png``...) is free.

    File names are compared case-insensitively (macOS and Windows folders), so two inputs never
    write the same output file whatever their folders and cases.
    """

    def __init__(self) -> None:
        self.used: set[str] = set()

    def claim(self, path: Path, suffixes: tuple[str, ...]) -> str:
        base = safe_stem(path.stem)
        stem, n = base, 1
        while any((stem + s).lower() in self.used for s in suffixes):
            n += 1
            stem = f"{base}_{n}"
        self.used.update((stem + s).lower() for s in suffixes)
        return stem


def run(args: argparse.Namespace) -> int:
    """Predict every input; 0 when all were read, 1 when some were skipped (named on stderr)."""
    from tqdm import tqdm

    from detseg.api import load
    from detseg.cli.common import parse_opts
    from detseg.io import IMAGE_EXTS, VIDEO_EXTS, expand_inputs, write_json

    files = expand_inputs(args.inputs, exts=IMAGE_EXTS + VIDEO_EXTS)
    model = load(args.checkpoint, device=args.device, **parse_opts(args.opt))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    semantic = model.task == "semantic"
    labels = args.save_json and semantic
    names = OutputNames()
    # --out may be an input folder: its input files are never overwritten by an output.
    names.used.update(f.name.lower() for f in files if f.resolve().parent == out.resolve())
    skipped: list[str] = []

    # The bar's total needs every video's frame count; unopenable videos are skipped here.
    jobs: list[tuple[Path, int | None]] = []
    for f in files:
        if f.suffix.lower() in VIDEO_EXTS:
            count = _frame_count(f)
            if count is None:
                skipped.append(f"{f}: video: cannot open or decode")
                print(f"skipped {skipped[-1]}", file=sys.stderr)
                continue
            jobs.append((f, count))
        else:
            jobs.append((f, None))
    known = all(c is None or c > 0 for _, c in jobs)
    total = sum(1 if c is None else c for _, c in jobs) if known else None

    records: list[dict[str, Any]] = []
    coco: list[dict[str, Any]] = []
    images: list[dict[str, Any]] = []

    def add(r, f: Path, frame: int | None, output: str, label_png: str | None) -> None:
        image_id = len(records) + 1
        h, w = (int(v) for v in r.image.shape[-2:])
        records.append({"image_id": image_id, "file": str(f), "frame": frame, "output": output,
                        **({"label_png": label_png} if label_png else {}), **r.to_dict()})
        images.append({"id": image_id, "file_name": str(f), "frame": frame, "width": w, "height": h})
        if not semantic:
            coco.extend(r.to_coco(image_id))

    bar = tqdm(total=total, desc="predict", unit="img", dynamic_ncols=True)
    for f, count in jobs:
        if count is None:
            stem = names.claim(f, (".png", "_label.png") if labels else (".png",))
            try:
                (r,) = model.predict([str(f)], conf=args.conf)
            except ValueError as e:  # a corrupt file: say so, keep going with the others
                skipped.append(str(e))
                bar.write(f"skipped {e}", file=sys.stderr)
                bar.update(1)
                continue
            r.save(out / f"{stem}.png", score_thresh=args.conf)
            label_png = f"{stem}_label.png" if labels else None
            if label_png:
                r.save_label_png(out / label_png)
            add(r, f, None, f"{stem}.png", label_png)
            bar.update(1)
        else:
            stem = names.claim(f, (".mp4", "_labels") if labels else (".mp4",))
            n = _predict_video(model, f, out, stem, args.conf, labels, add, bar)
            if n == 0:
                skipped.append(f"{f}: video: no frame could be decoded")
                bar.write(f"skipped {skipped[-1]}", file=sys.stderr)
    bar.close()

    write_json(out / "predictions.json", records)
    if args.save_json and not semantic:
        write_json(out / "coco_results.json", coco)
        categories = [{"id": i, "name": c} for i, c in enumerate(model.classes, start=1)]
        write_json(out / "coco_images.json", {"images": images, "categories": categories})
    note = f", {len(skipped)} input(s) skipped" if skipped else ""
    print(f"{len(records)} image(s)/frame(s) -> {out}{note}")
    return 1 if skipped else 0


def _frame_count(path: Path) -> int | None:
    """The container's frame count (0 when it does not say), or ``None`` if OpenCV cannot open it."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            return None
        return max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0), 0)
    finally:
        cap.release()


def _frames(path: Path) -> Iterator[tuple[int, Any]]:
    """``(index, RGB uint8 [H, W, 3])`` for each decodable frame of a video, from frame 0."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        i = 0
        while True:
            ok, bgr = cap.read()
            if not ok:
                return
            yield i, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            i += 1
    finally:
        cap.release()


def _predict_video(model, path: Path, out: Path, stem: str, conf: float, labels: bool, add, bar) -> int:
    """Annotate every frame of ``path`` into ``out/stem.mp4``; returns the number of frames.

    The video is written to a temporary ``.tmp.mp4`` and renamed at the end (nothing is left
    behind when no frame decodes or the run is interrupted). MPEG-4 Part 2 (``mp4v``) needs even
    sizes: OpenCV's encoder drops the last row/column of an odd-sized video.
    """
    import cv2

    from detseg.io import atomic_path

    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    fps = fps if fps and fps == fps and fps > 0 else 25.0  # containers without a rate: PAL's 25
    n = 0
    writer = None
    try:
        with atomic_path(out / f"{stem}.mp4", suffix=".tmp.mp4") as tmp:
            try:
                for i, rgb in _frames(path):
                    (r,) = model.predict([rgb], conf=conf)
                    if writer is None:  # the first frame fixes the size; later frames are fitted to it
                        h, w = rgb.shape[:2]
                        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
                        if not writer.isOpened():
                            raise RuntimeError(f"{path}: video: OpenCV cannot write mp4v to {tmp}")
                    drawn = r.plot(score_thresh=conf)
                    if drawn.shape[:2] != (h, w):  # small frames are drawn enlarged: back to the video's size
                        drawn = cv2.resize(drawn, (w, h), interpolation=cv2.INTER_AREA)
                    writer.write(cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
                    label_png = f"{stem}_labels/frame_{i:06d}.png" if labels else None
                    if label_png:
                        r.save_label_png(out / label_png)
                    r.name = f"{path.name}#{i}"
                    add(r, path, i, f"{stem}.mp4", label_png)
                    bar.update(1)
                    n += 1
            finally:
                if writer is not None:
                    writer.release()
            if n == 0:
                raise _NoFrames  # leaves the with block by an exception: the temporary file goes
    except _NoFrames:
        return 0
    return n


class _NoFrames(Exception):
    """Internal: a video opened but gave no frame (its temporary file is removed)."""
