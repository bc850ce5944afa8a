"""Mutation fuzzing of the dataset readers: only detseg's own clear errors may come out.

Each *case* writes a tiny valid dataset of one reader (two 8x8 images and their annotations:
VOC XML, COCO json, LSP joints as .npy/.json/.csv/.mat, label-PNG folders, a split list file, a
dataset yaml) and names the one file it mutates. A mutation is structural where the format has a
structure (an element, key or cell deleted or duplicated, a value's type swapped, a number made
huge, negative, NaN or infinite, a string emptied or made a path) or on the bytes (bits flipped,
truncated, spliced). Each mutated input goes through what the CLI does with data: detection by
content and loading (:func:`detseg.data.build_dataset`), ``__getitem__`` of every sample, and
``detseg data check``'s :func:`detseg.data.check.check_dataset`.

An outcome is ``ok``, ``clear`` (a ``ValueError`` / ``FileNotFoundError`` of detseg's whose message
names the data -- the root or the mutated file -- and is not a raw ``UnicodeDecodeError`` or
``JSONDecodeError``) or ``unexpected`` (anything else, or more than ``timeout`` seconds: a hang).
``benchmarks/fuzz_readers.py`` runs it at scale; ``tests/data/test_fuzz.py`` runs a short round.

The engine lives in the package (not under ``tests/``) so that the benchmark and the tests import
it the same way, with no path tricks; it depends on nothing but the readers it exercises.
"""

from __future__ import annotations

import io
import json
import math
import random
import signal
import threading
import traceback
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from PIL import Image

K = 14  # LSP joints
SIZE = 8  # images are SIZE x SIZE: per-input work is the annotation, not the pixels
NUMBERS = (0, -1, 1, -1e9, 1e9, 2**63, -2**31, 1e308, float("nan"), float("inf"), float("-inf"), 0.5, 3)
STRINGS = ("", " ", "a", "../../etc/passwd", "/abs/path.png", "\u00e9\u4e2d\U0001f600", "\x00", "0:1", "1e999",
           "NaN", "x" * 300, "<tag>", "a.png", "im0001.png")


class FuzzTimeout(Exception):
    """The reader ran past the per-input time limit (a hang)."""


@dataclass
class Case:
    """One reader's fuzz case: ``build(root)`` writes the valid data; ``target`` is mutated."""

    name: str
    build: Callable[[Path], None]
    target: str  # path relative to the root
    kind: str  # how to mutate it structurally: xml, json, csv, npy, mat, png, lines, yaml
    spec: str = "."  # what is passed as --data (relative to the root)
    split: str = "all"  # or a list file (relative to the root)


@dataclass
class Tally:
    """Counts per case, with a sample of each unexpected exception."""

    inputs: int = 0
    ok: int = 0
    clear: int = 0
    unexpected: int = 0
    samples: list[dict[str, Any]] = field(default_factory=list)
    clear_kinds: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        top = dict(sorted(self.clear_kinds.items(), key=lambda kv: -kv[1])[:8])
        return {"inputs": self.inputs, "ok": self.ok, "clear_errors": self.clear,
                "unexpected": self.unexpected, "unexpected_samples": self.samples,
                "clear_error_kinds": top}


# -- the valid datasets ------------------------------------------------------------------------

def _images(folder: Path, names: list[str], mode: str = "RGB") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for n in names:
        Image.fromarray(rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)).convert(mode).save(folder / n)


VOC_XML = ("<annotation><folder>x</folder><filename>{n}.png</filename><size><width>8</width>"
           "<height>8</height><depth>3</depth></size><object><name>cat</name><difficult>0</difficult>"
           "<bndbox><xmin>2</xmin><ymin>2</ymin><xmax>6</xmax><ymax>7</ymax></bndbox></object>"
           "<object><name>dog</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>4</xmax><ymax>3</ymax>"
           "</bndbox></object></annotation>")


def build_voc(root: Path) -> None:
    _images(root / "images", ["a.png", "b.png"])
    (root / "xml").mkdir()
    for n in "ab":
        (root / "xml" / f"{n}.xml").write_text(VOC_XML.format(n=n))


