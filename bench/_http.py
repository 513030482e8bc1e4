"""A lean keep-alive HTTP/1.1 client for offering load.

The load generator shares the 2 cores with what it measures. With aiohttp's client it cost more CPU per
message than the gateway's web process it was timing (0.87 against 0.67 ms, bench/e2e.py on a 2-core
VM), so every figure was partly a measure of the generator. `Client` writes a pre-built request and
reads one Content-Length response per call, on the same uvloop as the gateway (the closed loop).

`OpenLoop` offers a fixed rate (customers arriving, whatever the gateway answers): requests built and signed
before the run, no task per request, answers parsed in the protocol's callback and read after the run. At a
steady 1,000 messages/s it costs ~0.08 ms per message, where a task per request cost ~0.2 ms, about half of
that a busy wait: a sleep shorter than uvloop's millisecond timer returned at once, until the next was due.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar, cast

import uvloop

T = TypeVar("T")


class HttpError(RuntimeError):
    pass


def request(head: bytes, body: bytes) -> bytes:
    """`head` (request line and headers, as `Client.head` builds them) with the body's length and the body."""
    return b"%sContent-Length: %d\r\n\r\n%s" % (head, len(body), body)


def content_length(head: bytes) -> int:
    """The Content-Length of an answer's head (status line and headers), which every answer here must have."""
    lower = head.lower()
    at = lower.find(b"content-length:")
    if at < 0:
        raise HttpError(f"no Content-Length in the answer: {head[:200]!r}")
    stop = lower.find(b"\r\n", at)
    return int(lower[at + 15 : stop if stop >= 0 else len(lower)])


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def post(self, head: bytes, body: bytes) -> tuple[int, bytes]:
        """`head`: request line and headers without Content-Length or the blank line."""
        self.writer.write(request(head, body))
        raw = await self.reader.readuntil(b"\r\n\r\n")
        return int(raw[9:12]), await self.reader.readexactly(content_length(raw))

    def close(self) -> None:
        self.writer.close()


class Client:
    """Up to `limit` keep-alive connections to one host, reused first in, first out."""

    def __init__(self, host: str, port: int, limit: int) -> None:
        self.host, self.port = host, port
        self._free: asyncio.Queue[Connection] = asyncio.Queue()
        self._slots = asyncio.Semaphore(limit)
        self._all: list[Connection] = []

    def head(self, path: str, headers: dict[str, str]) -> bytes:
        lines = [f"POST {path} HTTP/1.1", f"Host: {self.host}:{self.port}", "Content-Type: application/json",
                 *(f"{name}: {value}" for name, value in headers.items())]
        return ("\r\n".join(lines) + "\r\n").encode()

    async def post(self, head: bytes, body: bytes) -> tuple[int, bytes]:
        async with self._slots:
            conn = self._free.get_nowait() if not self._free.empty() else await self._open()
            try:
                answer = await conn.post(head, body)
            except BaseException:
                conn.close()
                self._all.remove(conn)
                raise
            self._free.put_nowait(conn)
            return answer

    async def _open(self) -> Connection:
        conn = Connection(*await asyncio.open_connection(self.host, self.port))
        self._all.append(conn)
        return conn

    async def close(self) -> None:
        for conn in self._all:
            conn.close()
        self._all.clear()


class _Exchange(asyncio.Protocol):
    """One keep-alive connection with at most one request in flight, parsed in `data_received`.

    No StreamReader, no task per request: at a steady 1,000 requests/s the streams client cost the shared
    cores ~0.2 ms per message, about what the gateway's whole web process spent answering it."""

    def __init__(self, done: Callable[[_Exchange, int, bytes], None], lost: Callable[[_Exchange], None]) -> None:
        self._done, self._lost = done, lost
        self._buf = b""
        self.transport: asyncio.Transport | None = None
        self.tag = -1
        """The request in flight (`OpenLoop`'s index), -1 when idle."""
        self.closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's

    def send(self, tag: int, request: bytes) -> None:
        assert self.transport is not None
        self.tag = tag
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self._buf += data
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self._buf[:end]
        length = content_length(head)
        if len(self._buf) < end + 4 + length:
            return
        status, body = int(self._buf[9:12]), self._buf[end + 4 : end + 4 + length]
        self._buf = self._buf[end + 4 + length :]
        # Not to be reused: the next request would meet a closed socket
        self.closing = b"connection: close" in head.lower()
        self._done(self, status, body)

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost(self)


