"""Load on ``detseg serve``: concurrent clients on 127.0.0.1, then the limits, then a health check.

    python benchmarks/serve_load.py                       # 200 requests from 8 clients
    python benchmarks/serve_load.py --requests 16 --out /tmp/serve_load.json   # a smoke run

Starts ``python -m detseg serve MODEL`` on a free loopback port (default model: a small Fast
R-CNN with decisive random weights and sliding-window proposals -- latency does not depend on
training), then:

1. ``--requests`` ``POST /predict`` of shapes images (``--img-size`` px PNGs) from ``--clients``
   threads at once, each its own httpx client; every status code is kept, and the latency of
   each answer (client side: upload, decode, inference, JSON) gives ``p50_ms``/``p95_ms``/``max_ms``;
2. an upload over the server's 20 MB limit (expects 413 with a JSON ``error``) and a text file
   (expects 415 with a JSON ``error``);
3. ``/health`` and one more prediction: the server must still answer.

All traffic goes to 127.0.0.1; the run is bounded by ``--requests`` and ``--time-limit``
(requests not sent by then are counted in ``not_sent``) and stops the server itself. Writes
``benchmarks/results/serve_load.json`` (or ``--out``); exits 1 when any check failed.
"""

from __future__ import annotations

import argparse
import io
import math
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from common import print_rows, stamp

from detseg.io import write_json

MAX_UPLOAD_MB = 20


def tiny_detector(path: Path) -> Path:
    """A small Fast R-CNN checkpoint with decisive random weights (many boxes, spread scores)."""
    import torch
    from torch import nn

    from detseg.data import build_dataset
    from detseg.engine.checkpoint import save_checkpoint
    from detseg.models.zoo import build_model

    classes = list(build_dataset("shapes:size=32,n=2", split="val", task="detection").classes)
    m = build_model("fast_rcnn", classes=classes, img_size=128, backbone_width=8, hidden=64,
                    proposals="sliding_window", num_proposals=100).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in m.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            p.copy_(noise * math.sqrt(2 / p[0].numel()) if p.dim() > 1 else
                    (1 + 0.1 * noise if name.endswith("weight") else 0.1 * noise))
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_var.fill_(1.5)
    save_checkpoint(path, {"builder": m.builder_name, "builder_args": m.builder_args, "task": m.task,
                           "classes": m.classes, "model": m.state_dict()})
    return path


