"""Upload decoding, display names and the label-map encoding of :mod:`detseg.serve.payload`."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from detseg.serve.payload import UploadError, decode_image, decode_label_map, display_name, encode_label_map


@pytest.mark.parametrize("name, shown", [
    ("photo.jpg", "photo.jpg"), ("../../etc/passwd", "passwd"), ("C:\\Users\\x\\a.png", "a.png"),
    ("a\x00b\x1b.png", "ab.png"), ("", "upload"), (None, "upload"), ("..", "upload"), ("x" * 300, "x" * 120),
])
def test_display_name(name, shown):
    assert display_name(name) == shown


def test_label_map_round_trip():
    g = torch.Generator().manual_seed(0)
    sem = torch.randint(0, 4, (7, 9), generator=g)
    sem[2:5] = 255  # ignore
    enc = encode_label_map(sem)
    assert enc["size"] == [7, 9] and sum(enc["runs"][1::2]) == 63
    assert (decode_label_map(enc) == sem.numpy()).all()
    flat = encode_label_map(torch.zeros(4, 5, dtype=torch.long))
    assert flat["runs"] == [0, 20]


def _encoded(fmt: str, mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (5, 3), 128).save(buf, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize("fmt, mode", [("PNG", "RGB"), ("PNG", "L"), ("PNG", "RGBA"), ("JPEG", "RGB"),
                                       ("BMP", "RGB"), ("GIF", "P"), ("WEBP", "RGB"), ("TIFF", "RGB")])
def test_common_formats_decode_to_rgb(fmt, mode):
    a = decode_image(_encoded(fmt, mode), "x")
    assert a.shape == (3, 5, 3) and a.dtype == np.uint8


def test_decode_errors_are_413_or_415():
    with pytest.raises(UploadError, match="empty") as e:
        decode_image(b"", "e.png")
    assert e.value.status == 415
    with pytest.raises(UploadError, match="t.txt \\(sent as text/plain\\): not an image: text") as e:
        decode_image(b"plain words", "t.txt", "text/plain")
    assert e.value.status == 415
    with pytest.raises(UploadError, match="5x3 = 15 pixels") as e:
        decode_image(_encoded("PNG"), "big.png", max_pixels=10)
    assert e.value.status == 413
