"""The README's first command: `switchboard serve` with no configuration runs the whole loop.

Run as a real subprocess, once with `redis-server` on PATH (private server, append-only file) and once
without it (in-process fallback with a loud warning).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import free_port


def _serve(tmp_path: Path, path_env: str) -> tuple[subprocess.Popen[bytes], int, Path]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "SWITCHBOARD_", "REDIS_URL"))}
    env.update({"PORT": str(port), "PATH": path_env, "SWITCHBOARD_LOG_FORMAT": "json"})
    log = tmp_path / "serve.log"
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "switchboard"), "serve"], cwd=tmp_path, env=env,
        stdout=subprocess.DEVNULL, stderr=log.open("wb"),
    )
    return proc, port, log


def _wait_ready(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(log.read_text())


def _send_and_find_card(port: int, tmp_path: Path, env_path: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "SWITCHBOARD_", "REDIS_URL"))}
    env.update({"PORT": str(port), "PATH": env_path})
    out = subprocess.run(
        [str(Path(sys.executable).parent / "switchboard"), "send", "--name", "Jane", "My parcel never arrived!"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30,
    )
    assert out.returncode == 0 and out.stdout.startswith("202"), out.stderr
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_slack/state", timeout=2) as resp:
            state = json.load(resp)
        shipping = next(c for c in state["channels"] if c["name"] == "support-shipping")
        if shipping["messages"] == 1:
            return state
        time.sleep(0.1)
    raise AssertionError("no card in #support-shipping")


def _stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=30)


def test_serve_with_private_redis_server(tmp_path: Path) -> None:
    redis_bin = shutil.which("redis-server")
    assert redis_bin, "redis-server must be installed for the test suite"
    path = f"{Path(sys.executable).parent}:{Path(redis_bin).parent}"
    proc, port, log = _serve(tmp_path, path)
    try:
        _wait_ready(port, proc, log)
        _send_and_find_card(port, tmp_path, path)
    finally:
        assert _stop(proc) == 0, log.read_text()
    text = log.read_text()
    assert "embedded_redis_started" in text and "embedded_redis_stopped" in text
    assert any((tmp_path / ".switchboard" / "redis").rglob("*.aof*")), "append-only file expected"


@pytest.mark.skipif(sys.platform != "linux", reason="PATH trick is Linux-specific")
def test_serve_without_redis_server_falls_back_loudly(tmp_path: Path) -> None:
    path = str(Path(sys.executable).parent)
    if shutil.which("redis-server", path=path):
        pytest.skip("redis-server sits beside the Python interpreter")
    proc, port, log = _serve(tmp_path, path)
    try:
        _wait_ready(port, proc, log)
        _send_and_find_card(port, tmp_path, path)
    finally:
        assert _stop(proc) == 0, log.read_text()
    assert "NOTHING IS KEPT ACROSS RESTARTS" in log.read_text()
