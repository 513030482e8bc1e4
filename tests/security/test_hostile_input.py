"""Oversized, malformed and hostile requests: each gets a clear 4xx, never a 500, and the process lives on."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from gateway import keys
from integrations.webhook.signature import sign
from tests.harness import API_SECRET, Gateway


async def post(gw: Gateway, path: str, body: bytes, headers: dict[str, str] | None = None,
               signed: bool = True) -> tuple[int, str]:
    hdrs = {"Content-Type": "application/json"}
    if signed:
        hdrs["X-Switchboard-Signature"] = sign(API_SECRET, body)
    hdrs.update(headers or {})
    async with gw.session.post(f"{gw.url}{path}", data=body, headers=hdrs) as resp:
        return resp.status, await resp.text()


async def alive(gw: Gateway) -> None:
    async with gw.session.get(f"{gw.url}/healthz") as resp:
        assert resp.status == 200


def nested(depth: int) -> bytes:
    return b'{"customer_id": "c", "message_id": "m", "text": ' + b"[" * depth + b"]" * depth + b"}"


CASES = {
    "oversized": (b'{"customer_id":"c","message_id":"m","text":"' + b"a" * 70_000 + b'"}', 413, "body_too_large"),
    "invalid_utf8": (b'{"customer_id":"c","message_id":"m","text":"\xff\xfe\xc3("}', 400, "invalid_utf8"),
    "not_json": (b"customer_id=c&text=hello", 400, "invalid_json"),
    "json_array": (b"[1, 2, 3]", 400, "invalid_message"),
    "deeply_nested_list": (nested(30_000), 400, None),
    "deeply_nested_object": (b'{"a":' * 10_000 + b"1" + b"}" * 10_000, 400, None),
    "nan_and_huge_numbers": (b'{"customer_id": NaN, "message_id": 1e999999, "text": "hi"}', 400, "invalid_message"),
    "lone_surrogate": (b'{"customer_id":"c","message_id":"m","text":"\\ud800"}', 400, None),
    "null_bytes_only": (json.dumps({"customer_id": "c", "message_id": "m", "text": "\u0000\u0000"}).encode(), 400,
                        "invalid_message"),
    "text_too_long": (json.dumps({"customer_id": "c", "message_id": "m", "text": "x" * 4001}).encode(), 400,
                      "invalid_message"),
    "unknown_field": (json.dumps({"customer_id": "c", "message_id": "m", "text": "x", "admin": True}).encode(), 400,
                      "invalid_message"),
    "bad_identifier": (json.dumps({"customer_id": "c c/../", "message_id": "m\n", "text": "x"}).encode(), 400,
                       "invalid_message"),
    "empty": (b"", 400, None),
}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_api_bodies(gateway: Gateway, redis: aioredis.Redis, case: str) -> None:
    body, status, code = CASES[case]
    got, text = await post(gateway, "/v1/messages", body)
    assert got == status, text[:300]
    if code:
        assert json.loads(text)["error"] == code
    assert sum([int(await redis.xlen(keys.inbound_stream(p))) for p in range(gateway.settings.partitions)]) == 0
    await alive(gateway)


async def test_oversized_body_with_lying_content_length_is_refused(gateway: Gateway) -> None:
    """Chunked upload (no Content-Length): the size check must hold while reading, not just on the header."""

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield b"a" * 10_000

    hdrs = {"Content-Type": "application/json", "X-Switchboard-Signature": sign(API_SECRET, b"x")}
    async with gateway.session.post(f"{gateway.url}/v1/messages", data=chunks(), headers=hdrs) as resp:
        assert resp.status == 413
    await alive(gateway)


@pytest.mark.parametrize("path", ["/v1/messages", "/slack/events", "/healthz"])
async def test_huge_headers(gateway: Gateway, path: str) -> None:
    for headers in ({"X-Junk": "a" * 20_000}, {f"X-H{i}": "v" * 100 for i in range(200)},
                    {"X-Switchboard-Signature": "t=1," + "v1=ab," * 4000}):
        async with gateway.session.post(f"{gateway.url}{path}", data=b"{}", headers=headers) as resp:
            assert 400 <= resp.status < 500, (path, resp.status)
    await alive(gateway)


async def test_slack_endpoint_refuses_oversized_bodies(gateway: Gateway) -> None:
    for body in (b"{" * 100_000, b"a" * 70_000):
        for ctype in ("application/json", "application/x-www-form-urlencoded"):
            async with gateway.session.post(f"{gateway.url}/slack/events", data=body,
                                            headers={"Content-Type": ctype}) as resp:
                assert resp.status == 413, resp.status
    await alive(gateway)


@pytest.mark.parametrize("body", [b"\xff\xfe not utf8", b"payload=%7B%7B%7B", b"{{{{", b"payload=notjson"])
async def test_slack_endpoint_answers_malformed_unsigned_bodies_with_4xx(gateway: Gateway, body: bytes) -> None:
    for ctype in ("application/json", "application/x-www-form-urlencoded"):
        async with gateway.session.post(f"{gateway.url}/slack/events", data=body,
                                        headers={"Content-Type": ctype}) as resp:
            assert 400 <= resp.status < 500, resp.status
    await alive(gateway)


async def test_wrong_methods_and_paths(gateway: Gateway) -> None:
    for method, path in (("GET", "/v1/messages"), ("PUT", "/v1/messages"), ("DELETE", "/healthz"),
                         ("GET", "/v1/messages/../../etc/passwd"), ("POST", "/nope")):
        async with gateway.session.request(method, f"{gateway.url}{path}") as resp:
            assert resp.status in (404, 405), (method, path, resp.status)
