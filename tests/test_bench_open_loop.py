"""The benches' open-loop generator (`bench/_http.OpenLoop`): every request sent once, at its time, and its answer
read back whole however the server's bytes arrive. Its figures (latency, "kept up") are only as good as this."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import pytest
import uvloop

from bench._http import OpenLoop, request


class Server:
    """A raw HTTP/1.1 keep-alive server that answers each request's index, optionally in byte-sized pieces."""

    def __init__(self, split: bool = False, delay: float = 0.0, close: bool = False, mute: bool = False) -> None:
        self.split, self.delay, self.close, self.mute = split, delay, close, mute
        self.seen: list[int] = []
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                index = json.loads(await reader.readexactly(length))["i"]
                self.seen.append(index)
                await asyncio.sleep(self.delay)
                if self.mute:
                    continue
                body = json.dumps({"conversation_id": f"c{index}"}).encode()
                close = b"Connection: close\r\n" if self.close else b""
                answer = (b"HTTP/1.1 202 Accepted\r\n%sContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                          % (close, len(body), body))
                if self.split:  # the head and body across many reads, the length header cut in two
                    for at in range(0, len(answer), 7):
                        writer.write(answer[at : at + 7])
                        await writer.drain()
                        await asyncio.sleep(0)
                else:
                    writer.write(answer)
                if self.close:
                    await writer.drain()
                    writer.close()
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])


async def serving(server: Server) -> AsyncIterator[Server]:
    server.server = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    try:
        yield server
    finally:
        server.server.close()


def requests(n: int) -> list[bytes]:
    head = b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    return [request(head, json.dumps({"i": i}).encode()) for i in range(n)]


@pytest.fixture
async def server(request: pytest.FixtureRequest) -> AsyncIterator[Server]:
    """A `Server` with the test's options (`indirect` parametrization), plain without."""
    async for running in serving(Server(**getattr(request, "param", {}))):
        yield running


def options(**kwargs: object) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("server", [kwargs], indirect=True)


async def test_each_request_once_at_its_time(server: Server) -> None:
    sender = OpenLoop("127.0.0.1", server.port, 64)
    achieved = await sender.run(requests(300), rate=1000.0)
    sender.close()
    assert sorted(server.seen) == list(range(300))
    assert sorted(tag for tag, *_ in sender.answers) == list(range(300))
    assert all(status == 202 and json.loads(body) == {"conversation_id": f"c{tag}"}
               for tag, status, body, _, _ in sender.answers)
    sent = sorted(t for _, _, _, t, _ in sender.answers)
    # 300 at 1,000/s spread over ~0.3 s, not sent at once, nor far behind the schedule
    assert 0.25 <= sent[-1] - sent[0] <= 0.6
    assert 500 <= achieved <= 1100
    assert all(answered >= t for _, _, _, t, answered in sender.answers)


@options(split=True)
async def test_answers_split_across_reads(server: Server) -> None:
    sender = OpenLoop("127.0.0.1", server.port, 8)
    await sender.run(requests(40), rate=400.0)
    sender.close()
    assert sorted(json.loads(body)["conversation_id"] for _, _, body, _, _ in sender.answers) == sorted(
        f"c{i}" for i in range(40))


@options(delay=0.05)
async def test_busy_connections_make_it_fall_behind_without_spinning(server: Server) -> None:
    """Two connections against 50 ms answers carry ~40 requests/s, whatever the rate asked: `achieved` says so
    instead of the generator opening more than it was allowed, latency counts from when each was due, and the
    wait for a free connection sleeps (a sub-millisecond sleep returned at once under uvloop: a busy loop)."""
    sender = OpenLoop("127.0.0.1", server.port, 2)

    async def offer() -> float:
        try:
            return await sender.run(requests(20), rate=1000.0, warm=2)
        finally:
            sender.close()

    cpu = time.process_time()
    achieved = await asyncio.to_thread(uvloop.run, offer())  # on uvloop, as the benches run it
    cpu = time.process_time() - cpu
    assert len(sender.answers) == 20
    assert achieved < 100
    assert cpu < 0.2  # ~0.5 s of waiting
    last = max(sender.answers, key=lambda a: a[0])
    assert last[4] - last[3] > 0.4  # due ~19 ms in, answered after ~10 rounds of 50 ms


@options(close=True)
async def test_a_server_closing_after_each_answer(server: Server) -> None:
    sender = OpenLoop("127.0.0.1", server.port, 16)
    await sender.run(requests(30), rate=300.0, warm=4)
    sender.close()
    assert sorted(tag for tag, *_ in sender.answers) == list(range(30)) and not sender.failed


@options(mute=True)
async def test_unanswered_requests_count_as_failed(server: Server) -> None:
    sender = OpenLoop("127.0.0.1", server.port, 4)
    await sender.run(requests(3), rate=100.0, warm=4, patience=0.3)
    sender.close()
    assert sorted(sender.failed) == [0, 1, 2] and not sender.answers
