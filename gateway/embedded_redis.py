"""Redis for a laptop: a private `redis-server`, or an in-process stand-in when none is installed.

Either way the rest of the gateway gets a plain `redis.asyncio.Redis`, so there is one code path.
The private server uses append-only persistence with fsync on every write, because the gateway only
acknowledges a customer message once Redis holds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
import structlog

from gateway.redis_conn import redis_client
from gateway.serve_lock import DataDirLock

log = structlog.get_logger(__name__)

_PR_SET_PDEATHSIG = 1
URL_FILE = "redis.url"
"""The private server's address while it runs (for `redis-cli -u`, scripts): its port is random."""
MAX_RESTARTS = 2
RESTART_WINDOW_S = 300.0
"""A server that dies a third time within five minutes is not going to get better by itself."""


class EmbeddedRedisFailed(RuntimeError):
    """The private redis-server keeps dying; its message is the one line the operator sees."""


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
    role: str = "serve"
    """Who holds the folder's lock, for the message that refuses a second process."""
    port: int = 0
    lock: DataDirLock | None = field(default=None, repr=False)

    @property
    def is_fake(self) -> bool:
        return self.fake_server is not None

    async def start(self) -> None:
        self.lock = DataDirLock(self.data_dir, self.role)
        self.lock.acquire()  # before any server touches the append-only file
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise
        if self.process is not None:
            url_file = self.data_dir / URL_FILE
            url_file.write_text(f"{self.url}\n")
            url_file.chmod(0o600)

    async def _start(self) -> None:
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
        self.port = free_port()
        await self._launch(binary)
        log.info("embedded_redis_started", url=self.url, data_dir=str(self.folder))

    @property
    def folder(self) -> Path:
        return self.data_dir / "redis"

    async def _launch(self, binary: str) -> None:
        """Start redis-server on `self.port` (kept across restarts, so open clients reconnect by themselves)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self.process = await asyncio.to_thread(
            subprocess.Popen,
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder.resolve()),
             "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--protected-mode", "yes"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        self.url = f"redis://127.0.0.1:{self.port}/0"
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

    async def watch(self, stop: asyncio.Event, every: float = 0.5) -> None:
        """Restart a private server that died; raise `EmbeddedRedisFailed` once it keeps dying.

        Without this a `serve` whose redis-server was killed (OOM killer, a stray `kill`) stayed up
        answering 503 forever. A process that gives up lets a supervisor, or the operator, see it.
        """
        binary = shutil.which("redis-server")
        deaths: list[float] = []
        while self.process is not None and binary is not None and not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=every)
            code = self.process.poll()
            if stop.is_set() or code is None:
                continue
            now = time.monotonic()
            deaths = [t for t in deaths if now - t < RESTART_WINDOW_S] + [now]
            if len(deaths) > MAX_RESTARTS:
                raise EmbeddedRedisFailed(
                    f"embedded redis-server died {len(deaths)} times within {RESTART_WINDOW_S:g}s (last exit code "
                    f"{code}); stopping. Its files are in {self.folder.resolve()}"
                )
            log.error(
                "embedded_redis_died", exit_code=code, restart=len(deaths), max_restarts=MAX_RESTARTS,
                message="THE PRIVATE REDIS-SERVER DIED; restarting it on the same port and append-only file",
            )
            try:
                await self._launch(binary)
            except RuntimeError as exc:  # counted as the next death on the following turn
                log.error("embedded_redis_restart_failed", error=str(exc))
            else:
                log.warning("embedded_redis_restarted", url=self.url)

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
        if self.lock is not None and self.lock.held:
            (self.data_dir / URL_FILE).unlink(missing_ok=True)  # only the lock holder owns the file
            self.lock.release()