def coco_json() -> dict[str, Any]:
    return {
        "images": [{"id": 1, "file_name": "a.png", "height": SIZE, "width": SIZE},
                   {"id": 2, "file_name": "b.png", "height": SIZE, "width": SIZE}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 5], "area": 20, "iscrowd": 0,
             "segmentation": [[1, 1, 5, 1, 5, 6, 1, 6]], "keypoints": [2, 2, 2, 3, 3, 1], "num_keypoints": 2},
            {"id": 2, "image_id": 2, "category_id": 1, "bbox": [0, 0, 3, 3], "area": 9, "iscrowd": 0,
             "segmentation": {"size": [SIZE, SIZE], "counts": [0, 3, 5, 3, 5, 3, 45]},
             "keypoints": [1, 1, 2, 0, 0, 0], "num_keypoints": 1},
            {"id": 3, "image_id": 2, "category_id": 1, "bbox": [4, 4, 3, 3], "area": 9, "iscrowd": 1,
             "segmentation": [[4, 4, 7, 4, 7, 7]]},
        ],
        "categories": [{"id": 1, "name": "person", "keypoints": ["left_eye", "right_eye"],
                        "skeleton": [[1, 2]]}],
    }


def build_coco(root: Path) -> None:
    _images(root / "images", ["a.png", "b.png"])
    (root / "annotations.json").write_text(json.dumps(coco_json()))


def _joints() -> np.ndarray:
    j = np.zeros((2, K, 3))
    j[..., :2] = np.linspace(1, SIZE - 2, K)[None, :, None]
    j[..., 2] = 1
    j[1, 13] = (-50, 90, 0)
    return j


def build_lsp(suffix: str) -> Callable[[Path], None]:
    def build(root: Path) -> None:
        _images(root / "images", ["im0001.png", "im0002.png"])
        j, path = _joints(), root / f"joints{suffix}"
        if suffix == ".npy":
            np.save(path, j)
        elif suffix == ".json":
            path.write_text(json.dumps({"joints": j.tolist(), "images": ["im0001.png", "im0002.png"]}))
        elif suffix == ".csv":
            head = ",".join(["image"] + [f"{c}{k}" for k in range(K) for c in "xyv"])
            rows = [",".join([f"im000{i + 1}.png"] + [f"{v:g}" for v in j[i].ravel()]) for i in range(2)]
            path.write_text("\n".join([head, *rows]) + "\n")
        else:
            import scipy.io

            scipy.io.savemat(path, {"joints": j.transpose(1, 2, 0)})  # (14, 3, N): LSPET
    return build


def build_seg(root: Path) -> None:
    _images(root / "images", ["a.png", "b.png"])
    (root / "labels").mkdir()
    for i, n in enumerate("ab"):
        label = np.zeros((SIZE, SIZE), np.uint8)
        label[2:6, 2:6] = i + 1
        label[0, 0] = 255
        Image.fromarray(label, "L").save(root / "labels" / f"{n}.png")
    (root / "classes.txt").write_text("bg\ncat\ndog\n")


def build_split_list(root: Path) -> None:
    build_voc(root)
    (root / "list.txt").write_text("a\nb.png\n")


def build_split_csv(root: Path) -> None:
    build_voc(root)
    (root / "list.csv").write_text("filename,width\na.png,8\nb.png,8\n")


def build_yaml(root: Path) -> None:
    build_voc(root)
    (root / "data.yaml").write_text("format: voc\nimages: images\nannotations: xml\nclasses: [cat, dog]\n"
                                    "splits: {train: \"0:1\", val: [b]}\nstrict_images: false\n")


CASES = (
    Case("voc_xml", build_voc, "xml/a.xml", "xml"),
    Case("coco_json", build_coco, "annotations.json", "json"),
    Case("lsp_npy", build_lsp(".npy"), "joints.npy", "npy"),
    Case("lsp_json", build_lsp(".json"), "joints.json", "json"),
    Case("lsp_csv", build_lsp(".csv"), "joints.csv", "csv"),
    Case("lsp_mat", build_lsp(".mat"), "joints.mat", "mat"),
    Case("label_png", build_seg, "labels/a.png", "png"),
    Case("split_txt", build_split_list, "list.txt", "lines", split="list.txt"),
    Case("split_csv", build_split_csv, "list.csv", "csv", split="list.csv"),
    Case("dataset_yaml", build_yaml, "data.yaml", "yaml", spec="data.yaml"),
)


