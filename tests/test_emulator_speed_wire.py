"""The emulator's fast JSON (orjson) must read and write exactly what stdlib json did, odd inputs included.

orjson differs from stdlib json at the edges (integers past 64 bits, NaN, lone surrogates, non-str keys);
every such case must fall back so that clients, the call log and the stored workspace see no difference.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
import structlog
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from structlog.testing import capture_logs

from integrations.slack.emulator import EMULATOR_STATE, EmulatorState, create_emulator_app
from integrations.slack.emulator.wire import dumps, loads

ODD_JSON = [
    b'{"a": 1, "b": [true, false, null], "c": "\\u00e9\\ud83d\\ude00", "d": -0.0, "e": 1.5e-7}',
    b"123456789012345678901234567890",  # orjson alone reads this as a float
    b"-9223372036854775809",
    b"18446744073709551616",
    b"[1e400, -1e400, NaN, Infinity, -Infinity]",
    b'"\\ud800 lone"',
    b'{"a": 1, "a": 2}',
    b"\xef\xbb\xbf{}",  # a BOM: stdlib refuses it
    b'{"a": "\xff"}',  # not UTF-8
    b"{not json",
    b"",
    b'"\xc3\xa9 caf\xc3\xa9 \xf0\x9f\x98\x80"',
]


def _outcome(parse: Any, data: Any) -> tuple[str, str]:
    try:
        value = parse(data)
    except (ValueError, UnicodeDecodeError) as exc:
        return "raised", type(exc).__name__
    return "parsed", f"{type(value).__name__}:{value!r}"


@pytest.mark.parametrize("raw", ODD_JSON)
def test_loads_reads_what_stdlib_json_read(raw: bytes) -> None:
    assert _outcome(loads, raw) == _outcome(lambda b: json.loads(b.decode("utf-8")), raw)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return
    assert _outcome(loads, text) == _outcome(json.loads, text)  # form bodies: nested JSON arrives as text


class Tag(str):
    pass


ODD_BODIES: list[Any] = [
    {"ok": True, "message": {"text": "é 😀 \u2028 <&>", "blocks": [{"type": "divider"}], "n": 0.1}},
    {"ok": True, "values": [float("nan"), float("inf"), -float("inf")]},
    {"ok": True, "big": 2**70, "small": -(2**70)},
    {"ok": True, 1: "int key", None: "none key", 2.5: "float key"},
    {"ok": True, "text": "\ud800 lone surrogate"},
    {"ok": True, "tag": Tag("subclass")},
    {"ok": True, "title": None},
]


@pytest.mark.parametrize("body", ODD_BODIES)
def test_dumps_writes_what_stdlib_json_wrote(body: Any) -> None:
    assert repr(json.loads(dumps(body))) == repr(json.loads(json.dumps(body)))


def test_dumps_refuses_what_stdlib_json_refused() -> None:
    for body in ({"ok": True, "s": {1, 2}}, {"ok": True, "o": object()}):
        with pytest.raises(TypeError):
            dumps(body)


@pytest.fixture
async def served() -> AsyncIterator[tuple[str, EmulatorState, ClientSession]]:
    app = create_emulator_app()
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    try:
        async with ClientSession() as session:
            yield f"http://127.0.0.1:{server.port}/api/", app[EMULATOR_STATE], session
    finally:
        await server.close()


HEADERS = {"Authorization": "Bearer xoxb-emulator", "Content-Type": "application/json;charset=utf-8"}


async def test_a_post_with_odd_numbers_comes_back_and_is_stored_as_before(
    served: tuple[str, EmulatorState, ClientSession],
) -> None:
    base, state, session = served
    raw = (b'{"channel": "general", "text": "caf\xc3\xa9 \\ud800", "blocks": [{"type": "section", "n": NaN}],'
           b' "metadata": {"event_type": "t", "event_payload": {"big": 123456789012345678901234567890,'
           b' "huge": 1e400}}}')
    async with session.post(f"{base}chat.postMessage", data=raw, headers=HEADERS) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
        answer = json.loads(await resp.read())
    sent = json.loads(raw.decode("utf-8"))
    message = answer["message"]
    assert repr((message["text"], message["blocks"], message["metadata"])) == repr(
        (sent["text"], sent["blocks"], sent["metadata"])
    )
    assert type(message["metadata"]["event_payload"]["big"]) is int
    stored = state.messages("general")[-1]
    assert repr(stored) == repr(message)
    assert repr(state.calls[-1].response) == repr(answer)
    assert "NaN" in state.calls[-1].response_text and "Infinity" in state.calls[-1].response_text


async def test_the_call_log_holds_the_answer_as_sent(served: tuple[str, EmulatorState, ClientSession]) -> None:
    base, state, session = served
    body = {"channel": "general", "text": "é 😀", "blocks": [{"type": "divider"}]}
    auth = {"Authorization": HEADERS["Authorization"]}
    async with session.post(f"{base}chat.postMessage", json=body, headers=auth) as resp:
        wire = await resp.read()
    call = state.calls[-1]
    assert call.response_body == wire and call.response_text == wire.decode()
    assert call.response == json.loads(wire) and call.response["message"]["text"] == "é 😀"
    assert "token" not in call.params and call.params["text"] == "é 😀"


async def test_the_debug_line_is_logged_unless_the_level_drops_it(
    served: tuple[str, EmulatorState, ClientSession],
) -> None:
    base, _, session = served

    async def post() -> list[Any]:
        with capture_logs() as logs:
            async with session.post(f"{base}auth.test", headers=HEADERS, data=b"{}") as resp:
                assert resp.status == 200
        return [e for e in logs if e["event"] == "slack_emulator.call"]

    assert [(e["method"], e["ok"]) for e in await post()] == [("auth.test", True)]
    wrapper = structlog.get_config()["wrapper_class"]
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
    try:
        assert await post() == []
    finally:
        structlog.configure(wrapper_class=wrapper)
