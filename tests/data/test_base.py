"""Image files as they come, read by detseg.data.base: every mode to 8-bit RGB, EXIF orientation
ignored (stored pixels), 1x1 images, and PIL's decompression-bomb guard as a named problem."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from detseg.data import build_dataset
from detseg.data.base import image_size, read_image

XML = ("<annotation><filename>{name}</filename><size><width>{w}</width><height>{h}</height></size>"
       "<object><name>cat</name><bndbox><xmin>2</xmin><ymin>3</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax>"
       "</bndbox></object></annotation>")


def voc_folder(root: Path, images: dict[str, Image.Image], box_end: tuple[int, int] = (6, 8)) -> Path:
    """``root/JPEGImages`` holding ``images`` (name -> image) and one XML each, box (2, 3)-``box_end``."""
    (root / "JPEGImages").mkdir(parents=True)
    (root / "Annotations").mkdir()
    for name, im in images.items():
        im.save(root / "JPEGImages" / name)
        w, h = im.size
        (root / "Annotations" / f"{Path(name).stem}.xml").write_text(
            XML.format(name=name, w=w, h=h, x2=box_end[0], y2=box_end[1]))
    return root


def test_modes_become_8bit_rgb(tmp_path):
    palette = Image.new("P", (5, 4))
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    palette.putpixel((0, 0), 1)
    cases = {
        "rgba.png": (Image.fromarray(np.full((4, 5, 4), (200, 100, 50, 0), np.uint8), "RGBA"), (200, 100, 50)),
        "palette.png": (palette, (255, 0, 0)),
        "grey16.png": (Image.fromarray(np.full((4, 5), 40000, np.uint16)), (156, 156, 156)),  # 40000/257
        "cmyk.jpg": (Image.new("CMYK", (5, 4), (0, 255, 0, 0)), (255, 0, 255)),
        "grey.png": (Image.new("L", (5, 4), 100), (100, 100, 100)),
        "one.png": (Image.new("RGB", (1, 1), (9, 8, 7)), (9, 8, 7)),
    }
    for name, (im, rgb) in cases.items():
        im.save(tmp_path / name)
        t = read_image(tmp_path / name)
        assert t.dtype == torch.float32 and t.shape == (3, im.size[1], im.size[0]), name
        assert (t[:, 0, 0] * 255).round().tolist() == list(rgb), name  # alpha dropped, 16-bit scaled
    assert Image.open(tmp_path / "grey16.png").mode == "I;16"  # the mode PIL clipped to 255 before


def test_exif_orientation_is_ignored_boxes_stay_on_the_stored_pixels(tmp_path):
    pixels = np.zeros((10, 20, 3), np.uint8)  # stored 20 wide x 10 high, EXIF says "rotate 90"
    pixels[3:8, 2:6] = 255
    im = Image.fromarray(pixels)
    exif = im.getexif()
    exif[0x0112] = 6
    im.save(tmp_path / "rot.jpg", exif=exif, quality=95)
    assert Image.open(tmp_path / "rot.jpg").getexif()[0x0112] == 6
    assert image_size(tmp_path / "rot.jpg") == (10, 20) and read_image(tmp_path / "rot.jpg").shape == (3, 10, 20)
    root = voc_folder(tmp_path / "voc", {"rot.jpg": Image.open(tmp_path / "rot.jpg")})
    ds = build_dataset(root, split="all")
    image, target = ds[0]
    assert image.shape == (3, 10, 20) and ds.problems == []
    x1, y1, x2, y2 = (int(v) for v in target["boxes"][0].tolist())
    assert (x1, y1, x2, y2) == (1, 2, 6, 8)
    assert image[:, 3:8, 2:6].mean() > 0.9  # the box's pixels are the bright patch as stored


def test_one_pixel_image_loads_with_its_box_clipped(tmp_path):
    root = voc_folder(tmp_path / "voc", {"dot.png": Image.new("RGB", (1, 1), (1, 2, 3))})
    ds = build_dataset(root, split="all")
    image, target = ds[0]
    assert image.shape == (3, 1, 1) and target["boxes"].shape == (0, 4)  # (2, 3)-(6, 8) lies outside
    assert [p.field for p in ds.problems] == ["object[0].bndbox"]


def test_decompression_bomb_is_refused_before_decoding_as_a_named_problem(tmp_path, monkeypatch):
    root = voc_folder(tmp_path / "voc", {"small.png": Image.new("RGB", (8, 8)),
                                         "bomb.png": Image.new("RGB", (40, 40))})
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # 40 x 40 = 1600 > 2 x 500: PIL's error
    with pytest.raises(ValueError, match=r"bomb\.png: image: cannot decode: too many pixels.*MAX_IMAGE_PIXELS"):
        read_image(root / "JPEGImages" / "bomb.png")
    with pytest.raises(ValueError, match=r"bomb\.png: image: cannot decode: too many pixels"):
        image_size(root / "JPEGImages" / "bomb.png")
    ds = build_dataset(root, split="all")
    assert [Path(f).name for f in ds.files] == ["small.png"]
    (problem,) = ds.problems
    assert Path(problem.file).name == "bomb.png" and problem.field == "image"
    assert "decompression-bomb" in problem.message and "sample skipped" in problem.message