# -- mutations ---------------------------------------------------------------------------------

def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    """Bit flips, byte overwrites, truncation, insertion, a chunk deleted or duplicated."""
    b = bytearray(data)
    op = rng.randrange(6)
    if not b:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 16)))
    i = rng.randrange(len(b))
    if op == 0:
        for _ in range(rng.randint(1, 4)):
            j = rng.randrange(len(b))
            b[j] ^= 1 << rng.randrange(8)
    elif op == 1:
        b[i] = rng.choice((0, 0xFF, 0x7F, 0x80, ord("<"), ord('"'), ord("-"), ord("9"), ord(",")))
    elif op == 2:
        del b[i:]
    elif op == 3:
        b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    elif op == 4:
        del b[i:i + rng.randint(1, 32)]
    else:
        j = min(len(b), i + rng.randint(1, 64))
        b[j:j] = b[i:j]
    return bytes(b)


def mutate_value(v: Any, rng: random.Random) -> Any:
    """A value of another type or an extreme one."""
    choice = rng.randrange(7)
    if choice == 0:
        return rng.choice(NUMBERS)
    if choice == 1:
        return rng.choice(STRINGS)
    if choice == 2:
        return None
    if choice == 3:
        return rng.choice((True, False))
    if choice == 4:
        return [] if rng.random() < 0.5 else [v, v]
    if choice == 5:
        return {} if rng.random() < 0.5 else {"x": v}
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return v * rng.choice((-1, 10, 1e6, 0.5)) + rng.choice((0, 1, -1))
    return str(v)


def _containers(node: Any, out: list) -> list:
    if isinstance(node, (dict, list)) and node:
        out.append(node)
        for child in (node.values() if isinstance(node, dict) else node):
            _containers(child, out)
    return out


def mutate_tree(data: Any, rng: random.Random) -> Any:
    """Delete, duplicate or replace one entry of a random dict/list inside ``data`` (in place)."""
    nodes = _containers(data, [])
    if not nodes:
        return mutate_value(data, rng)
    for _ in range(rng.randint(1, 3)):
        node = rng.choice(nodes)
        if not node:
            continue
        key = rng.choice(list(node)) if isinstance(node, dict) else rng.randrange(len(node))
        op = rng.randrange(4)
        if op == 0:
            del node[key]
        elif op == 1 and isinstance(node, list):
            node.insert(key, json.loads(json.dumps(node[key], allow_nan=True)))
        elif op == 1:
            node[f"{key}_"] = node[key]
        else:
            node[key] = mutate_value(node[key], rng)
    return data


def _tags(text: str) -> list[tuple[int, int]]:
    import re

    return [m.span() for m in re.finditer(r"<(\w+)>[^<>]*</\1>|<(\w+)>", text)]


def mutate_xml(text: str, rng: random.Random) -> str:
    """Element text replaced, an element deleted or duplicated, a tag broken, or a DTD added."""
    import re

    op = rng.randrange(5)
    values = list(re.finditer(r">([^<>]+)<", text))
    if op == 0 and values:
        m = rng.choice(values)
        v = rng.choice([*map(str, NUMBERS), *STRINGS, "-5", "4.5", "1 2", "&amp;"])
        return text[:m.start(1)] + v.replace("<", "").replace("&", "&amp;") + text[m.end(1):]
    spans = _tags(text)
    if op in (1, 2) and spans:
        a, b = rng.choice(spans)
        return text[:a] + (text[a:b] * 2 if op == 2 else "") + text[b:]
    if op == 3 and spans:
        a, b = rng.choice(spans)
        return text[:a] + text[a:b].replace("</", "<", 1) + text[b:]
    dtd = rng.choice(('<!DOCTYPE annotation [<!ENTITY e "lol">]>', '<!DOCTYPE annotation SYSTEM "/etc/passwd">',
                      '<!DOCTYPE annotation [<!ENTITY e SYSTEM "file:///etc/hostname">]>'))
    return dtd + text.replace("<name>cat</name>", "<name>&e;</name>")


