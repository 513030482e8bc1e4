"""Web chat under Redis faults: error replies during ingest, a lost echo, a socket that leaves mid-SUBSCRIBE."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError, ReadOnlyError

from gateway.domain import InboundMessage
from gateway.store import Accepted, ConversationStore
from integrations.webchat import outbox
from integrations.webchat.hub import WakeHub, wake_channel
from tests.test_webchat_support import ack_and_echo, recv, recv_until, start_chat


@pytest.mark.parametrize("error", [
    ReadOnlyError("You can't write against a read only replica."),
    OutOfMemoryError("command not allowed when used memory > 'maxmemory'."),
])
async def test_an_error_reply_during_ingest_answers_unavailable_and_keeps_the_socket(
    redis: aioredis.Redis, error: Exception
) -> None:
    """READONLY (failover) or OOM used to escape the handler and kill the socket without a frame."""
    store = ConversationStore(redis, partitions=4)
    failing = [error]

    async def ingest(message: InboundMessage) -> Accepted:
        if failing:
            raise failing.pop()
        return await store.ingest(message)

    chat, runner = await start_chat(redis, ingest=ingest)
    try:
        s = await chat.session()
        ws = await chat.connect(s["token"])
        await ws.send_json({"type": "message", "client_id": "c1", "text": "are you there?"})
        err = await recv_until(ws, "error")
        assert err["code"] == "unavailable" and err["client_id"] == "c1" and err["retry_after"] == 2
        await ws.send_json({"type": "message", "client_id": "c1", "text": "are you there?"})  # the widget's resend
        ack, _ = await ack_and_echo(ws)
        assert ack["duplicate"] is False
        assert [m["text"] for m in await chat.transcript(s["conversation_id"])] == ["are you there?"]
        await ws.close()
    finally:
        await chat.http.close()
        await runner.cleanup()


async def test_real_out_of_memory_answers_503_and_unavailable(redis: aioredis.Redis) -> None:
    """A guard (this already held): Redis itself out of memory, on the session endpoint and on the socket."""
    chat, runner = await start_chat(redis)
    s = await chat.session()
    ws = await chat.connect(s["token"])
    await redis.config_set("maxmemory", 1)  # noeviction: every write that may grow memory is refused
    try:
        async with chat.http.post(f"{chat.url}/webchat/session", json={}, headers={"Origin": chat.url}) as r:
            assert r.status == 503 and r.headers["Retry-After"] == "2"
            assert (await r.json())["error"] == "unavailable"
        await ws.send_json({"type": "message", "client_id": "c1", "text": "hello?"})
        err = await recv_until(ws, "error")
        assert err["code"] == "unavailable" and err["client_id"] == "c1"
        await ws.send_json({"type": "ping"})
        assert (await recv(ws))["type"] == "pong"
    finally:
        await redis.config_set("maxmemory", 0)
        await ws.close()
        await chat.http.close()
        await runner.cleanup()


async def test_no_ack_before_the_echo_is_stored(redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    """The echo used to be published after the ack with errors ignored: a blip there left the message stored
    but missing from the widget's history after a reload."""
    chat, runner = await start_chat(redis)
    real = outbox.publish
    blips = [RedisConnectionError("Connection reset by peer")]

    async def publish(
        r: aioredis.Redis, conversation_id: str, frame: dict[str, Any], dedupe_id: str | None = None
    ) -> int:
        if frame.get("direction") == "in" and blips:
            raise blips.pop()
        return await real(r, conversation_id, frame, dedupe_id=dedupe_id)

    monkeypatch.setattr(outbox, "publish", publish)
    try:
        s = await chat.session()
        ws = await chat.connect(s["token"])
        await ws.send_json({"type": "message", "client_id": "c1", "text": "my order #123"})
        first = await recv(ws)
        assert first["type"] == "error" and first["code"] == "unavailable" and first["client_id"] == "c1"
        await ws.send_json({"type": "message", "client_id": "c1", "text": "my order #123"})
        ack, echo = await ack_and_echo(ws)
        assert ack["duplicate"] is True  # stored the first time; only the echo was missing
        assert echo["id"] == ack["message_id"] and echo["client_id"] == "c1"
        await ws.close()
        reload = await chat.connect(s["token"])  # a reload replays the history from seq 0
        history = await recv_until(reload, "message")
        assert (history["seq"], history["text"], history["direction"]) == (1, "my order #123", "in")
        await reload.send_json({"type": "ping"})
        assert (await recv(reload))["type"] == "pong"  # exactly one echo
        await reload.close()
    finally:
        await chat.http.close()
        await runner.cleanup()


# --- the wake-up hub ------------------------------------------------------------------------------------


async def _slow_subscribes(hub: WakeHub) -> None:
    """A SUBSCRIBE that takes a Redis round trip (exaggerated), so a socket can close while it is in flight."""
    await hub._ensure_started()
    real = hub.pubsub.subscribe

    async def slow(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(0.05)
        return await real(*args, **kwargs)

    hub.pubsub.subscribe = slow


async def _live(redis: aioredis.Redis, hub: WakeHub, conversation_id: str) -> Any:
    queue = await hub.watch(conversation_id)
    try:
        await redis.publish(wake_channel(conversation_id), '1 {"type":"message"}')
        return await asyncio.wait_for(queue.get(), 1.0)
    finally:
        await hub.unwatch(conversation_id, queue)


async def test_a_socket_closing_mid_subscribe_leaves_no_watcher_and_live_frames_still_flow(
    redis: aioredis.Redis,
) -> None:
    """The leaked watcher made later sockets skip SUBSCRIBE (count already >= 1): replies only by the 5 s poll."""
    hub = WakeHub(redis)
    try:
        await _slow_subscribes(hub)
        watching = asyncio.create_task(hub.watch("conv_y"))
        await asyncio.sleep(0.01)
        watching.cancel()  # the socket closed right after connecting
        with pytest.raises(asyncio.CancelledError):
            await watching
        assert hub.waiters == {}
        assert await _live(redis, hub, "conv_y") == (1, {"type": "message"})
        assert hub.waiters == {}
    finally:
        await hub.close()


async def test_a_failed_subscribe_is_retried_by_the_next_socket(redis: aioredis.Redis) -> None:
    hub = WakeHub(redis)
    try:
        await hub._ensure_started()
        real = hub.pubsub.subscribe
        hub.pubsub.subscribe = _refused
        first = await hub.watch("conv_z")  # a blip: this socket polls
        hub.pubsub.subscribe = real
        assert await _live(redis, hub, "conv_z") == (1, {"type": "message"})  # a second socket subscribes
        await hub.unwatch("conv_z", first)
    finally:
        await hub.close()


async def _refused(*args: Any, **kwargs: Any) -> Any:
    raise RedisConnectionError("Connection reset by peer")
