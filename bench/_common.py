"""Shared helpers for the benchmarks: a private redis-server and a process on a free port."""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


@contextmanager
def redis_server(fsync: str = "always") -> Iterator[str]:
    """Same durability settings as the gateway's embedded Redis, unless told otherwise."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    binary = shutil.which("redis-server")
    if not binary:
        sys.exit("redis-server not found (apt-get install redis-server) and REDIS_URL not set")
    port = free_port()
    folder = tempfile.mkdtemp(prefix="sb-bench-")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", folder, "--save", "",
         "--appendonly", "yes", "--appendfsync", fsync],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def process(cmd: Sequence[str], port: int, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(list(cmd), env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def child_cpu_seconds() -> dict[str, float]:
    """CPU seconds (user + system) of this process's children, by role, read from /proc (Linux).

    Lets a benchmark say where the shared cores went per message: Redis, web, workers, emulator. Each counts the
    children it has reaped too: Redis forks to rewrite its append-only file, and that child's CPU is Redis's.
    """
    me = os.getpid()
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = open(f"/proc/{entry}/stat").read()
            cmd = open(f"/proc/{entry}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) != me:
            continue
        role = next((r for r in ("redis-server", "emulator", "gateway.cli web", "gateway.cli worker") if r in cmd),
                    "other")
        out[role] = out.get(role, 0.0) + sum(int(f) for f in fields[11:15]) / tick  # utime stime cutime cstime
    return out


def self_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


LOAD = "load generator (this process)"


def cpu_seconds() -> dict[str, float]:
    """CPU seconds by role: the children (`child_cpu_seconds`) and this process, which offers the load."""
    return {**child_cpu_seconds(), LOAD: self_cpu_seconds()}


def spent(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    """CPU seconds each role spent between two `cpu_seconds` readings."""
    return {role: after[role] - before.get(role, 0.0) for role in after}


def by_role(seconds: Mapping[str, float], n: int) -> str:
    """ms per message for each role, the costliest first: "worker 0.95, web 0.30, ..."."""
    return ", ".join(f"{role} {sec / n * 1000:.2f}" for role, sec in sorted(seconds.items(), key=lambda x: -x[1]))