def mutate_csv(text: str, rng: random.Random) -> str:
    rows = [r.split(",") for r in text.splitlines()]
    op = rng.randrange(5)
    r = rng.randrange(len(rows)) if rows else 0
    if not rows:
        return rng.choice(STRINGS)
    if op == 0:
        c = rng.randrange(len(rows[r]))
        rows[r][c] = str(rng.choice([*NUMBERS, *STRINGS]))
    elif op == 1:
        del rows[r][rng.randrange(len(rows[r]))]
    elif op == 2:
        rows.insert(r, list(rows[r]))
    elif op == 3:
        del rows[r]
    else:
        rows[r].append(str(rng.choice(NUMBERS)))
    return "\n".join(",".join(x) for x in rows) + rng.choice(("\n", "", "\n\n"))


def mutate_lines(text: str, rng: random.Random) -> str:
    lines = text.splitlines()
    op = rng.randrange(4)
    if op == 0 or not lines:
        lines.append(rng.choice(STRINGS))
    elif op == 1:
        del lines[rng.randrange(len(lines))]
    elif op == 2:
        lines[rng.randrange(len(lines))] = rng.choice(STRINGS)
    else:
        lines = lines * rng.randint(2, 3)
    return "\n".join(lines)


def mutate_array(rng: random.Random) -> np.ndarray:
    """A joints-like array of a wrong shape, dtype or contents."""
    j = _joints()
    op = rng.randrange(6)
    if op == 0:
        shape = rng.choice(((K, 3), (3, K), (0, K, 3), (2, K, 2), (2, K + 1, 3), (1,), (), (2, 3, K), (K, 3, 0)))
        return np.resize(j, shape)
    if op == 1:
        j[rng.randrange(2), rng.randrange(K), rng.randrange(3)] = rng.choice(NUMBERS)
        return j
    if op == 2:
        return j.astype(rng.choice((np.int8, np.uint8, np.float16, np.complex64, np.bool_)))
    if op == 3:
        return np.full_like(j, rng.choice(NUMBERS))
    if op == 4:
        j[..., 2] = rng.choice((0, 2, -1, 3, 0.5))
        return j
    return np.array(["a"] * (2 * K * 3)).reshape(2, K, 3)


def mutate_png(original: bytes, rng: random.Random) -> bytes:
    """A label PNG of another size, mode, bit depth or value range."""
    op = rng.randrange(5)
    buf = io.BytesIO()
    if op == 0:
        h, w = rng.choice(((1, 1), (SIZE, SIZE + 1), (SIZE * 2, SIZE), (SIZE, SIZE)))
        Image.fromarray(np.full((h, w), rng.randrange(256), np.uint8), "L").save(buf, "PNG")
    elif op == 1:
        mode = rng.choice(("RGB", "RGBA", "1", "I;16", "LA", "I", "F", "CMYK"))
        Image.new(mode, (SIZE, SIZE)).save(buf, "TIFF" if mode in ("I", "F", "CMYK") else "PNG")  # as .png
    elif op == 2:
        Image.fromarray(np.random.default_rng(rng.randrange(99)).integers(0, 256, (SIZE, SIZE), dtype=np.uint8),
                        "L").convert("P").save(buf, "PNG")
    elif op == 3:
        buf.write(b"")
    else:
        return mutate_bytes(original, rng)
    return buf.getvalue()


