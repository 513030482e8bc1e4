"""A Slack (or a proxy in front of it) that takes the connection and never answers costs seconds, not minutes.

slack_sdk applies its `timeout` only to sessions it opens itself; on the shared session aiohttp's default
(300 s) held a partition, and a SIGTERM, for five minutes per call.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from integrations.slack.desk import SLACK_TIMEOUT_S, make_client, slack_session
from tests.harness import make_settings, start_gateway


async def test_a_slack_that_never_answers_times_out() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        await asyncio.sleep(60)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    session = slack_session(timeout_s=0.5)
    client = make_client("xoxb-x", f"http://127.0.0.1:{port}/api/", retries=False, session=session)
    try:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await client.conversations_list()
        assert time.monotonic() - started < 5
    finally:
        await session.close()
        server.close()


async def test_the_gateway_s_slack_client_carries_the_limit(redis: aioredis.Redis, redis_url: str,
                                                            tmp_path: Path) -> None:
    gw = await start_gateway(make_settings(redis_url, tmp_path), with_worker=False)
    try:
        session = gw.rt.client.session
        assert session is not None and session.timeout.total == SLACK_TIMEOUT_S
        assert gw.rt.desk.poster.session is session  # the card poster rides the same one
        assert gw.rt.session.timeout.total is not None  # every other outside call has a cap too
    finally:
        await gw.close()
