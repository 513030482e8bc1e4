"""Web chat over real HTTP and WebSockets, real Redis and the real store's ingest."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from gateway import keys
from gateway.domain import ChannelKind, Conversation, Customer, Message
from integrations.webchat import outbox, publish_status, publish_typing, request_csat, set_eta, tokens
from tests.harness import outcomes
from tests.test_webchat_support import (
    IDENTITY_SECRET,
    TOKEN_SECRET,
    Chat,
    ack_and_echo,
    chat,
    queued_profiles,
    recv,
    recv_until,
    start_chat,
)

__all__ = ["chat"]


async def test_message_is_acked_after_ingest_and_stored_once_even_when_resent(chat: Chat) -> None:
    s = await chat.session()
    assert s["_status"] == 200 and s["visitor_id"].startswith("v-") and s["conversation_id"].startswith("conv_")
    reserved = keys.customer_conversation(f"webchat:{s['visitor_id']}")
    assert 0 < await chat.redis.ttl(reserved) <= 86400  # a session that never chats leaves nothing behind
    ws = await chat.connect(s["token"])
    await ws.send_json({"type": "message", "client_id": "c1", "text": "Where is my parcel?"})
    ack, echo = await ack_and_echo(ws)
    assert ack["client_id"] == "c1" and ack["duplicate"] is False
    assert ack["conversation_id"] == s["conversation_id"]
    assert echo["direction"] == "in" and echo["client_id"] == "c1" and echo["seq"] == 1
    # The client re-sends (it never saw the ack): accepted once, same ids.
    await ws.send_json({"type": "message", "client_id": "c1", "text": "Where is my parcel?"})
    again = await recv_until(ws, "ack")
    assert await chat.redis.ttl(reserved) == -1  # kept for good once a message is stored
    assert again["duplicate"] is True and again["message_id"] == ack["message_id"]
    lines = await chat.transcript(s["conversation_id"])
    assert [m["text"] for m in lines] == ["Where is my parcel?"]
    assert lines[0]["channel"] == "webchat"
    # A second session for the same visitor continues the same conversation.
    s2 = await chat.session({"resume": s["resume"]})
    assert s2["conversation_id"] == s["conversation_id"]
    await ws.close()


async def test_resume_after_forced_close_loses_and_duplicates_nothing(chat: Chat) -> None:
    s = await chat.session()
    ws = await chat.connect(s["token"])
    await ws.send_json({"type": "message", "client_id": "c1", "text": "hello"})
    seen: list[dict[str, Any]] = [(await ack_and_echo(ws))[1]]
    first = await chat.reply(s["conversation_id"], s["visitor_id"], "Hi, Alice here")
    seen.append(await recv_until(ws, "message"))
    assert [f["direction"] for f in seen] == ["in", "out"] and seen[1]["id"] == first.id
    assert seen[1]["author"] == "Alice"
    last_seq = seen[-1]["seq"]
    await ws.close()  # forced drop
    # While the customer is away: two replies, one resent by a worker after a crash.
    missed = [await chat.reply(s["conversation_id"], s["visitor_id"], f"missed {i}") for i in range(2)]
    assert (await chat.channel.send(*await _conv_msg(chat, s, missed[1]))).ok  # same id again: not doubled
    ws = await chat.connect(s["token"], since=last_seq)
    frames = [await recv_until(ws, "message") for _ in range(2)]
    assert [f["text"] for f in frames] == ["missed 0", "missed 1"]
    assert [f["seq"] for f in frames] == [last_seq + 1, last_seq + 2]
    await ws.send_json({"type": "ping"})
    assert (await recv(ws))["type"] == "pong"  # nothing else was queued in between
    await ws.close()


async def _conv_msg(chat: Chat, s: dict[str, Any], message: Message) -> tuple[Conversation, Message]:
    conv = Conversation(id=s["conversation_id"], customer=Customer(
        key=f"webchat:{s['visitor_id']}", channel=ChannelKind.WEBCHAT, external_id=s["visitor_id"]))
    return conv, message


async def test_origin_allow_list(chat: Chat, redis: aioredis.Redis) -> None:
    s = await chat.session()
    for headers in ({"Origin": "https://evil.example"}, {}):
        try:
            await chat.http.ws_connect(f"{chat.url}/webchat/ws?token={s['token']}", headers=headers)
            raise AssertionError("socket opened from a foreign origin")
        except aiohttp.WSServerHandshakeError as exc:
            assert exc.status == 403
    refused = await chat.session(origin="https://evil.example")
    assert refused["_status"] == 403 and refused["error"] == "origin_not_allowed"
    other, runner = await start_chat(redis, allowed_origins="https://shop.example, https://www.shop.example")
    try:
        s2 = await other.session(origin="https://shop.example")
        assert s2["_status"] == 200
        ws = await other.connect(s2["token"], origin="https://www.shop.example")
        await ws.close()
        async with other.http.options(f"{other.url}/webchat/session", headers={"Origin": "https://shop.example"}) as r:
            assert r.status == 204 and r.headers["Access-Control-Allow-Origin"] == "https://shop.example"
    finally:
        await other.http.close()
        await runner.cleanup()


async def test_size_and_rate_limits_answer_clear_errors(chat: Chat) -> None:
    s = await chat.session()
    ws = await chat.connect(s["token"])
    await ws.send_json({"type": "message", "client_id": "big", "text": "x" * 4001})
    err = await recv_until(ws, "error")
    assert err["code"] == "message_too_long" and err["client_id"] == "big" and err["limit"] == 4000
    acks = 0
    for i in range(11):
        await ws.send_json({"type": "message", "client_id": f"r{i}", "text": f"message {i}"})
    errors: list[dict[str, Any]] = []
    while acks + len(errors) < 11:
        f = await recv(ws)
        acks += f["type"] == "ack"
        if f["type"] == "error":
            errors.append(f)
    assert acks == 10 and [e["code"] for e in errors] == ["rate_limited"] and errors[0]["client_id"] == "r10"
    assert 1 <= errors[0]["retry_after"] <= 10
    assert len(await chat.transcript(s["conversation_id"])) == 10
    await ws.send_json({"type": "nonsense"})
    assert (await recv_until(ws, "error"))["code"] == "invalid_frame"
    await ws.close()



async def test_bad_tokens_and_identity_are_refused(chat: Chat) -> None:
    expired = tokens.issue(TOKEN_SECRET.encode(), tokens.TokenClaims(sid="0" * 32, exp=int(time.time()) - 1))
    for token in ("forged.token", expired, "abc.d%C3%A9f"):  # a non-ASCII mac was a 500
        try:
            await chat.http.ws_connect(f"{chat.url}/webchat/ws?token={token}", headers={"Origin": chat.url})
            raise AssertionError("bad token accepted")
        except aiohttp.WSServerHandshakeError as exc:
            assert exc.status == 401
    bad = await chat.session({"identity": {"user_id": "42", "user_hash": "00" * 32, "email": "jane@example.com"}})
    assert bad["_status"] == 401 and bad["error"] == "bad_identity"
    unsigned = await chat.session({"identity": {"user_id": "42"}})
    assert unsigned["_status"] == 401
    assert (await chat.session({"visitor_id": "user:42"}))["_status"] == 400
    good_hash = tokens.identity_hash(IDENTITY_SECRET, "42")
    good = await chat.session({"identity": {"user_id": "42", "user_hash": good_hash, "name": "Jane Doe"}})
    assert good["_status"] == 200 and good["visitor_id"] is None
    ws = await chat.connect(good["token"])
    await ws.send_json({"type": "message", "client_id": "c1", "text": "hi"})
    await recv_until(ws, "ack")
    assert await queued_profiles(chat.redis) == [("webchat:user:42", {"name": "Jane Doe"})]
    await ws.close()
    # A host site's long user id (an email-shaped or URN id of 200 characters) still chats: the message id
    # `<customer id>/<client id>` must fit an identifier, so a long user id is replaced by its digest.
    long_id = "urn:example:customer:" + "7" * 179
    signed = tokens.identity_hash(IDENTITY_SECRET, long_id)
    session = await chat.session({"identity": {"user_id": long_id, "user_hash": signed}})
    ws = await chat.connect(session["token"])
    await ws.send_json({"type": "message", "client_id": "c" + "9" * 24, "text": "hello from a long id"})
    assert (await recv_until(ws, "ack"))["duplicate"] is False
    again = await chat.session({"identity": {"user_id": long_id, "user_hash": signed}})
    assert again["conversation_id"] == session["conversation_id"]  # the same customer each time
    await ws.close()


async def test_typing_status_eta_and_csat(chat: Chat, redis: aioredis.Redis) -> None:
    s = await chat.session()
    conv = s["conversation_id"]
    ws = await chat.connect(s["token"])
    await ws.send_json({"type": "typing", "typing": True})
    await asyncio.sleep(0.1)
    assert await outbox.customer_typing(redis, conv)
    assert 0 < await redis.ttl(outbox.typing_key(conv)) <= 6
    await publish_typing(redis, conv, "Alice")
    typing = await recv_until(ws, "typing")
    assert typing["author"] == "Alice" and typing["typing"] is True
    await set_eta(redis, conv, 4)
    await publish_status(redis, conv)
    assert (await recv_until(ws, "status"))["eta_minutes"] == 4
    await request_csat(redis, conv, request_id="resolution-1")
    await request_csat(redis, conv, request_id="resolution-1")
    await recv_until(ws, "csat_request")
    await ws.send_json({"type": "csat", "score": 5, "comment": "quick, thanks"})
    # The ack answers this socket; "rated" goes through the stream (for reloads and other tabs): either order.
    answers = {f["type"]: f for f in [await recv(ws), await recv(ws)]}
    assert answers.keys() == {"csat_ack", "csat_rated"} and answers["csat_ack"]["score"] == 5
    stored = await redis.hgetall(outbox.csat_key(conv))
    assert stored[b"score"] == b"5" and stored[b"comment"] == b"quick, thanks"
    # Published for stats and the learners (it never was), once: a second rating of one request is not counted.
    assert [o["csat"] for o in await outcomes(redis) if o["conversation_id"] == conv] == [5]
    await ws.send_json({"type": "csat", "score": 1})
    # Answered with what was kept: echoing the discarded 1 showed the customer a rating nobody counted.
    assert (await recv_until(ws, "csat_ack")) == {"type": "csat_ack", "score": 5, "counted": False}
    assert [o["csat"] for o in await outcomes(redis) if o["conversation_id"] == conv] == [5]
    assert (await redis.hgetall(outbox.csat_key(conv)))[b"score"] == b"5"
    await ws.send_json({"type": "ping"})
    assert (await recv_until(ws, "pong"))["type"] == "pong"  # the second csat_request was de-duplicated
    await ws.close()


async def test_local_mode_needs_no_configuration(redis: aioredis.Redis) -> None:
    """No secrets, no origins: generated token key, own origin only, and host identities cannot be verified."""
    import aiohttp as _aiohttp
    from aiohttp import web

    from gateway.store import ConversationStore
    from integrations.webchat import WebchatConfig, setup
    from tests.conftest import free_port

    app = web.Application()
    async with _aiohttp.ClientSession() as http:
        setup(app, redis=redis, ingest=ConversationStore(redis, 4).ingest, session=http,
              config=WebchatConfig(_env_file=None))  # type: ignore[call-arg]
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        url = f"http://127.0.0.1:{port}"
        try:
            async with http.get(f"{url}/webchat/widget.js") as r:
                assert r.status == 200 and "javascript" in r.headers["Content-Type"]
            async with http.get(f"{url}/webchat/") as r:
                assert r.status == 200 and "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
            async with http.post(f"{url}/webchat/session", json={}, headers={"Origin": url}) as r:
                s = await r.json()
            async with http.ws_connect(f"{url}/webchat/ws?token={s['token']}", headers={"Origin": url}) as ws:
                assert (await recv(ws))["type"] == "hello"
                await ws.send_json({"type": "message", "client_id": "c1", "text": "hi"})
                assert (await recv_until(ws, "ack"))["duplicate"] is False
            async with http.post(f"{url}/webchat/session", json={"identity": {"user_id": "1", "user_hash": "ab"}},
                                 headers={"Origin": url}) as r:
                assert r.status == 401
        finally:
            await runner.cleanup()


async def test_frames_arrive_after_the_wake_up_connection_is_killed(chat: Chat, redis: aioredis.Redis) -> None:
    s = await chat.session()
    ws = await chat.connect(s["token"])
    await chat.reply(s["conversation_id"], s["visitor_id"], "before")
    assert (await recv_until(ws, "message"))["text"] == "before"
    killed = await redis.client_kill_filter(_type="pubsub")
    assert killed >= 1
    started = time.monotonic()
    await chat.reply(s["conversation_id"], s["visitor_id"], "after")
    frame = await recv_until(ws, "message", timeout=8)
    assert frame["text"] == "after" and time.monotonic() - started < 6.5
    await chat.reply(s["conversation_id"], s["visitor_id"], "again")
    assert (await recv_until(ws, "message", timeout=3))["text"] == "again"  # wake-ups are back
    await ws.close()


async def test_a_lost_publish_is_filled_from_the_stream_in_order(chat: Chat, redis: aioredis.Redis) -> None:
    s = await chat.session()
    conv = s["conversation_id"]
    ws = await chat.connect(s["token"])
    await chat.reply(conv, s["visitor_id"], "one")
    assert (await recv_until(ws, "message"))["seq"] == 1
    # A frame that reached the stream but whose pub/sub message was lost (written without PUBLISH).
    lost = {"type": "message", "direction": "out", "id": "msg_lost", "text": "two", "author": "Alice", "at": "x"}
    await redis.xadd(outbox.out_stream(conv), {"f": json.dumps(lost)}, id="2-1")
    await redis.set(outbox.seq_key(conv), 2)
    await chat.reply(conv, s["visitor_id"], "three")  # seq 3 arrives live: the gap makes the socket read seq 2
    frames = [await recv_until(ws, "message", timeout=3) for _ in range(2)]
    assert [(f["seq"], f["text"]) for f in frames] == [(2, "two"), (3, "three")]
    await ws.send_json({"type": "ping"})
    assert (await recv(ws))["type"] == "pong"  # and nothing twice
    await ws.close()


async def test_wake_hub_degrades_to_polling_when_redis_is_down() -> None:
    from integrations.webchat.hub import WakeHub
    from tests.conftest import free_port

    dead = aioredis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.3)
    hub = WakeHub(dead)
    try:
        queue = await hub.watch("conv_x")  # no exception: the socket falls back to reading the stream
        assert queue.empty() and hub.task is None
        await hub.unwatch("conv_x", queue)
    finally:
        await hub.close()
        await dead.aclose()