class OpenLoop:
    """Pre-built requests sent at a fixed rate, whatever the answers do (customers do not wait for each other).

    Each answer is kept as (request index, status, raw body, time due, time answered) and read after the run,
    so parsing is not done on the cores being measured. A request due while all `limit` connections are busy
    waits for one: `sent/s` then falls behind the rate, and its latency counts from when it was due, not from
    when a connection took it (measured from the send, a saturated gateway hid its queue in the generator)."""

    def __init__(self, host: str, port: int, limit: int) -> None:
        self.host, self.port, self.limit = host, port, limit
        self._idle: list[_Exchange] = []
        self._opened = 0
        self._start, self._rate = 0.0, 1.0
        """Wall-clock start and rate of the run: request i was due at start + i / rate."""
        self.answers: list[tuple[int, int, bytes, float, float]] = []
        self.failed: list[int] = []
        self._all_answered = asyncio.Event()
        self._freed = asyncio.Event()
        self._expected = 0

    def _answered(self, conn: _Exchange, status: int, body: bytes) -> None:
        tag, conn.tag = conn.tag, -1
        self.answers.append((tag, status, body, self._start + tag / self._rate, time.time()))
        if conn.closing:
            if conn.transport is not None:
                conn.transport.close()  # `_dropped` follows, with nothing in flight
        else:
            self._idle.append(conn)
            self._freed.set()
        self._check_done()

    def _dropped(self, conn: _Exchange) -> None:
        if conn in self._idle:
            self._idle.remove(conn)
        self._opened -= 1
        self._freed.set()  # room to open another
        if conn.tag >= 0:
            self.failed.append(conn.tag)
            self._check_done()

    def _check_done(self) -> None:
        if len(self.answers) + len(self.failed) >= self._expected:
            self._all_answered.set()

    async def _open(self) -> None:
        self._opened += 1
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_connection(lambda: _Exchange(self._answered, self._dropped), self.host,
                                                   self.port)
        except OSError:
            self._opened -= 1
            raise
        self._idle.append(conn)

    async def run(self, requests: Sequence[bytes], rate: float, warm: int = 64, patience: float = 300.0) -> float:
        """Send every request at `rate`/s (request i due at start + i / rate); returns the rate achieved.

        Requests still unanswered `patience` seconds after the last was sent count as failed."""
        self._expected = len(requests)
        if not requests:
            return 0.0
        await asyncio.gather(*(self._open() for _ in range(min(warm, self.limit))))
        loop = asyncio.get_running_loop()
        start, self._start, self._rate = loop.time(), time.time(), rate
        i, n = 0, len(requests)
        while i < n:
            due = min(n, int((loop.time() - start) * rate) + 1)
            while i < due:
                if not self._idle:
                    if self._opened < self.limit:
                        await self._open()
                    else:  # every connection busy: late, as `sent/s` will show (a short sleep here spun: uvloop
                        self._freed.clear()  # runs a sub-millisecond timer at once)
                        await self._freed.wait()
                        continue
                conn = self._idle.pop()
                conn.send(i, requests[i])
                i += 1
            # At least a millisecond: uvloop's timers count whole milliseconds, and a shorter sleep returned at
            # once, so the loop spun until the next request was due (a run's generator CPU doubled).
            await asyncio.sleep(max(0.001, start + i / rate - loop.time()))
        achieved = n / (loop.time() - start)
        try:
            await asyncio.wait_for(self._all_answered.wait(), patience)
        except TimeoutError:
            answered = {tag for tag, *_ in self.answers} | set(self.failed)
            self.failed.extend(tag for tag in range(n) if tag not in answered)
        return achieved

    def close(self) -> None:
        for conn in self._idle:
            if conn.transport is not None:
                conn.transport.close()


def run_uvloop(main: Coroutine[Any, Any, T]) -> T:
    """The generator on uvloop, like the gateway it drives."""
    return uvloop.run(main)
