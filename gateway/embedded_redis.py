"""Redis for a laptop: a private `redis-server`, or an in-process stand-in when none is installed.

Either way the rest of the gateway gets a plain `redis.asyncio.Redis`, so there is one code path.
The private server uses append-only persistence with fsync on every write, because the gateway only
acknowledges a customer message once Redis holds it.
"""

from __future__ import annotations

import asyncio
import ctypes
import shutil
import signal
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
import structlog

from gateway.redis_conn import redis_client

log = structlog.get_logger(__name__)

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Linux only: the private server must not outlive a SIGKILLed gateway."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class EmbeddedRedis:
    data_dir: Path
    url: str = ""
    process: subprocess.Popen[bytes] | None = None
    fake_server: Any = field(default=None, repr=False)

    @property
    def is_fake(self) -> bool:
        return self.fake_server is not None

    async def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            import fakeredis

            self.fake_server = fakeredis.FakeServer()
            self.url = "fakeredis://"
            log.warning(
                "embedded_redis_fallback",
                message="no redis-server on PATH: using an in-process store; NOTHING IS KEPT ACROSS RESTARTS. "
                "Install redis-server or set REDIS_URL.",
            )
            return
        folder = self.data_dir / "redis"
        folder.mkdir(parents=True, exist_ok=True)
        port = free_port()
        self.process = await asyncio.to_thread(
            subprocess.Popen,
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder.resolve()),
             "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--protected-mode", "yes"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        self.url = f"redis://127.0.0.1:{port}/0"
        client = aioredis.from_url(self.url)
        try:
            for _ in range(200):
                try:
                    await client.ping()
                    break
                except (aioredis.ConnectionError, OSError):
                    if self.process.poll() is not None:
                        raise RuntimeError(f"redis-server exited with code {self.process.returncode}") from None
                    await asyncio.sleep(0.05)
            else:
                raise RuntimeError("redis-server did not answer within 10 s")
        finally:
            await client.aclose()
        log.info("embedded_redis_started", url=self.url, data_dir=str(folder))

    def client(self) -> aioredis.Redis:
        if self.fake_server is not None:
            import fakeredis

            return fakeredis.FakeAsyncRedis(server=self.fake_server)
        return redis_client(self.url)

    async def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                await asyncio.to_thread(self.process.wait, 10)
            except subprocess.TimeoutExpired:
                self.process.kill()
            log.info("embedded_redis_stopped")
