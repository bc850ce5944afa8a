"""The serve app through FastAPI's TestClient: endpoints, the prediction JSON (the same as
``detseg.load(...).predict`` on the same image), ``?conf=``, and every limit's JSON error."""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="pip install 'detseg[serve]'")
from fastapi.testclient import TestClient  # noqa: E402

import detseg  # noqa: E402
from detseg.serve import app_from_env, create_app  # noqa: E402
from detseg.serve.payload import decode_label_map  # noqa: E402


@pytest.fixture(scope="module")
def det_client(det_ckpt):
    return TestClient(create_app(det_ckpt))


def _post(client, data: bytes, name: str = "shapes.png", ctype: str = "image/png", conf=None):
    params = {} if conf is None else {"conf": conf}
    return client.post("/predict", params=params, files={"file": (name, data, ctype)})


def _assert_same(got: dict, want: dict) -> None:
    assert got["names"] == want["names"] and got["labels"] == want["labels"]
    assert np.allclose(got["boxes"], want["boxes"], atol=1e-4) and np.allclose(got["scores"], want["scores"], atol=1e-6)


def test_health_and_model(det_client, det_ckpt):
    h = det_client.get("/health")
    assert h.status_code == 200 and h.json()["status"] == "ok" and h.json()["model"] == "fast_rcnn"
    m = det_client.get("/model").json()
    assert m["name"] == "fast_rcnn" and m["task"] == "detection"
    assert m["classes"] == detseg.load(det_ckpt).classes and m["input_size"] == 64
    assert m["runtime"] == "pytorch" and m["file"] == "fast_rcnn.pt"
    assert len(m["colors"]) == len(m["classes"]) + 1 and m["max_upload_mb"] == 20


def test_predict_matches_load(det_client, det_ckpt, shapes_png):
    array, data = shapes_png
    r = _post(det_client, data)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    got = r.json()
    want = detseg.load(det_ckpt).predict([array])[0].to_dict()
    assert got["task"] == "detection" and got["size"] == [64, 64] and got["name"] == "shapes.png"
    assert len(got["boxes"]) > 10  # decisive weights: many boxes, scores spread out
    _assert_same(got, want)
    assert got["conf"] == 0 and got["inference_ms"] > 0


def test_conf_filters(det_client, shapes_png):
    _, data = shapes_png
    every = _post(det_client, data).json()
    high = _post(det_client, data, conf=0.5).json()
    kept = [s for s in every["scores"] if s >= 0.5]
    assert 0 < len(high["scores"]) == len(kept) < len(every["scores"])
    assert min(high["scores"]) >= 0.5 and high["conf"] == 0.5


def test_raw_image_body(det_client, shapes_png):
    _, data = shapes_png
    r = det_client.post("/predict", content=data, headers={"content-type": "image/png"})
    assert r.status_code == 200 and len(r.json()["boxes"]) > 0


def test_semantic_prediction_carries_the_label_map(seg_ckpt, shapes_png):
    array, data = shapes_png
    client = TestClient(create_app(seg_ckpt))
    assert client.get("/model").json()["task"] == "semantic"
    got = _post(client, data).json()
    want = detseg.load(seg_ckpt).predict([array])[0]
    sem = decode_label_map(got["sem_seg"])
    assert sem.shape == (64, 64) and (sem == want.prediction["sem_seg"].numpy()).all()
    assert got["pixels_per_class"] == want.to_dict()["pixels_per_class"]


def test_onnx_file_is_served(seg_ckpt, shapes_png, tmp_path):
    pytest.importorskip("onnxruntime")
    from detseg.export import export_onnx

    onnx = export_onnx(detseg.load(seg_ckpt), tmp_path / "fcn.onnx")
    client = TestClient(create_app(onnx))
    m = client.get("/model").json()
    assert m["runtime"] == "onnxruntime" and m["name"] == "fcn" and m["input_size"] == 64
    array, data = shapes_png
    got = decode_label_map(_post(client, data).json()["sem_seg"])
    assert (got == detseg.load(onnx).predict([array])[0].prediction["sem_seg"].numpy()).all()


def test_pose_model_describes_its_skeleton(pose_ckpt):
    m = TestClient(create_app(pose_ckpt)).get("/model").json()
    assert m["task"] == "pose" and len(m["keypoint_names"]) == 14 and len(m["skeleton"]) == 13


# -- limits -------------------------------------------------------------------------------------
def test_oversize_upload_is_413_json(det_ckpt, shapes_png):
    client = TestClient(create_app(det_ckpt, max_upload_mb=0.01))  # 10 KiB
    big = b"\x89PNG" + bytes(30_000)
    r = _post(client, big, name="big.png")
    assert r.status_code == 413 and "larger than the server's limit of 0.01 MB" in r.json()["error"]
    # a chunked body (no Content-Length) is counted as it arrives
    r = client.post("/predict", content=iter([bytes(8192)] * 4), headers={"content-type": "image/png"})
    assert r.status_code == 413 and "more than" in r.json()["error"]
    # a file just over the limit inside a form whose framing is within the slack
    r = _post(client, bytes(int(0.01 * 2 ** 20) + 10), name="edge.png")
    assert r.status_code == 413 and "edge.png" in r.json()["error"]
    assert _post(client, shapes_png[1]).status_code == 200  # a small image still passes


