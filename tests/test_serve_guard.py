"""`serve` refuses a taken port or a bad host before starting Redis, and outlives a dying redis-server.

Why: both start-up mistakes came out as 30-line tracebacks after the private Redis had started, and a
`serve` whose redis-server died stayed up answering 503 forever.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path

import redis as syncredis

from tests.conftest import free_port
from tests.local_serve import lines, run_cli, start_serve


def test_a_taken_port_is_one_line_before_redis_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = run_cli(["serve"], tmp_path, timeout=30, PORT=str(port))
    assert out.returncode == 2, out.stderr
    assert len(lines(out.stderr)) == 1, out.stderr
    assert lines(out.stderr)[0].startswith(f"configuration error: PORT: cannot listen on 127.0.0.1:{port} ")
    assert not (tmp_path / ".switchboard" / "redis").exists()


def test_a_bad_host_is_one_line(tmp_path: Path) -> None:
    out = run_cli(["serve"], tmp_path, timeout=30, PORT=str(free_port()), SWITCHBOARD_HOST="no-such-host.invalid")
    assert out.returncode == 2, out.stderr
    assert len(lines(out.stderr)) == 1, out.stderr
    assert lines(out.stderr)[0].startswith("configuration error: SWITCHBOARD_HOST: cannot resolve 'no-such-host.")


def _kill_redis(url: str) -> int:
    """SIGKILL, as the OOM killer would: the server is asked for its own PID (the test did not start it)."""
    client = syncredis.Redis.from_url(url)
    pid = int(client.info("server")["process_id"])
    client.close()
    os.kill(pid, signal.SIGKILL)
    return pid


def _wait_new_redis(url: str, old_pid: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            client = syncredis.Redis.from_url(url, socket_timeout=1)
            pid = int(client.info("server")["process_id"])
            client.close()
            if pid != old_pid:
                return
        except (syncredis.RedisError, OSError):
            pass
        time.sleep(0.2)
    raise AssertionError("redis-server was not restarted")


def test_a_dying_redis_server_is_restarted_then_given_up_on(tmp_path: Path) -> None:
    port = free_port()
    serve = start_serve(tmp_path, port, PORT=str(port))
    try:
        serve.wait_ready()
        started = next(json.loads(x) for x in lines(serve.log.read_text()) if "embedded_redis_started" in x)
        url = started["url"]
        for _ in range(2):
            _wait_new_redis(url, _kill_redis(url))
            serve.wait_ready()
        _kill_redis(url)
        code = serve.proc.wait(timeout=60)
    finally:
        serve.stop()
    text = serve.log.read_text()
    assert code == 1, text
    assert text.count('"embedded_redis_died"') == 2 and "Traceback" not in text
    assert lines(text)[-1].startswith("embedded redis-server died 3 times within 300s"), text
