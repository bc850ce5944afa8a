"""VOC XML is parsed with defusedxml: entity bombs and external entities are refused, named, skipped."""

from __future__ import annotations

import time
from pathlib import Path

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
