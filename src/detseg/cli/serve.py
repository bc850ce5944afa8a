"""The ``detseg serve`` verb: a checkpoint or ONNX file behind HTTP (:mod:`detseg.serve`).

    detseg serve CHECKPOINT_OR_ONNX [--host 127.0.0.1] [--port 8000] [--workers 1]
                 [--max-upload-mb 20] [--timeout 30] [--device cpu]

FastAPI and uvicorn are imported only when the verb runs (``pip install 'detseg[serve]'``), so
``detseg --help`` works without them.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``serve MODEL [--host] [--port] [--workers] [--max-upload-mb] [--timeout]``."""
    p = subparsers.add_parser(
        "serve", help="serve a model over HTTP: POST /predict, GET /health, /model, and a web page at /",
        description="Serve a checkpoint (.pt) or an exported model (.onnx) with FastAPI + uvicorn: "
        "POST /predict (multipart image, ?conf=) -> JSON predictions, GET /health, GET /model, and "
        "GET / -- a page to pick or drop an image and see the prediction drawn. Binds to "
        "127.0.0.1 unless --host says otherwise. Needs `pip install 'detseg[serve]'`.")
    p.add_argument("model", help="a detseg checkpoint (.pt) or a file of `detseg export` (.onnx)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0 exposes it)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1,
                   help="server processes, each with its own copy of the model")
    p.add_argument("--max-upload-mb", type=float, default=20, metavar="MB",
                   help="largest accepted upload (larger: HTTP 413)")
    p.add_argument("--timeout", type=float, default=30, metavar="S",
                   help="per-request limit on decoding + inference (longer: HTTP 504)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    return p


def _check(args) -> None:
    path = Path(args.model)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: model: file not found")
    if not 0 <= args.port <= 65535:
        raise ValueError(f"serve: --port {args.port}: not a port number (0..65535)")
    if args.workers < 1:
        raise ValueError(f"serve: --workers {args.workers}: must be at least 1")
    if args.max_upload_mb <= 0 or args.timeout <= 0:
        raise ValueError("serve: --max-upload-mb and --timeout must be > 0")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(args) -> int:
    _check(args)
    try:
        import uvicorn

        from detseg.serve import app as serve_app
    except ImportError as e:
        raise ImportError(f"serve: {e.name or e} is missing: pip install 'detseg[serve]'") from None
    if not _is_loopback(args.host):
        print(f"detseg serve: listening on {args.host}: reachable from other machines, with no "
              "authentication", file=sys.stderr)
    url = f"http://{args.host}:{args.port}/"
    if args.workers == 1:
        # built here, so a bad model file is a one-line CLI error before the server starts
        app = serve_app.create_app(args.model, max_upload_mb=args.max_upload_mb,
                                   timeout_s=args.timeout, device=args.device)
        print(f"detseg serve: {app.state.info['name']} ({app.state.info['task']}) at {url}", flush=True)
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
        return 0
    # Several workers: uvicorn starts each process from the factory, which reads these.
    os.environ[serve_app.ENV_MODEL] = str(Path(args.model).resolve())
    os.environ[serve_app.ENV_MAX_MB] = str(args.max_upload_mb)
    os.environ[serve_app.ENV_TIMEOUT] = str(args.timeout)
    os.environ[serve_app.ENV_DEVICE] = args.device
    print(f"detseg serve: {args.model} at {url} ({args.workers} workers)", flush=True)
    uvicorn.run("detseg.serve.app:app_from_env", factory=True, host=args.host, port=args.port,
                workers=args.workers, log_level="warning")
    return 0
