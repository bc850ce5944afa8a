"""The VOC reader on hostile and sloppy XML: entity bombs and external entities refused (defusedxml),
missing or wrong `<size>`, boxes with x2 < x1, NaN, infinite, negative or outside coordinates."""

from __future__ import annotations

import time
from pathlib import Path

import torch
from PIL import Image

from detseg.data.check import check_dataset, format_report
from detseg.data.voc import VOCDetection, parse_voc_xml

GOOD = ("<annotation><filename>{name}.jpg</filename><size><width>20</width><height>20</height></size>"
        "<object><name>cat</name><bndbox><xmin>2</xmin><ymin>2</ymin><xmax>10</xmax><ymax>10</ymax>"
        "</bndbox></object></annotation>")


def billion_laughs(levels: int = 9) -> str:
    """The classic entity bomb: 10**levels copies of 'lol' if expanded (3 GB at 9 levels)."""
    ents = '<!ENTITY lol0 "lol">' + "".join(
        f'<!ENTITY lol{i} "{("&lol%d;" % (i - 1)) * 10}">' for i in range(1, levels + 1))
    return (f'<?xml version="1.0"?>\n<!DOCTYPE annotation [{ents}]>\n'
            f"<annotation><filename>b.jpg</filename><object><name>&lol{levels};</name></object></annotation>")


def external_entity(target: Path) -> str:
    """XXE: an entity whose value is the content of a local file."""
    return (f'<?xml version="1.0"?>\n<!DOCTYPE annotation [<!ENTITY xxe SYSTEM "file://{target}">]>\n'
            "<annotation><filename>&xxe;</filename></annotation>")


def make_voc(root: Path, bad: str) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "xml").mkdir()
    for n in "ab":
        Image.new("RGB", (20, 20)).save(root / "images" / f"{n}.jpg")
    (root / "xml" / "a.xml").write_text(GOOD.format(name="a"))
    (root / "xml" / "b.xml").write_text(bad)
    return root


def test_entity_bomb_is_refused_quickly_and_named(tmp_path):
    root = make_voc(tmp_path / "voc", billion_laughs())
    start = time.perf_counter()
    rec = parse_voc_xml(root / "xml" / "b.xml")
    assert time.perf_counter() - start < 1.0  # not expanded
    assert not rec.ok
    (p,) = rec.problems
    assert p.file.endswith("b.xml") and p.field == "xml" and "entity" in p.message
    ds = VOCDetection(root, split="all")
    assert len(ds) == 1  # a.jpg is kept, b is skipped
    assert any(q.file.endswith("b.xml") and q.field == "xml" for q in ds.problems)
    report = check_dataset(root)
    text = format_report(report)
    assert "b.xml: xml: refused" in text and "entity" in text


def test_external_entity_is_not_resolved(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    root = make_voc(tmp_path / "voc", external_entity(secret))
    rec = parse_voc_xml(root / "xml" / "b.xml")
    assert not rec.ok and rec.filename is None
    (p,) = rec.problems
    assert p.field == "xml" and "refused" in p.message and "TOP-SECRET" not in p.message
    report = check_dataset(root)
    assert [q.field for q in report["problems"] if q.file.endswith("b.xml")] == ["xml"]
    assert "TOP-SECRET" not in format_report(report)


def _xml(name: str, size: str, boxes: list[tuple]) -> str:
    objs = "".join("<object><name>cat</name><bndbox>" + "".join(
        f"<{k}>{v}</{k}>" for k, v in zip(("xmin", "ymin", "xmax", "ymax"), b)) + "</bndbox></object>"
        for b in boxes)
    return f"<annotation><filename>{name}.jpg</filename>{size}{objs}</annotation>"


def test_size_missing_or_other_than_the_image_uses_the_image(tmp_path):
    root = tmp_path / "voc"
    (root / "images").mkdir(parents=True)
    (root / "xml").mkdir()
    sizes = {"nosize": "", "wrong": "<size><width>100</width><height>80</height></size>",
             "zero": "<size><width>0</width><height>0</height></size>"}
    for stem, size in sizes.items():
        Image.new("RGB", (40, 30)).save(root / "images" / f"{stem}.jpg")
        (root / "xml" / f"{stem}.xml").write_text(_xml(stem, size, [(31, 21, 60, 50)]))
    ds = VOCDetection(root, split="all")
    assert ds.sizes == [(30, 40)] * 3
    got = {(Path(p.file).name, p.field): p.message for p in ds.problems}
    assert got.pop(("nosize.xml", "size")) == "missing: using the image's"
    assert got.pop(("wrong.xml", "size")) == "says 100x80 but the image is 40x30: using the image's"
    assert all(field == "object[0].bndbox" and "clipped" in m for (_, field), m in got.items())  # 0x0: silent
    for i in range(3):  # the box is clipped to the real 40x30 image, not the 100x80 the XML claims
        assert ds[i][1]["boxes"].tolist() == [[30, 20, 40, 30]]


def test_bad_boxes_are_dropped_or_clipped_and_named(tmp_path):
    root = tmp_path / "voc"
    (root / "images").mkdir(parents=True)
    (root / "xml").mkdir()
    Image.new("RGB", (40, 30)).save(root / "images" / "a.jpg")
    boxes = [(10, 5, 3, 20),  # x2 < x1
             ("nan", 1, 5, 5), (2, 2, "inf", 9), (1, 1, "-inf", 5), ("abc", 1, 5, 5),  # not finite numbers
             (-5, -5, 10, 10),  # negative: clipped
             (50, 40, 60, 50),  # wholly outside
             (2, 3, 12, 13)]  # good
    (root / "xml" / "a.xml").write_text(_xml("a", "<size><width>40</width><height>30</height></size>", boxes))
    ds = VOCDetection(root, split="all")
    got = [(p.field, p.message) for p in ds.problems]
    assert [f for f, _ in got] == ["object[1].bndbox.xmin", "object[2].bndbox.xmax", "object[3].bndbox.xmax",
                                   "object[4].bndbox.xmin", "object[0].bndbox", "object[5].bndbox",
                                   "object[6].bndbox"]
    assert all("not a finite number: object skipped" in m for _, m in got[:4])
    assert "zero area: dropped" in got[4][1] and "clipped" in got[5][1] and "outside" in got[6][1]
    _, t = ds[0]
    assert t["boxes"].tolist() == [[0, 0, 10, 10], [1, 2, 12, 13]]
    assert torch.isfinite(t["boxes"]).all()
