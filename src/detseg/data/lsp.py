"""Leeds Sports Pose (LSP) and LSP-extended (LSPET) reader: a joints file + a folder of images.

Johnson & Everingham, "Clustered Pose and Nonlinear Appearance Models for Human Pose Estimation",
BMVC 2010 (LSP, 2000 images) and "Learning Effective Human Pose Estimation from Inaccurate
Annotation", CVPR 2011 (LSPET, 10,000 images). 14 joints in the order of
:data:`detseg.structures.LSP_KEYPOINTS`; one person per image.

The joints file is ``joints.mat`` or the same array as ``.npy``, ``.json`` or ``.csv`` (found by
content: :mod:`detseg.data.joints`, which also reads the row-per-image ``(N, 14, 3)`` layout); the
images are ``images/`` beside it, else the one sub-folder of images, else the file's own folder.
The matrix comes in two original layouts, told apart by its shape, whose third row means opposite
things (as e.g. HMR's ``lsp_to_tfrecords.py`` also handles it):

- LSP ``(3, 14, N)``, images ``im0001.jpg``: row 3 is an *occlusion* flag, 0 = visible,
  1 = occluded. Every joint of LSP was clicked, occluded ones at their estimated position, so an
  occluded joint becomes ``v = 1`` (labelled, occluded — COCO's meaning) and a visible one ``v = 2``.
- LSPET ``(14, 3, N)``, images ``im00001.jpg``: row 3 is a *visibility* flag, 1 = visible,
  0 = invisible; invisible joints hold placeholder coordinates (often outside the image), so they
  become ``v = 0`` (not labelled: masked from losses and metrics), visible ones ``v = 2``.

Coordinates are used as written. A labelled joint outside the image is kept and reported as a
Problem; one whose coordinates are NaN or infinite is unlabelled (``v = 0``), a Problem. An
unlabelled joint's placeholder coordinates (LSPET's junk far outside the image) are ignored: set
to 0, left out of the person box, no Problem. The person box is the extent of the labelled
joints plus a margin (15% of its longer side; the joints stop short of the head's and feet's
outline), clipped to the image. Annotation ``i`` belongs to the image numbered ``i + 1`` (file
numbers, so a missing file drops only its sample); where the names carry no such numbers (renamed
files, a slice of a larger set) and the counts match, images pair with the joints in sorted order
(a Problem says so); a json/csv that lists image names pairs by name. The counts of images and
annotations are checked.

Splits: the original 2000-image LSP has its own (first 1000 train, last 1000 test); LSPET and
subsets have none -> the hash split of :mod:`detseg.data.split`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from detseg.data.base import Transform, image_size, read_image
from detseg.data.joints import JOINT_SUFFIXES, find_joints, load_joints
from detseg.data.split import SplitReader, child, header_error, list_images, subdirs
from detseg.structures import LSP_FLIP_PAIRS, LSP_KEYPOINTS

BOX_MARGIN = 0.15
NUMBER = re.compile(r"(\d+)$")
LSP_IMAGE_EXTS = (".jpg", ".jpeg", ".png")


def image_folder(folder: Path, n: int) -> Path:
    """The image folder beside a joints file in ``folder``: ``images/``, else the one sub-folder
    of images (the one holding ``n`` images where several do), else ``folder`` itself."""
    named = child(folder, "images")
    if named is not None:
        return named
    with_images = [d for d in subdirs(folder).values() if _n_images(d)]
    if len(with_images) > 1:
        with_images = [d for d in with_images if _n_images(d) == n] or with_images
    return with_images[0] if with_images and not _n_images(folder) else folder


def _n_images(folder: Path) -> int:
    try:
        return sum(1 for p in folder.iterdir() if p.suffix.lower() in LSP_IMAGE_EXTS)
    except OSError:
        return 0


def lsp_source(root: Path) -> tuple[Path, Path] | None:
    """``(joints file, image folder)`` of an LSP-style folder or joints file, else None."""
    root = Path(root)
    joints = root if root.is_file() else find_joints(root)
    if joints is None:
        return None
    folder = image_folder(joints.parent, -1)  # the count is only known once the file is read
    return (joints, folder) if _n_images(folder) else None


def person_box(kps: np.ndarray, h: int, w: int) -> np.ndarray:
    """``[14, 3]`` joints -> ``float32 [4]`` xyxy box around the labelled ones plus a margin."""
    pts = kps[kps[:, 2] > 0, :2]
    x0, y0 = pts.min(0)
    x1, y1 = pts.max(0)
    m = BOX_MARGIN * max(x1 - x0, y1 - y0, 1.0)
    box = np.array([x0 - m, y0 - m, x1 + m, y1 + m], np.float32)
    return np.clip(box, 0, [w, h, w, h]).astype(np.float32)


class LSPDataset(SplitReader):
    """One person per image: ``boxes`` [1, 4], ``labels`` [1] (person), ``keypoints`` [1, 14, 3]."""

    task = "pose"
    target_keys = ("boxes", "labels", "keypoints")

    def __init__(self, root: str | Path, split: str = "train", val_fraction: float = 0.2,
                 seed: int = 0, transforms: Transform | None = None, joints: Path | None = None,
                 images: Path | None = None):
        super().__init__(root, split, val_fraction, seed, transforms)
        if joints is None:
            found = lsp_source(Path(root))
            if found is None:
                raise ValueError(f"{root}: no LSP joints file ({', '.join(JOINT_SUFFIXES)}) with an "
                                 "image folder beside it found")
            joints = found[0]
        mat = Path(joints)
        kps, self.layout, names = load_joints(mat)
        images_dir = Path(images) if images is not None else image_folder(mat.parent, len(kps))
        self.name = "lsp" if self.layout == "lsp" else "lspet"
        self.classes = ["person"]
        self.seg_classes = ["background", "person"]
        self.keypoint_names = list(LSP_KEYPOINTS)
        self.flip_pairs = [tuple(p) for p in LSP_FLIP_PAIRS]
        by_index = self._match_images(mat, images_dir, len(kps), names)
        index_of = {by_index[i].name: i for i in sorted(by_index)}
        keys = list(index_of)
        own = None
        if self.layout == "lsp" and len(kps) == 2000:  # the original release's split
            own = {"train": [k for k, i in index_of.items() if i < 1000],
                   "test": [k for k, i in index_of.items() if i >= 1000]}
        self.keypoints: list[np.ndarray] = []
        self.boxes: list[np.ndarray] = []
        self.image_ids: list[int] = []
        self.index_samples(self.select(keys, own),
                           lambda k: self._add(by_index[index_of[k]], kps[index_of[k]], index_of[k]))

    def _match_images(self, mat: Path, folder: Path, n: int, names: list[str] | None = None) -> dict[int, Path]:
        """Annotation index -> image file: by the names the joints file lists; else by the number
        in the file name (``im0001`` is index 0); else, when the numbers do not fit and the counts
        match (a renamed set, a slice of a larger one), in sorted order, with a Problem saying so."""
        images = [p for p in list_images(folder) if p.suffix.lower() in LSP_IMAGE_EXTS]
        if names is not None:
            by_name = {p.name: p for p in images} | {p.stem: p for p in images}
            by_index = {i: by_name[m] for i, m in enumerate(names) if m in by_name}
            lost = [m for m in names if m not in by_name]
            if lost:
                self.problem(mat, "images", f"{len(lost)} listed image(s) not in {folder} (first: "
                             f"{lost[0]}): skipped")
            return by_index
        numbers = [NUMBER.search(p.stem) for p in images]
        by_index = {}
        if images and all(numbers):
            by_index = {int(m.group(1)) - 1: p for m, p in zip(numbers, images)}  # type: ignore[union-attr]
        if not by_index or (len(images) == n and any(not 0 <= i < n for i in by_index)):
            if len(images) == n:
                self.problem(mat, "joints", f"the image names in {folder} do not follow LSP's numbering "
                             f"(im0001 = the first joints, e.g. {images[0].name}): {n} images paired "
                             "with the joints in sorted order")
            by_index = dict(enumerate(images))
        extra = sorted(i for i in by_index if not 0 <= i < n)
        missing = [i for i in range(n) if i not in by_index]
        if extra or missing:
            self.problem(mat, "joints", f"{n} annotations but {len(images)} images in {folder}"
                         + (f"; {len(missing)} annotation(s) without image (first: index {missing[0]})"
                            if missing else "")
                         + (f"; {len(extra)} image(s) without annotation (first: {by_index[extra[0]].name})"
                            if extra else "") + ": those are skipped")
        return {i: p for i, p in by_index.items() if 0 <= i < n}

    def _add(self, path: Path, kps: np.ndarray, index: int) -> None:
        try:
            h, w = image_size(path)
        except ValueError as e:
            self.problem(path, "image", f"{header_error(e)}: sample skipped")
            return
        junk = (kps[:, 2] > 0) & ~np.isfinite(kps[:, :2]).all(1)
        if junk.any():  # a NaN/inf would reach the box and the loss: unlabel the joint
            kps = kps.copy()
            for k in np.nonzero(junk)[0]:
                self.problem(path, f"joints[{LSP_KEYPOINTS[k]}]", f"labelled point ({kps[k, 0]}, {kps[k, 1]}) "
                             "is not finite: unlabelled (v = 0)")
            kps[junk] = 0.0
        labelled = kps[:, 2] > 0
        if not labelled.any():
            self.problem(path, f"joints[:, :, {index}]", "no labelled joint: sample skipped")
            return
        for k in np.nonzero(labelled)[0]:
            x, y = kps[k, :2]
            if not (0 <= x <= w and 0 <= y <= h):
                self.problem(path, f"joints[{LSP_KEYPOINTS[k]}]",
                             f"labelled point ({x:.2f}, {y:.2f}) outside the {w}x{h} image: kept")
        self.files.append(str(path))
        self.sizes.append((h, w))
        self.image_ids.append(index)
        self.keypoints.append(kps)
        self.boxes.append(person_box(kps, h, w)[None])

    def annotation(self, index: int) -> dict[str, Any]:
        return {"boxes": self.boxes[index], "labels": np.ones(1, np.int64),
                "keypoints": self.keypoints[index][None]}

    def load(self, index: int) -> tuple[Tensor, dict[str, Any]]:
        image = read_image(self.files[index])
        h, w = image.shape[-2:]
        kps = torch.from_numpy(self.keypoints[index].copy())[None]
        kps[kps[..., 2] == 0, :2] = 0.0  # placeholder coordinates mean nothing
        target = {
            "boxes": torch.from_numpy(self.boxes[index].copy()),
            "labels": torch.ones(1, dtype=torch.int64),
            "keypoints": kps,
            "image_id": self.image_ids[index],
            "orig_size": torch.tensor([h, w], dtype=torch.int64),
        }
        return image, target
