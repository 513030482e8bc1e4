"""Every inbound endpoint refuses missing, wrong and replayed signatures, and stores nothing when it does.

Endpoints in gateway/app.py at the time of writing: POST /v1/messages and POST /slack/events (the
twilio/whatsapp/webchat integrations exist as packages but are not mounted by create_app, so there is
nothing to call for them yet).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest
import redis.asyncio as aioredis

from gateway import keys
from integrations.webhook.signature import sign
from tests.harness import API_SECRET, Gateway

BODY = {"customer_id": "sig-1", "message_id": "m-1", "text": "hello"}


async def stored(redis: aioredis.Redis, partitions: int) -> int:
    return sum([int(await redis.xlen(keys.inbound_stream(p))) for p in range(partitions)])


async def raw_post(gw: Gateway, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
    async with gw.session.post(f"{gw.url}/v1/messages", data=body,
                               headers={"Content-Type": "application/json", **headers}) as resp:
        return resp.status, await resp.json()


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "garbage",
        "t=abc,v1=00",
        "v1=" + "0" * 64,
        "t={now},v1=" + "0" * 64,
        "t={now},v1={wrong_secret}",
        "t={old},v1={old_sig}",  # a captured request replayed after the 5-minute window
        "t={future},v1={future_sig}",
        "t={now},v0={good}",  # right MAC under the wrong scheme name
        "t={now},v1={tampered}",  # signature of a different body
    ],
)
async def test_api_refuses_bad_signatures(gateway: Gateway, redis: aioredis.Redis, header: str | None) -> None:
    body = json.dumps(BODY).encode()
    now, old, future = int(time.time()), int(time.time()) - 301, int(time.time()) + 301
    values = {
        "now": now, "old": old, "future": future,
        "good": sign(API_SECRET, body, now).split("v1=")[1],
        "wrong_secret": sign("not-the-secret", body, now).split("v1=")[1],
        "old_sig": sign(API_SECRET, body, old).split("v1=")[1],
        "future_sig": sign(API_SECRET, body, future).split("v1=")[1],
        "tampered": sign(API_SECRET, body.replace(b"hello", b"hellO"), now).split("v1=")[1],
    }
    headers = {} if header is None else {"X-Switchboard-Signature": header.format(**values)}
    status, answer = await raw_post(gateway, body, headers)
    assert status == 401 and answer["error"] == "bad_signature"
    assert await stored(redis, gateway.settings.partitions) == 0


async def test_api_replay_inside_window_is_idempotent(gateway: Gateway, redis: aioredis.Redis) -> None:
    """Inside the window a byte-identical replay cannot add anything: message_id de-duplication."""
    body = json.dumps(BODY).encode()
    headers = {"X-Switchboard-Signature": sign(API_SECRET, body)}
    first = await raw_post(gateway, body, headers)
    replays = [await raw_post(gateway, body, headers) for _ in range(3)]
    assert first[0] == 202 and not first[1]["duplicate"]
    assert all(s == 202 and a["duplicate"] and a["conversation_id"] == first[1]["conversation_id"] for s, a in replays)
    assert await stored(redis, gateway.settings.partitions) == 1


def slack_headers(secret: str, body: str, ts: int | None = None, sig: str | None = None) -> dict[str, str]:
    t = str(int(time.time()) if ts is None else ts)
    mac = hmac.new(secret.encode(), f"v0:{t}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "X-Slack-Request-Timestamp": t,
            "X-Slack-Signature": sig if sig is not None else f"v0={mac}"}


@pytest.mark.parametrize("case", ["missing", "wrong_secret", "replayed_old", "tampered", "no_timestamp"])
async def test_slack_events_refuse_bad_signatures(gateway: Gateway, redis: aioredis.Redis, case: str) -> None:
    body = json.dumps({"type": "url_verification", "challenge": "c", "token": "legacy"})
    secret = gateway.rt.slack.signing_secret
    headers = {
        "missing": {"Content-Type": "application/json"},
        "wrong_secret": slack_headers("not-the-secret", body),
        "replayed_old": slack_headers(secret, body, ts=int(time.time()) - 6 * 60),
        "tampered": slack_headers(secret, body.replace('"c"', '"d"')),
        "no_timestamp": {k: v for k, v in slack_headers(secret, body).items() if k != "X-Slack-Request-Timestamp"},
    }[case]
    async with gateway.session.post(f"{gateway.url}/slack/events", data=body.encode(), headers=headers) as resp:
        assert resp.status == 401, await resp.text()
    ok = slack_headers(secret, body)
    async with gateway.session.post(f"{gateway.url}/slack/events", data=body.encode(), headers=ok) as resp:
        assert resp.status == 200  # the same body, signed properly, is served: the refusal was the signature