def mutate(case: Case, original: bytes, rng: random.Random) -> bytes:
    """One mutated version of ``original`` (the bytes of ``case.target``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy's savemat on odd names
        return _mutate(case, original, rng)


def _mutate(case: Case, original: bytes, rng: random.Random) -> bytes:
    if rng.random() < 0.3:
        return mutate_bytes(original, rng)
    text = original.decode("utf-8", "replace")
    if case.kind == "xml":
        out = mutate_xml(text, rng)
    elif case.kind == "json":
        out = json.dumps(mutate_tree(json.loads(text), rng), allow_nan=True)
    elif case.kind == "yaml":
        import yaml

        out = yaml.safe_dump(mutate_tree(yaml.safe_load(text), rng), allow_unicode=True)
    elif case.kind == "csv":
        out = mutate_csv(text, rng)
    elif case.kind == "lines":
        out = mutate_lines(text, rng)
    elif case.kind == "npy":
        buf = io.BytesIO()
        np.save(buf, mutate_array(rng))
        return buf.getvalue()
    elif case.kind == "mat":
        import scipy.io

        buf = io.BytesIO()
        name = rng.choice(("joints", "joints", "pose", "__x"))
        a = mutate_array(rng)
        scipy.io.savemat(buf, {name: a.transpose(*reversed(range(a.ndim))) if a.ndim else a})
        return buf.getvalue()
    elif case.kind == "png":
        return mutate_png(original, rng)
    else:
        return mutate_bytes(original, rng)
    return out.encode("utf-8", "surrogatepass")


# -- running one input -------------------------------------------------------------------------

@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`FuzzTimeout` after ``seconds`` (SIGALRM; main thread on POSIX, else no limit)."""
    usable = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable or seconds <= 0:
        yield
        return

    def alarm(signum, frame):
        raise FuzzTimeout(f"no answer within {seconds:g} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def run_reader(root: Path, case: Case) -> None:
    """What the CLI does with the data: sniff + load, every sample, then ``data check``."""
    from detseg.data import build_dataset
    from detseg.data.check import check_dataset, format_report

    spec = root / case.spec if case.spec != "." else root
    split = str(root / case.split) if case.split != "all" else "all"
    ds = build_dataset(spec, split=split)
    for i in range(len(ds)):
        ds[i]
    format_report(check_dataset(spec, workers=1))


def is_clear(e: BaseException, root: Path, case: Case) -> bool:
    """detseg's own error: a ValueError/FileNotFoundError naming the data, not a raw decode error."""
    if isinstance(e, (UnicodeError, json.JSONDecodeError)) or not isinstance(e, (ValueError, FileNotFoundError)):
        return False
    msg = str(e)
    return str(root) in msg or Path(case.target).name in msg


def run_one(root: Path, case: Case, data: bytes, timeout: float = 10.0) -> tuple[str, BaseException | None]:
    """Write ``data`` as the case's target and run the reader: ``(outcome, exception)``."""
    (root / case.target).write_bytes(data)
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"), time_limit(timeout):
            warnings.simplefilter("ignore")
            run_reader(root, case)
    except Exception as e:  # noqa: BLE001 - the point is to see every kind
        return ("clear" if is_clear(e, root, case) else "unexpected"), e
    return "ok", None


def describe(e: BaseException, data: bytes) -> dict[str, Any]:
    """A sample of an unexpected exception: type, message, where it was raised, the input."""
    tb = traceback.extract_tb(e.__traceback__)
    where = next((f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(tb)
                  if "detseg" in f.filename), f"{tb[-1].filename}:{tb[-1].lineno}" if tb else "?")
    return {"type": type(e).__name__, "message": str(e)[:300], "where": where,
            "input_head": data[:200].decode("utf-8", "replace")}


def fuzz(workdir: Path, inputs: int, seconds: float = math.inf, seed: int = 0,
         cases: tuple[Case, ...] = CASES, timeout: float = 10.0, max_samples: int = 5,
         progress: Callable[[int], None] | None = None) -> dict[str, Tally]:
    """Run up to ``inputs`` mutated inputs (round robin over ``cases``) or until ``seconds`` pass."""
    import time

    start = time.perf_counter()
    tallies = {c.name: Tally() for c in cases}
    roots, originals = {}, {}
    for c in cases:
        root = Path(workdir) / c.name
        root.mkdir(parents=True, exist_ok=True)
        c.build(root)
        roots[c.name], originals[c.name] = root, (root / c.target).read_bytes()
    for n in range(inputs):
        if time.perf_counter() - start > seconds:
            break
        case = cases[n % len(cases)]
        rng = random.Random(seed * 1_000_003 + n)
        root, original = roots[case.name], originals[case.name]
        data = mutate(case, original, rng)
        outcome, e = run_one(root, case, data, timeout)
        t = tallies[case.name]
        t.inputs += 1
        if outcome == "ok":
            t.ok += 1
        elif outcome == "clear":
            t.clear += 1
            kind = str(e).replace(str(root), "ROOT")[:80]
            t.clear_kinds[kind] = t.clear_kinds.get(kind, 0) + 1
        else:
            t.unexpected += 1
            if len(t.samples) < max_samples:
                t.samples.append({"input": n, **describe(e, data)})  # type: ignore[arg-type]
        if progress is not None:
            progress(n)
    return tallies
