"""The HTTP app of ``detseg serve`` (FastAPI): a model behind ``/predict``, and one page over it.

    POST /predict[?conf=0.25]  multipart image (field ``file``; or a raw ``image/*`` body)
                               -> JSON: Results.to_dict() (+ the label map for semantic models)
    GET  /health               -> {"status": "ok", "model": ..., "pid": ...}
    GET  /model                -> name, task, classes, colours, input size (+ joints, skeleton)
    GET  /                     -> the page (static/index.html): pick or drop an image, see it drawn

Limits, each answered with a JSON body ``{"error": "..."}``: a body larger than ``max_upload_mb``
is refused with 413 before it is read in full; a file that is not an image of a common raster
format gets 415 naming the file and what it is; inference longer than ``timeout_s`` gets 504.
Inference runs in a thread pool (the event loop keeps answering ``/health`` meanwhile), one
image at a time per process behind a lock: torch already spreads one forward pass over the
cores, and models are not promised to be re-entrant.

Each process builds its own app and model (:func:`app_from_env` is uvicorn's factory for
``--workers N``), so workers share nothing mutable.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from contextlib import asynccontextmanager
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from detseg.io import dumps
from detseg.serve.payload import MAX_PIXELS, UploadError, decode_image, display_name, model_info, \
    prediction_json

PAGE = Path(__file__).with_name("static") / "index.html"
# Environment of uvicorn's worker processes (set by `detseg serve`, read by app_from_env).
ENV_MODEL, ENV_MAX_MB, ENV_TIMEOUT, ENV_DEVICE = ("DETSEG_SERVE_MODEL", "DETSEG_SERVE_MAX_UPLOAD_MB",
                                                  "DETSEG_SERVE_TIMEOUT", "DETSEG_SERVE_DEVICE")
_FORM_SLACK = 64 * 1024  # multipart framing around the file: boundaries, part headers


class _JSON(Response):
    """JSON through :func:`detseg.io.dumps` (NaN -> null: strict JSON for browsers)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dumps(content).encode("utf-8")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def create_app(model_path: str | Path | None = None, max_upload_mb: float = 20, timeout_s: float = 30,
               device: str = "cpu", model: Any = None, max_pixels: int = MAX_PIXELS,
               threads: int = 4) -> FastAPI:
    """The app serving one model.

    Args:
        model_path: a checkpoint (``.pt``) or a ``detseg export`` file (``.onnx``), loaded with
            :func:`detseg.load`.
        max_upload_mb: the largest accepted upload, in MiB (larger: 413).
        timeout_s: the per-request limit on decoding + inference (longer: 504; the thread
            finishes its image in the background, later requests queue behind it).
        device: where the model runs (``cpu``, ``cuda``, ``auto``).
        model: an already loaded model instead of ``model_path`` (tests).
        max_pixels: the largest accepted image, width x height (larger: 413).
        threads: the pool running decode + inference.
    """
    if model is None:
        if model_path is None:
            raise ValueError("serve: pass model_path (a .pt checkpoint or an .onnx file)")
        from detseg.api import load

        model = load(model_path, device=device)
    if max_upload_mb <= 0 or timeout_s <= 0:
        raise ValueError(f"serve: max_upload_mb ({max_upload_mb}) and timeout_s ({timeout_s}) must be > 0")
    info = model_info(model, model_path or "model")
    info.update(max_upload_mb=max_upload_mb, timeout_s=timeout_s)
    max_bytes = int(max_upload_mb * 2 ** 20)
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="detseg-serve")
    lock = threading.Lock()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="detseg serve", version=_version(), docs_url=None, redoc_url=None,
                  openapi_url=None, default_response_class=_JSON, lifespan=lifespan)
    app.state.model, app.state.info = model, info

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = [f"{'.'.join(str(x) for x in e.get('loc', ()))}: {e.get('msg', '')}" for e in exc.errors()]
        return _error(422, "; ".join(parts) or "invalid request")

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        # a clear line for the client; no traceback leaves the server
        return _error(500, f"{type(exc).__name__}: {exc}")

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "model": info["name"], "task": info["task"], "pid": os.getpid()}

    @app.get("/model")
    def model_route() -> dict[str, Any]:
        return info

    @app.get("/", response_class=HTMLResponse)
    def page() -> HTMLResponse:
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))

    @app.post("/predict")
    async def predict(request: Request, conf: float = Query(0.0, ge=0.0, le=1.0)) -> Response:
        try:
            data, name, ctype = await _read_upload(request, max_bytes, max_upload_mb)
        except UploadError as e:
            return _error(e.status, str(e))
        cancelled = threading.Event()

        def job() -> dict[str, Any]:
            array = decode_image(data, name, ctype, max_pixels)
            with lock:
                if cancelled.is_set():  # timed out while queued: skip the work
                    raise TimeoutError
                t0 = time.perf_counter()
                result = model.predict([array], conf=conf)[0]
                ms = (time.perf_counter() - t0) * 1e3
            result.name = name
            return {**prediction_json(result, conf), "inference_ms": round(ms, 2)}

        loop = asyncio.get_running_loop()
        try:
            body = await asyncio.wait_for(loop.run_in_executor(pool, job), timeout_s)
        except (asyncio.TimeoutError, TimeoutError):
            cancelled.set()
            return _error(504, f"{name}: no prediction within the server's timeout of {timeout_s:g} s")
        except UploadError as e:
            return _error(e.status, str(e))
        return _JSON(body)

    return app