def test_too_many_pixels_is_413(det_ckpt, shapes_png):
    client = TestClient(create_app(det_ckpt, max_pixels=1000))
    r = _post(client, shapes_png[1])
    assert r.status_code == 413 and "64x64 = 4096 pixels" in r.json()["error"]


@pytest.mark.parametrize("name, data, ctype, says", [
    ("notes.txt", b"hello, this is text\n", "text/plain", "not an image: text"),
    ("empty.png", b"", "image/png", "empty"),
    ("blob.bin", bytes(range(200)), "application/octet-stream", "not an image: data"),
    ("page.eps", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "application/postscript",
     "not an image"),  # PIL's Ghostscript reader is never used
])
def test_non_image_is_415_naming_the_problem(det_client, name, data, ctype, says):
    r = _post(det_client, data, name=name, ctype=ctype)
    assert r.status_code == 415
    err = r.json()["error"]
    assert name in err and says in err, err


def test_truncated_image_is_415(det_client, shapes_png):
    data = shapes_png[1]
    r = _post(det_client, data[: len(data) // 2], name="cut.png")
    assert r.status_code == 415 and "cut.png" in r.json()["error"] and "truncated" in r.json()["error"]


def test_wrong_body_kinds_are_415(det_client):
    r = det_client.post("/predict", content=b"x=1", headers={"content-type": "text/plain"})
    assert r.status_code == 415 and "multipart/form-data" in r.json()["error"]
    r = det_client.post("/predict", data={"note": "no file"})
    assert r.status_code == 415 and "x-www-form-urlencoded" in r.json()["error"]
    r = det_client.post("/predict", data={"note": "x"}, files={"other": ("a.png", b"", "image/png")})
    assert r.status_code == 415 and "a.png" in r.json()["error"]


def test_other_errors_are_json(det_client, shapes_png):
    r = _post(det_client, shapes_png[1], conf=2)
    assert r.status_code == 422 and "conf" in r.json()["error"]
    r = det_client.get("/no/such/page")
    assert r.status_code == 404 and "error" in r.json()
    assert det_client.get("/predict").status_code == 405


def test_upload_names_are_never_paths(det_client, shapes_png, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for evil, shown in [("../../etc/passwd.png", "passwd.png"), ("..\\..\\win.png", "win.png"),
                        ("..", "upload")]:
        r = _post(det_client, shapes_png[1], name=evil)
        assert r.status_code == 200 and r.json()["name"] == shown, evil
    assert list(tmp_path.iterdir()) == []  # the server writes nothing
    # the page is one fixed file: no path reaches the file system
    for path in ("/../../etc/passwd", "/static/../app.py", "/index.html"):
        assert det_client.get(path).status_code == 404, path


class _Slow:
    """A model whose predict takes ``delay`` seconds (the timeout path)."""

    def __init__(self, model, delay: float):
        self.model, self.delay = model, delay
        self.task, self.classes = model.task, model.classes
        self.builder_name, self.builder_args, self.dataset_info = model.builder_name, model.builder_args, {}

    def predict(self, images, conf=0.0):
        time.sleep(self.delay)
        return self.model.predict(images, conf=conf)


def test_timeout_is_504_and_the_server_keeps_serving(det_ckpt, shapes_png):
    slow = _Slow(detseg.load(det_ckpt), delay=1.0)
    client = TestClient(create_app(model=slow, model_path=det_ckpt, timeout_s=0.2))
    t0 = time.perf_counter()
    r = _post(client, shapes_png[1], name="slow.png")
    assert time.perf_counter() - t0 < 0.9  # answered at the timeout, not when the thread ends
    assert r.status_code == 504 and "slow.png" in r.json()["error"] and "0.2 s" in r.json()["error"]
    assert client.get("/health").status_code == 200
    slow.delay = 0.0
    time.sleep(1.0)  # the timed-out thread finishes its image
    assert _post(client, shapes_png[1]).status_code == 200


def test_page_is_one_self_contained_file(det_client):
    r = det_client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert 'id="canvas"' in html and 'id="threshold"' in html and 'id="objects"' in html
    # no CDN, no web fonts: nothing is fetched but this server's own relative routes
    assert "http://" not in html and "https://" not in html and "@import" not in html
    assert "<link" not in html and "src=" not in html


def test_app_from_env(det_ckpt, monkeypatch, shapes_png):
    monkeypatch.delenv("DETSEG_SERVE_MODEL", raising=False)
    with pytest.raises(RuntimeError, match="DETSEG_SERVE_MODEL"):
        app_from_env()
    monkeypatch.setenv("DETSEG_SERVE_MODEL", str(det_ckpt))
    monkeypatch.setenv("DETSEG_SERVE_MAX_UPLOAD_MB", "0.5")
    client = TestClient(app_from_env())
    assert client.get("/model").json()["max_upload_mb"] == 0.5
    assert _post(client, shapes_png[1]).status_code == 200


def test_bad_settings_and_missing_model(tmp_path):
    from detseg.engine.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="missing.pt: checkpoint: file not found"):
        create_app(tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="model_path"):
        create_app()
    with pytest.raises(ValueError, match="timeout_s"):
        create_app(model=object(), timeout_s=0)
