"""An erasure deletes the visitor's web chat session records at once, not when they expire.

A session record (what a widget's socket token points to) holds the conversation, the visitor id, and the name and
email the visitor gave, for the token's lifetime (15 minutes by default, up to a day). Before, an erasure left them
to expire: the data outlived the erasure's report, and the old token still opened a socket.
Through the real gateway, worker, Redis, the widget's HTTP and WebSocket endpoints and the Slack emulator.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from annotated_types import Le

from gateway import keys
from gateway.redis_conn import as_str
from integrations.webchat.config import WebchatConfig
from integrations.webchat.session import INDEX_TTL_S, SESSION_SLACK_S
from tests.harness import Gateway, forget, make_settings, start_gateway, stored_card

IDENTITY = {"name": "Alice Private", "email": "alice.private@example.org"}


async def _session(gw: Gateway, body: dict[str, Any]) -> dict[str, Any]:
    async with gw.session.post(f"{gw.url}/webchat/session", json=body, headers={"Origin": gw.url}) as resp:
        assert resp.status == 200, await resp.text()
        answer: dict[str, Any] = await resp.json()
    return answer


async def _records(redis: aioredis.Redis) -> list[str]:
    return [as_str(await redis.get(k) or "") for k in await redis.keys(keys.webchat_session("*"))]


async def test_an_erasure_deletes_the_visitors_session_records(
    redis: aioredis.Redis, redis_url: str, tmp_path: Path
) -> None:
    gw = await start_gateway(make_settings(redis_url, tmp_path))
    try:
        first = await _session(gw, {"identity": IDENTITY})
        ws = await gw.session.ws_connect(f"{gw.url}/webchat/ws?token={first['token']}&since=0",
                                         headers={"Origin": gw.url})
        await ws.send_json({"type": "message", "client_id": "c1", "text": "I was charged twice on my invoice"})
        _, conv_id = await stored_card(gw, "support-billing")
        assert conv_id == first["conversation_id"]
        await ws.close()
        # The widget refreshes its token: a second record for the same conversation.
        again = await _session(gw, {"resume": first["resume"], "identity": IDENTITY})
        assert again["conversation_id"] == conv_id
        records = await _records(redis)
        assert len(records) == 2 and all("alice.private@example.org" in r for r in records)
        assert await redis.zcard(keys.webchat_sessions(conv_id)) == 2

        conv = await gw.rt.store.load(conv_id)
        assert conv is not None
        await forget(gw, conv.customer.key)

        assert await _records(redis) == []
        assert not await redis.exists(keys.webchat_sessions(conv_id))
        for token in (first["token"], again["token"]):  # the tokens open nothing any more
            try:
                await gw.session.ws_connect(f"{gw.url}/webchat/ws?token={token}", headers={"Origin": gw.url})
                raise AssertionError("an erased visitor's token still opened a socket")
            except aiohttp.WSServerHandshakeError as exc:
                assert exc.status == 401
    finally:
        await gw.close()


async def test_the_index_forgets_expired_records_and_outlives_any_record(
    redis: aioredis.Redis, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEBCHAT_TOKEN_TTL", "30")
    gw = await start_gateway(make_settings(redis_url, tmp_path), with_worker=False)
    try:
        first = await _session(gw, {})
        index = keys.webchat_sessions(first["conversation_id"])
        assert await redis.zcard(index) == 1
        await redis.zadd(index, {"long-gone": 1.0})  # a record that expired long ago
        await _session(gw, {"resume": first["resume"]})
        assert await redis.zcard(index) == 2  # the expired one dropped, two live ones
        # The longest any record may live, whatever this process's TTL: another's may be a day.
        assert INDEX_TTL_S - 5 <= await redis.ttl(index) <= INDEX_TTL_S
        longest = next(m.le for m in WebchatConfig.model_fields["token_ttl_s"].metadata if isinstance(m, Le))
        assert isinstance(longest, int) and INDEX_TTL_S >= longest + SESSION_SLACK_S
    finally:
        await gw.close()