async def _read_upload(request: Request, max_bytes: int, max_mb: float) -> tuple[bytes, str, str | None]:
    """The uploaded file's ``(bytes, display name, declared type)``, read at most ``max_bytes``
    (+ the form's framing) into memory; 413/415 as :class:`UploadError`."""
    too_big = f"upload larger than the server's limit of {max_mb:g} MB (--max-upload-mb)"
    ctype = request.headers.get("content-type", "")
    multipart = ctype.startswith("multipart/form-data")
    limit = max_bytes + (_FORM_SLACK if multipart else 0)
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise UploadError(413, f"{too_big}: {int(length)} bytes")  # refused before reading a byte
    chunks, total = [], 0
    async for chunk in request.stream():  # a chunked body has no length header: count as it comes
        total += len(chunk)
        if total > limit:
            raise UploadError(413, f"{too_big}: more than {limit} bytes sent")
        chunks.append(chunk)
    body = b"".join(chunks)
    if not multipart:
        if ctype.startswith("image/") or ctype.startswith("application/octet-stream"):
            return body, "upload", ctype or None
        raise UploadError(415, f"request body is {ctype or 'of no declared type'}: send the image as "
                               "multipart/form-data (field 'file') or as an image/* body")

    async def replay() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    form = await Request(request.scope, receive=replay).form(max_files=4, max_fields=16)
    files = [v for v in form.values() if hasattr(v, "read") and hasattr(v, "filename")]
    if not files:
        raise UploadError(415, "no file in the form: send the image as multipart field 'file'")
    up = form.get("file") if hasattr(form.get("file"), "read") else files[0]
    data = await up.read()
    name = display_name(up.filename)
    if len(data) > max_bytes:
        raise UploadError(413, f"{name}: {too_big}: {len(data)} bytes")
    return data, name, up.content_type


def app_from_env() -> FastAPI:
    """uvicorn's app factory for ``--workers N``: each worker process builds its own model."""
    path = os.environ.get(ENV_MODEL)
    if not path:
        raise RuntimeError(f"{ENV_MODEL} is not set: start the server with `detseg serve MODEL`")
    return create_app(path, max_upload_mb=float(os.environ.get(ENV_MAX_MB, 20)),
                      timeout_s=float(os.environ.get(ENV_TIMEOUT, 30)),
                      device=os.environ.get(ENV_DEVICE, "cpu"))


def _version() -> str:
    from detseg import __version__

    return __version__