def shapes_pngs(n: int, size: int) -> list[bytes]:
    from PIL import Image

    from detseg.data import build_dataset

    ds = build_dataset(f"shapes:size={size},n={n}", split="val", task="detection")
    out = []
    for i in range(min(n, len(ds))):
        buf = io.BytesIO()
        Image.fromarray((ds[i][0].permute(1, 2, 0) * 255).round().byte().numpy()).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: Path, port: int, workers: int, log: Path) -> subprocess.Popen:
    import httpx

    out = open(log, "w")
    proc = subprocess.Popen([sys.executable, "-m", "detseg", "serve", str(model), "--host", "127.0.0.1",
                             "--port", str(port), "--workers", str(workers),
                             "--max-upload-mb", str(MAX_UPLOAD_MB)], stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"detseg serve exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"detseg serve did not answer /health within 120 s:\n{log.read_text()}")


def percentile(values: list[float], q: float) -> float:
    """The ``q``-quantile (0..1) by linear interpolation, as numpy's default."""
    if not values:
        return float("nan")
    v = sorted(values)
    pos = (len(v) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def load(url: str, images: list[bytes], requests: int, clients: int, deadline: float) -> dict[str, Any]:
    import httpx

    local = threading.local()
    results: list[tuple[int | str, float]] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        if time.monotonic() > deadline:
            return
        client = getattr(local, "client", None) or httpx.Client(timeout=60)
        local.client = client
        t0 = time.perf_counter()
        try:
            r = client.post(url + "predict", files={"file": (f"shapes{i}.png", images[i % len(images)], "image/png")})
            r.json()  # an answer is a JSON body, also for errors
            status: int | str = r.status_code
        except (httpx.HTTPError, ValueError) as e:
            status = type(e).__name__
        with lock:
            results.append((status, (time.perf_counter() - t0) * 1e3))

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients, thread_name_prefix="client") as pool:
        list(pool.map(one, range(requests)))
    wall = time.perf_counter() - t0
    ok_ms = [ms for s, ms in results if s == 200]
    return {"sent": len(results), "not_sent": requests - len(results),
            "status_counts": dict(Counter(str(s) for s, _ in results)),
            "ok": len(ok_ms), "errors": len(results) - len(ok_ms),
            "p50_ms": round(percentile(ok_ms, 0.5), 1), "p95_ms": round(percentile(ok_ms, 0.95), 1),
            "max_ms": round(max(ok_ms, default=float("nan")), 1),
            "mean_ms": round(statistics.fmean(ok_ms), 1) if ok_ms else float("nan"),
            "requests_per_s": round(len(ok_ms) / wall, 2), "load_seconds": round(wall, 2)}


def limits(url: str, image: bytes) -> dict[str, Any]:
    """The oversize and non-image answers, then whether the server still serves."""
    import httpx

    out: dict[str, Any] = {}
    with httpx.Client(timeout=60) as c:
        for key, name, data, ctype in [
            ("oversize", "huge.png", b"\x89PNG\r\n\x1a\n" + bytes((MAX_UPLOAD_MB + 1) * 2 ** 20), "image/png"),
            ("non_image", "notes.txt", b"these are words, not pixels\n" * 10, "text/plain"),
        ]:
            try:
                r = c.post(url + "predict", files={"file": (name, data, ctype)})
                body = r.json()
                out[f"{key}_status"] = r.status_code
                out[f"{key}_error"] = body.get("error") if isinstance(body, dict) else None
            except (httpx.HTTPError, ValueError) as e:
                out[f"{key}_status"], out[f"{key}_error"] = type(e).__name__, str(e)
        try:
            alive = c.get(url + "health").status_code == 200 and c.post(
                url + "predict", files={"file": ("after.png", image, "image/png")}).status_code == 200
        except httpx.HTTPError:
            alive = False
    out["alive_after"] = alive
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=None, help="checkpoint or .onnx (default: a tiny Fast R-CNN)")
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--workers", type=int, default=1, help="server processes")
    ap.add_argument("--img-size", type=int, default=128, help="side of the uploaded shapes images")
    ap.add_argument("--time-limit", type=float, default=300, help="seconds for the load phase")
    ap.add_argument("--out", type=Path, default=None, help="results file (default benchmarks/results/serve_load.json)")
    args = ap.parse_args()
    if not (1 <= args.requests <= 10_000 and 1 <= args.clients <= 64):
        ap.error("--requests must be in 1..10000 and --clients in 1..64")

    with tempfile.TemporaryDirectory(prefix="serve_load_") as tmp:
        model = args.model or tiny_detector(Path(tmp) / "fast_rcnn.pt")
        images = shapes_pngs(16, args.img_size)
        port = free_port()
        url = f"http://127.0.0.1:{port}/"
        proc = start_server(model, port, args.workers, Path(tmp) / "serve.log")
        try:
            stats = load(url, images, args.requests, args.clients, time.monotonic() + args.time_limit)
            checks = limits(url, images[0])
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    passed = (stats["errors"] == 0 and stats["not_sent"] == 0 and checks["oversize_status"] == 413
              and checks["non_image_status"] == 415 and bool(checks["oversize_error"])
              and bool(checks["non_image_error"]) and checks["alive_after"])
    record = stamp({"benchmark": "serve_load", "model": "tiny fast_rcnn" if args.model is None else Path(args.model).name,
                    "requests": args.requests, "clients": args.clients, "workers": args.workers,
                    "img_size": args.img_size, **stats,
                    "status_counts": ", ".join(f"{k}: {v}" for k, v in sorted(stats["status_counts"].items())),
                    **checks, "passed": passed},
                   "torch", "fastapi", "uvicorn", "httpx")
    out = args.out or Path(__file__).resolve().parent / "results" / "serve_load.json"
    write_json(out, [record])
    print_rows([record], ["requests", "clients", "ok", "errors", "p50_ms", "p95_ms", "max_ms",
                          "requests_per_s", "oversize_status", "non_image_status", "alive_after"])
    print(f"{'passed' if passed else 'FAILED'}; written to {out}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
