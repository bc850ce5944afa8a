"""The page of ``detseg serve`` in a real browser: headless Chromium (Debian's ``chromium``,
driven by Playwright's Python package through ``executable_path``: no browser download).

The test starts ``python -m detseg serve`` on 127.0.0.1, uploads a shapes image, and checks the
drawing and the table against the server's own ``/predict`` JSON at the slider's threshold;
moving the slider changes the count without a new request. It fails (never skips) when the
browser is missing: ``.ci/run`` installs it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def _server(model: Path, tmp_path: Path):
    """``detseg serve MODEL`` in a subprocess on a free loopback port; yields its base URL."""
    port = _free_port()
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "detseg", "serve", str(model), "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "MPLBACKEND": "Agg"})
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"detseg serve exited with {proc.returncode}:\n{(tmp_path / 'serve.log').read_text()}")
            try:
                with urllib.request.urlopen(url + "health", timeout=2) as r:
                    if json.load(r)["status"] == "ok":
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("detseg serve did not answer /health within 90 s")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _predict(url: str, path: Path, conf: float = 0.0) -> dict:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{path.name}\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(f"{url}predict?conf={conf}", data=body, method="POST",
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


@contextmanager
def _browser():
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(f"{CHROMIUM} is missing: the browser test needs Debian's chromium "
                    "(`apt-get install -y chromium`; .ci/run installs it)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is missing: pip install 'detseg[serve]' (or '.[dev]')")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


# Pixels of the canvas that differ from the image alone, drawn the same way (boxes, labels, masks).
_CHANGED = """() => {
  const c = document.getElementById("canvas"), s = window.detseg.state;
  const ref = document.createElement("canvas"); ref.width = c.width; ref.height = c.height;
  const r = ref.getContext("2d"); r.imageSmoothingEnabled = false;
  r.drawImage(s.image, 0, 0, c.width, c.height);
  const a = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  const b = r.getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 0; i < a.length; i += 4) if (a[i] !== b[i] || a[i + 1] !== b[i + 1] || a[i + 2] !== b[i + 2]) n++;
  return n;
}"""


def _rows(page) -> list[tuple[str, float]]:
    return [(tr.get_attribute("data-label"), float(tr.get_attribute("data-score")))
            for tr in page.locator("#objects tbody tr").all()]


def test_page_draws_the_prediction_and_the_slider_filters(det_ckpt, tmp_path, to_png):
    from detseg.data import build_dataset

    ds = build_dataset("shapes:size=96,n=4", split="val", task="detection")
    image = tmp_path / "shapes.png"
    image.write_bytes(to_png((ds[1][0].permute(1, 2, 0) * 255).round().byte().numpy()))
    text = tmp_path / "notes.txt"
    text.write_text("not an image\n")
    with _server(det_ckpt, tmp_path) as url, _browser() as browser:
        expected = _predict(url, image)
        scores = expected["scores"]
        assert len(scores) > 10, "the fixture detector should find many objects at conf 0"
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        posts: list[str] = []
        page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
        page.goto(url)
        page.wait_for_function("() => document.getElementById('model-info').textContent.includes('fast_rcnn')")

        page.set_input_files("#file", str(image))
        page.wait_for_selector("#canvas[data-state='ready']", timeout=30_000)
        assert len(posts) == 1 and "/predict" in posts[0]

        def check(thr: float) -> int:
            kept = [(n, s) for n, s in zip(expected["names"], scores) if s >= thr]
            canvas = page.locator("#canvas")
            assert canvas.get_attribute("data-threshold") == f"{thr:.2f}"
            assert int(canvas.get_attribute("data-drawn")) == len(kept)
            rows = _rows(page)
            assert [n for n, _ in rows] == [n for n, _ in kept]
            assert np.allclose([s for _, s in rows], [s for _, s in kept])
            assert page.locator("#summary").inner_text().startswith(f"{len(kept)} of {len(scores)} object")
            return len(kept)

        low = check(0.30)  # the slider's default
        assert low > 0
        assert page.evaluate(_CHANGED) > 500  # boxes and labels are drawn over the image
        first = page.locator("#objects tbody tr").first.inner_text()
        assert expected["names"][0] in first and f"{scores[0]:.3f}" in first

        thr = round(float(np.quantile(scores, 0.7)) + 0.005, 2)  # above most, below the best
        page.locator("#threshold").fill(f"{thr}")
        high = check(thr)
        assert 0 < high < low
        assert page.locator("#threshold-value").inner_text() == f"{thr:.2f}"
        page.locator("#threshold").fill("1")
        assert check(1.0) == sum(s >= 1.0 for s in scores)
        page.locator("#threshold").fill(f"{thr}")
        assert len(posts) == 1  # the slider redraws without a new request
        page.screenshot(path=str(tmp_path / "serve_page.png"), full_page=True)
        assert (tmp_path / "serve_page.png").stat().st_size > 10_000

        # the mask decoder agrees with the server's COCO RLE encoding
        from detseg.results import _encode_masks

        mask = torch.zeros(1, 37, 53, dtype=torch.uint8)
        mask[0, 5:30, 7:11] = 1
        mask[0, 20:22, 3:50] = 1
        decoded = page.evaluate("(rle) => Array.from(window.detseg.decodeRle(rle))", _encode_masks(mask)[0])
        assert (np.array(decoded).reshape(37, 53) == mask[0].numpy()).all()

        # a non-image shows the server's 415 message on the page
        page.set_input_files("#file", str(text))
        page.wait_for_selector("#canvas[data-state='error']", timeout=30_000)
        status = page.locator("#status").inner_text()
        assert "415" in status and "notes.txt" in status and "not an image" in status


def test_page_draws_a_semantic_map_with_its_legend(seg_ckpt, tmp_path, to_png):
    from detseg.data import build_dataset
    from detseg.serve.payload import decode_label_map

    ds = build_dataset("shapes:size=64,n=2", split="val", task="semantic")
    image = tmp_path / "scene.png"
    image.write_bytes(to_png((ds[0][0].permute(1, 2, 0) * 255).round().byte().numpy()))
    with _server(seg_ckpt, tmp_path) as url, _browser() as browser:
        expected = _predict(url, image)
        sem = decode_label_map(expected["sem_seg"])
        classes = json.load(urllib.request.urlopen(url + "model", timeout=10))["classes"]
        present = sorted(int(c) for c in np.unique(sem) if c != 255)
        page = browser.new_page()
        page.goto(url)
        page.wait_for_function("() => document.body.dataset.task === 'semantic'")
        page.set_input_files("#file", str(image))
        page.wait_for_selector("#canvas[data-state='ready']", timeout=30_000)
        legend = [int(li.get_attribute("data-class")) for li in page.locator("#legend li").all()]
        assert legend == present and len(present) > 1
        assert page.locator("#legend").inner_text().split("\n") == [classes[c] for c in present]
        rows = [tr.inner_text().split("\t") for tr in page.locator("#objects tbody tr").all()]
        assert [(r[0].strip(), int(r[1])) for r in rows] == [(classes[c], int((sem == c).sum())) for c in present]
        assert page.evaluate(_CHANGED) > 500  # the non-background classes are painted over the image
        assert page.locator(".thr").is_hidden()  # no score slider for a label map
        page.screenshot(path=str(tmp_path / "serve_semantic.png"), full_page=True)
