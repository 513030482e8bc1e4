"""A compressed body is refused before it is inflated, and malformed requests get a 4xx, never a 500.

Found in the security review: a 1 MB gzip body of zeros (1 GB inflated), unsigned, got its 413 at once, but
aiohttp went on inflating the rest on the event loop: `/healthz` stalled 3-5 s per request, every chat socket
and the Slack endpoint with it. A broken gzip body on `/webchat/session`, and a Slack timestamp that is no number,
each ended in a 500 with a traceback.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from tests.harness import Gateway, make_settings, start_gateway

INFLATED_MB = 1000


@pytest.fixture(scope="module")
def bomb() -> bytes:
    """~1 MB of gzip that inflates to 1 GB of zeros, made a megabyte at a time."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: gzip framing
    chunk = bytes(1 << 20)
    return b"".join(packer.compress(chunk) for _ in range(INFLATED_MB)) + packer.flush()


@pytest.fixture
async def gw(redis: aioredis.Redis, redis_url: str, tmp_path: Iterator[None]) -> AsyncIterator[Gateway]:
    gateway = await start_gateway(make_settings(redis_url, tmp_path), with_worker=False)  # type: ignore[arg-type]
    yield gateway
    await gateway.close()


async def _health_stalls(gw: Gateway, stop: asyncio.Event) -> float:
    worst = 0.0
    while not stop.is_set():
        started = time.monotonic()
        async with gw.session.get(f"{gw.url}/healthz") as resp:
            assert resp.status == 200
        worst = max(worst, time.monotonic() - started)
        await asyncio.sleep(0.05)
    return worst


@pytest.mark.parametrize("path", ["/v1/messages", "/webchat/session", "/channels/twilio", "/slack/events"])
async def test_a_gzip_bomb_is_refused_without_inflating_it(gw: Gateway, bomb: bytes, path: str) -> None:
    stop = asyncio.Event()
    watcher = asyncio.create_task(_health_stalls(gw, stop))
    statuses = []
    for _ in range(3):
        async with gw.session.post(f"{gw.url}{path}", data=bomb, headers={
                "Content-Type": "application/json", "Content-Encoding": "gzip"}) as resp:
            statuses.append((resp.status, (await resp.json())["error"]))
    await asyncio.sleep(0.3)
    stop.set()
    worst = await watcher
    assert statuses == [(415, "unsupported_content_encoding")] * 3
    assert worst < 2.0, f"/healthz waited {worst:.1f} s while the bodies arrived"  # inflated: 3-5 s


async def test_a_broken_gzip_body_is_a_415_not_a_500(gw: Gateway) -> None:
    async with gw.session.post(f"{gw.url}/webchat/session", data=b"garbage", headers={
            "Content-Type": "application/json", "Content-Encoding": "gzip"}) as resp:
        assert resp.status == 415


@pytest.mark.parametrize("stamp", ["abc", "1e9999", ""])
async def test_a_slack_timestamp_that_is_no_number_is_refused(gw: Gateway, stamp: str) -> None:
    headers = {"Content-Type": "application/json", "X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": "v0=00"}
    async with gw.session.post(f"{gw.url}/slack/events", data=b'{"type": "event_callback"}',
                               headers=headers) as resp:
        assert resp.status == 401
        assert (await resp.json())["error"] == "invalid_signature"
