"""The ``detseg serve`` verb: its arguments, its errors, and several workers with a model each."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from detseg.cli.main import build_parser, main
from detseg.cli.serve import _is_loopback


def _checkpoint(path: Path) -> Path:
    from detseg.engine.checkpoint import save_checkpoint
    from detseg.models.zoo import build_model

    m = build_model("fcn", classes=["background", "circle"], img_size=32, backbone_width=8, width=8)
    save_checkpoint(path, {"builder": m.builder_name, "builder_args": m.builder_args, "task": m.task,
                           "classes": m.classes, "model": m.state_dict()})
    return path


def test_help_lists_serve_and_its_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "serve" in capsys.readouterr().out
    args = build_parser().parse_args(["serve", "m.pt"])
    assert (args.host, args.port, args.workers, args.max_upload_mb, args.timeout) == ("127.0.0.1", 8000, 1, 20, 30)


def test_bad_arguments_are_one_line_errors(tmp_path, capsys):
    assert main(["serve", str(tmp_path / "missing.pt")]) == 2
    assert "missing.pt: model: file not found" in capsys.readouterr().err
    ckpt = _checkpoint(tmp_path / "fcn.pt")
    for extra, says in [(["--port", "70000"], "--port 70000"), (["--workers", "0"], "--workers 0"),
                        (["--max-upload-mb", "0"], "--max-upload-mb"), (["--timeout", "-1"], "--timeout")]:
        assert main(["serve", str(ckpt), *extra]) == 2
        assert says in capsys.readouterr().err
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    assert main(["serve", str(broken), "--port", "0"]) == 2
    assert "broken.pt" in capsys.readouterr().err


def test_loopback_hosts():
    assert _is_loopback("127.0.0.1") and _is_loopback("localhost") and _is_loopback("::1")
    assert not _is_loopback("0.0.0.0") and not _is_loopback("192.168.1.2")


@pytest.mark.slow  # two processes importing torch: ~10 s on a free 2-core CPU, ~30 s on a busy one
def test_workers_are_separate_processes_each_with_its_model(tmp_path):
    ckpt = _checkpoint(tmp_path / "fcn.pt")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "detseg", "serve", str(ckpt), "--port", str(port),
                             "--workers", "2"], stdout=log, stderr=subprocess.STDOUT)
    pids: set[int] = set()
    try:
        deadline = time.monotonic() + 90
        while len(pids) < 2 and time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                # a new connection each time: the kernel spreads them over the workers' accepts
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    body = json.load(r)
                    assert body["model"] == "fcn"
                    pids.add(body["pid"])
            except OSError:
                time.sleep(0.2)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    assert len(pids) == 2 and proc.pid not in pids, (pids, (tmp_path / "serve.log").read_text())
