"""A lean keep-alive HTTP/1.1 client for offering load.

The load generator shares the 2 cores with what it measures. With aiohttp's client it cost more CPU per
message than the gateway's web process it was timing (0.87 against 0.67 ms, bench/e2e.py on a 2-core
VM), so every figure was partly a measure of the generator. This one writes a pre-built request and
reads one Content-Length response per call, on the same uvloop as the gateway.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import uvloop

T = TypeVar("T")


class HttpError(RuntimeError):
    pass


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def post(self, head: bytes, body: bytes) -> tuple[int, bytes]:
        """`head`: request line and headers without Content-Length or the blank line."""
        self.writer.write(b"%sContent-Length: %d\r\n\r\n%s" % (head, len(body), body))
        raw = await self.reader.readuntil(b"\r\n\r\n")
        status = int(raw[9:12])
        lower = raw.lower()
        at = lower.find(b"content-length:")
        if at < 0:
            raise HttpError(f"no Content-Length in the answer: {raw[:200]!r}")
        length = int(lower[at + 15 : lower.index(b"\r\n", at)])
        return status, await self.reader.readexactly(length)

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


def run_uvloop(main: Coroutine[Any, Any, T]) -> T:
    """The generator on uvloop, like the gateway it drives."""
    return uvloop.run(main)
