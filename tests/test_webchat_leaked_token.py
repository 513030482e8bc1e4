"""What a web chat token seen once (a proxy's access log, a Referer, browser history) is worth: nothing lasting.

The token used to be readable base64 holding the visitor id, name and email, and the visitor id alone got a
new token for the same conversation from `POST /webchat/session`, for ever. Real server, real Redis and the
real store's ingest, over HTTP and WebSockets.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from integrations.webchat import tokens
from tests.test_webchat_support import IDENTITY_SECRET, Chat, ack_and_echo, chat, recv, recv_until, start_chat

__all__ = ["chat"]

SECRET_WORDS = "my password reset code is 448812"
PROTOCOL = "switchboard.v1"
"""What the server answers in `Sec-WebSocket-Protocol`; the widget offers it and `TOKEN_PROTOCOL` + token."""
TOKEN_PROTOCOL = "switchboard.token."


def token_key(sid: str) -> str:
    """Where the session record a token points to is kept (`gateway.keys.webchat_session`), spelled out here so
    that a rename, which would cut every live widget off at a deploy, is noticed."""
    return f"sb:webchat:token:{sid}"


def readable(token: str) -> dict[str, Any]:
    """What anyone holding the token can read from it without any key."""
    body = token.split(".")[0]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    return decoded


async def victim(chat: Chat) -> dict[str, Any]:
    """A visitor who gave a name and email and said something private; their session answer."""
    s = await chat.session({"identity": {"name": "Victor Victim", "email": "victor@example.com"}})
    assert s["_status"] == 200, s
    ws = await chat.connect(s["token"])
    await ws.send_json({"type": "message", "client_id": "c1", "text": SECRET_WORDS})
    await ack_and_echo(ws)
    await ws.close()
    return s


async def frames_until_quiet(ws: aiohttp.ClientWebSocketResponse, quiet_s: float = 1.0) -> list[dict[str, Any]]:
    """Every frame the server pushes until it has said nothing for `quiet_s`: the replayed transcript, if any."""
    seen: list[dict[str, Any]] = []
    while True:
        try:
            msg = await ws.receive(timeout=quiet_s)
        except TimeoutError:
            return seen
        if msg.type is not aiohttp.WSMsgType.TEXT:
            return seen
        seen.append(json.loads(msg.data))


async def test_a_logged_token_holds_no_visitor_id_name_or_email(chat: Chat) -> None:
    s = await victim(chat)
    claims = readable(s["token"])
    assert set(claims) == {"sid", "exp"}, claims
    for secret in (s["visitor_id"], s["resume"], s["conversation_id"], "Victor", "victor@example.com"):
        assert secret not in json.dumps(claims) and secret not in s["token"]
    # A signed user's id (often an email address) is not in it either.
    signed = await chat.session({"identity": {"user_id": "jane@example.com", "name": "Jane",
                                              "user_hash": tokens.identity_hash(IDENTITY_SECRET, "jane@example.com")}})
    assert signed["_status"] == 200 and signed["resume"] is None
    assert "jane" not in json.dumps(readable(signed["token"])).lower()


async def test_the_visitor_id_alone_no_longer_opens_the_conversation(chat: Chat) -> None:
    """The reviewer's repro: the visitor id (from the token, a card, a log) asked for a new session and got the
    whole transcript. A bare visitor id (a widget from before resume secrets sends only that) now starts a new
    conversation of a new visitor."""
    s = await victim(chat)
    stolen = await chat.session({"visitor_id": s["visitor_id"]})
    assert stolen["_status"] == 200
    assert stolen["conversation_id"] != s["conversation_id"]
    assert stolen["visitor_id"] != s["visitor_id"]
    ws = await chat.connect(stolen["token"])
    shown = await frames_until_quiet(ws)
    assert SECRET_WORDS not in json.dumps(shown), shown
    await ws.close()
    # Nor does a made-up resume secret lead anywhere but to a visitor of its own.
    guessed = await chat.session({"resume": "r-" + "0" * 64, "visitor_id": s["visitor_id"]})
    assert guessed["conversation_id"] != s["conversation_id"]


async def test_the_resume_secret_in_the_body_brings_the_visitor_back(chat: Chat) -> None:
    s = await victim(chat)
    assert s["resume"].startswith("r-") and s["visitor_id"].startswith("v-") and s["resume"] != s["visitor_id"]
    again = await chat.session({"resume": s["resume"]})
    assert again["_status"] == 200 and again["conversation_id"] == s["conversation_id"]
    assert again["resume"] == s["resume"] and again["visitor_id"] == s["visitor_id"] and again["token"] != s["token"]
    ws = await chat.connect(again["token"])
    shown = await frames_until_quiet(ws)
    assert [f["text"] for f in shown if f["type"] == "message"] == [SECRET_WORDS]
    await ws.close()
    bad = await chat.session({"resume": "not-a-secret"})
    assert bad["_status"] == 400


async def test_a_token_does_not_outlive_its_session_record(chat: Chat, redis: aioredis.Redis) -> None:
    """The token names a record kept for its lifetime; once that is gone the token opens nothing, whatever it
    says about itself."""
    s = await chat.session()
    sid = readable(s["token"])["sid"]
    ttl = await redis.ttl(token_key(sid))
    assert 0 < ttl <= 900 + 5  # the default WEBCHAT_TOKEN_TTL, plus the record's few seconds of slack
    record = await redis.get(token_key(sid))
    assert record is not None and json.loads(record)["vid"] == s["visitor_id"]
    await redis.delete(token_key(sid))
    try:
        await chat.http.ws_connect(f"{chat.url}/webchat/ws?token={s['token']}", headers={"Origin": chat.url})
        raise AssertionError("a token without its session record opened a socket")
    except aiohttp.WSServerHandshakeError as exc:
        assert exc.status == 401


async def test_the_token_rides_in_the_subprotocol_header_not_the_url(redis: aioredis.Redis) -> None:
    """What the widget does: `?since=` only in the URL, the token offered as a subprotocol. The server answers
    with `switchboard.v1` (a browser drops a handshake that answers none of its offered protocols), refusals
    included, or the widget could not read why it was refused."""
    chat, runner = await start_chat(redis, sockets_per_visitor=1)
    try:
        s = await chat.session()
        offered = (PROTOCOL, TOKEN_PROTOCOL + s["token"])
        ws = await chat.http.ws_connect(f"{chat.url}{s['ws_path']}?since=0", protocols=offered,
                                        headers={"Origin": chat.url})
        assert ws.protocol == PROTOCOL == s["ws_protocol"]
        assert (await recv(ws))["type"] == "hello"
        await ws.send_json({"type": "message", "client_id": "c1", "text": "hello"})
        assert (await recv_until(ws, "ack"))["client_id"] == "c1"
        second = await chat.http.ws_connect(f"{chat.url}{s['ws_path']}?since=0", protocols=offered,
                                            headers={"Origin": chat.url})
        assert second.protocol == PROTOCOL
        refusal = await recv(second)
        assert refusal["code"] == "too_many_tabs"
        await second.close()
        await ws.close()
        forged = (PROTOCOL, TOKEN_PROTOCOL + "forged.token")
        try:
            await chat.http.ws_connect(f"{chat.url}/webchat/ws", protocols=forged, headers={"Origin": chat.url})
            raise AssertionError("a forged token in the header opened a socket")
        except aiohttp.WSServerHandshakeError as exc:
            assert exc.status == 401
    finally:
        await chat.http.close()
        await runner.cleanup()
