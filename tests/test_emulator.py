"""End-to-end tests of the Slack emulator through the real slack_sdk client over real HTTP.

The point is fidelity: if slack_sdk is happy with the emulator's answers (shapes, statuses,
headers), the gateway's Slack code will behave the same against the emulator as against Slack.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from integrations.slack.emulator import (
    EMULATOR_STATE,
    EmulatorConfig,
    EmulatorState,
    create_emulator_app,
)
from tests.conftest import free_port

TOKEN = "xoxb-emulator"
TS_RE = re.compile(r"^\d{10}\.\d{6}$")
PROXY_VARS = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy")


@dataclass
class Emulator:
    state: EmulatorState
    client: AsyncWebClient
    base_url: str


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    """The emulator is on loopback; a CI proxy would swallow or reject the requests."""
    for var in PROXY_VARS:
        monkeypatch.delenv(var, raising=False)


async def _serve(app: web.Application, api_prefix: str) -> AsyncIterator[tuple[str, TestServer]]:
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    try:
        yield f"http://127.0.0.1:{server.port}{api_prefix}", server
    finally:
        await server.close()


async def _emulator(config: EmulatorConfig | None = None) -> AsyncIterator[Emulator]:
    app = create_emulator_app(config)
    async for base, _server in _serve(app, "/api/"):
        yield Emulator(app[EMULATOR_STATE], AsyncWebClient(token=TOKEN, base_url=base), base)


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async for emulator in _emulator():
        yield emulator


@pytest.fixture
async def throttled() -> AsyncIterator[Emulator]:
    async for emulator in _emulator(EmulatorConfig(rate_limit_per_channel=1.0)):
        yield emulator


def _blocks(text: str) -> list[dict[str, object]]:
    return [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]


async def test_auth_test(emu: Emulator) -> None:
    resp = await emu.client.auth_test()
    assert resp["ok"] and resp["user_id"] == "U0SWITCHBOARD" and resp["team_id"] == "T0SWITCHBD"
    assert resp["bot_id"].startswith("B")
    assert emu.state.calls_to("auth.test")[0].response["ok"] is True


async def test_post_message_with_blocks_and_metadata_shows_in_history(emu: Emulator) -> None:
    metadata = {"event_type": "ticket_escalated", "event_payload": {"ticket": "T-1", "score": 0.9}}
    resp = await emu.client.chat_postMessage(
        channel="#support-billing", text="fallback", blocks=_blocks("*hi*"), metadata=metadata
    )
    channel_id = emu.state.channel_id("support-billing")
    assert resp["channel"] == channel_id and channel_id.startswith("C")
    assert TS_RE.match(resp["ts"]) and resp["message"]["ts"] == resp["ts"]
    assert resp["message"]["blocks"][0]["type"] == "section"

    with_meta = await emu.client.conversations_history(channel=channel_id, include_all_metadata=True)
    [message] = with_meta["messages"]
    assert message["metadata"] == metadata and message["text"] == "fallback"
    plain = await emu.client.conversations_history(channel=channel_id)
    assert "metadata" not in plain["messages"][0]
    assert emu.state.messages("support-billing")[0]["metadata"] == metadata


async def test_form_encoded_json_string_blocks_are_parsed(emu: Emulator) -> None:
    resp = await emu.client.api_call(
        "chat.postMessage", data={"channel": "general", "blocks": json.dumps(_blocks("form"))}
    )
    assert emu.state.messages(resp["channel"])[0]["blocks"] == _blocks("form")


async def test_history_is_newest_first_and_paginates(emu: Emulator) -> None:
    sent = [(await emu.client.chat_postMessage(channel="general", text=f"m{i}"))["ts"] for i in range(5)]
    assert sent == sorted(sent) and len(set(sent)) == 5
    seen: list[str] = []
    cursor = None
    while True:
        page = await emu.client.conversations_history(channel="general", limit=2, cursor=cursor)
        seen += [m["ts"] for m in page["messages"]]
        cursor = page["response_metadata"]["next_cursor"]
        assert page["has_more"] == bool(cursor)
        if not cursor:
            break
    assert seen == sent[::-1]
    window = await emu.client.conversations_history(channel="general", oldest=sent[1], latest=sent[4])
    assert [m["ts"] for m in window["messages"]] == [sent[3], sent[2]]


async def test_thread_replies_and_reply_count(emu: Emulator) -> None:
    parent = await emu.client.chat_postMessage(channel="support-leads", text="escalation")
    ts = parent["ts"]
    await emu.client.chat_postMessage(channel="support-leads", text="r1", thread_ts=ts)
    await emu.client.chat_postMessage(channel="support-leads", text="r2", thread_ts=ts)
    await emu.client.chat_postMessage(channel="support-leads", text="bc", thread_ts=ts, reply_broadcast=True)

    replies = await emu.client.conversations_replies(channel=parent["channel"], ts=ts)
    assert [m["text"] for m in replies["messages"]] == ["escalation", "r1", "r2", "bc"]
    assert all(m["thread_ts"] == ts for m in replies["messages"])
    history = await emu.client.conversations_history(channel=parent["channel"])
    assert [m["text"] for m in history["messages"]] == ["bc", "escalation"]
    top = history["messages"][1]
    assert top["reply_count"] == 3 and top["latest_reply"] == replies["messages"][-1]["ts"]
    assert len(emu.state.replies("support-leads", ts)) == 4


async def test_chat_update_and_delete(emu: Emulator) -> None:
    posted = await emu.client.chat_postMessage(channel="general", text="before")
    updated = await emu.client.chat_update(channel=posted["channel"], ts=posted["ts"], text="after")
    assert updated["ts"] == posted["ts"] and updated["text"] == "after"
    [message] = emu.state.messages("general")
    assert message["text"] == "after" and "edited" in message
    deleted = await emu.client.chat_delete(channel=posted["channel"], ts=posted["ts"])
    assert deleted["ok"] and emu.state.messages("general") == []


async def test_ephemeral_is_recorded_per_user_not_in_history(emu: Emulator) -> None:
    resp = await emu.client.chat_postEphemeral(channel="general", user="U0ALICE", text="only you")
    assert TS_RE.match(resp["message_ts"])
    [ephemeral] = emu.state.ephemerals_for("U0ALICE")
    assert ephemeral["text"] == "only you" and ephemeral["channel"] == emu.state.channel_id("general")
    assert emu.state.ephemerals_for("U0BOB") == [] and emu.state.messages("general") == []
    with pytest.raises(SlackApiError) as err:
        await emu.client.chat_postEphemeral(channel="general", user="U0NOPE", text="x")
    assert err.value.response["error"] == "user_not_found"


async def test_users_info_and_list(emu: Emulator) -> None:
    carol = (await emu.client.users_info(user="U0CAROL"))["user"]
    assert carol["name"] == "carol" and carol["profile"]["title"] == "Support Lead"
    members = (await emu.client.users_list())["members"]
    assert {"U0ALICE", "U0BOB", "U0CAROL", "U0SWITCHBOARD"} <= {m["id"] for m in members}


async def test_views_open_update_publish(emu: Emulator) -> None:
    modal = {"type": "modal", "title": {"type": "plain_text", "text": "Reply"}, "blocks": _blocks("x")}
    opened = (await emu.client.views_open(trigger_id="123.456", view=modal))["view"]
    assert opened["id"].startswith("V") and opened["type"] == "modal"
    modal["blocks"] = _blocks("y")
    updated = (await emu.client.views_update(view_id=opened["id"], view=modal, hash=opened["hash"]))["view"]
    assert updated["id"] == opened["id"] and emu.state.views[opened["id"]]["blocks"] == _blocks("y")
    home = {"type": "home", "blocks": _blocks("queue")}
    published = (await emu.client.views_publish(user_id="U0BOB", view=home))["view"]
    assert published["type"] == "home" and emu.state.home_views["U0BOB"]["blocks"] == _blocks("queue")


async def test_reactions_add(emu: Emulator) -> None:
    posted = await emu.client.chat_postMessage(channel="general", text="done")
    await emu.client.reactions_add(channel=posted["channel"], timestamp=posted["ts"], name="white_check_mark")
    [message] = emu.state.messages("general")
    assert message["reactions"] == [{"name": "white_check_mark", "users": ["U0SWITCHBOARD"], "count": 1}]
    with pytest.raises(SlackApiError) as err:
        await emu.client.reactions_add(
            channel=posted["channel"], timestamp=posted["ts"], name="white_check_mark"
        )
    assert err.value.response["error"] == "already_reacted"


async def test_conversations_create_list_info(emu: Emulator) -> None:
    created = (await emu.client.conversations_create(name="support-vip"))["channel"]
    assert created["id"] == emu.state.channel_id("support-vip")
    listed = (await emu.client.conversations_list(limit=1000))["channels"]
    assert "support-vip" in {c["name"] for c in listed}
    info = (await emu.client.conversations_info(channel=created["id"]))["channel"]
    assert info["name"] == "support-vip"
    with pytest.raises(SlackApiError) as err:
        await emu.client.conversations_create(name="support-vip")
    assert err.value.response["error"] == "name_taken"


@pytest.mark.parametrize(
    ("method", "kwargs", "error"),
    [
        ("chat.postMessage", {"channel": "nope", "text": "x"}, "channel_not_found"),
        ("chat.postMessage", {"channel": "general"}, "no_text"),
        ("chat.postMessage", {"channel": "general", "blocks": [{"text": "typeless"}]}, "invalid_blocks"),
        (
            "chat.postMessage",
            {"channel": "general", "text": "x", "thread_ts": "1.000001"},
            "thread_not_found",
        ),
        ("chat.update", {"channel": "general", "ts": "1.000001", "text": "x"}, "message_not_found"),
        ("conversations.replies", {"channel": "general", "ts": "1.000001"}, "thread_not_found"),
        ("users.info", {"user": "U0NOBODY"}, "user_not_found"),
        ("no.such.method", {}, "unknown_method"),
    ],
)
async def test_error_shapes(emu: Emulator, method: str, kwargs: dict[str, object], error: str) -> None:
    with pytest.raises(SlackApiError) as err:
        await emu.client.api_call(method, json=kwargs)
    assert err.value.response.status_code == 200
    assert err.value.response.data == {"ok": False, "error": error}
    assert emu.state.calls[-1].response["error"] == error


async def test_auth_errors(emu: Emulator) -> None:
    for token, error in (("xoxb-wrong", "invalid_auth"), (None, "not_authed")):
        with pytest.raises(SlackApiError) as err:
            await AsyncWebClient(token=token, base_url=emu.base_url).auth_test()
        assert err.value.response["error"] == error


async def test_rate_limit_429_and_sdk_retry_handler(throttled: Emulator) -> None:
    await throttled.client.chat_postMessage(channel="general", text="first")
    with pytest.raises(SlackApiError) as err:
        await throttled.client.chat_postMessage(channel="general", text="too fast")
    assert err.value.response.status_code == 429
    assert err.value.response.headers["Retry-After"] == "1"
    assert err.value.response["error"] == "ratelimited"
    # Other channels have their own budget.
    await throttled.client.chat_postMessage(channel="support-leads", text="elsewhere")

    patient = AsyncWebClient(
        token=TOKEN,
        base_url=throttled.base_url,
        retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=3)],
    )
    started = time.monotonic()
    resp = await patient.chat_postMessage(channel="general", text="eventually")
    assert resp["ok"] and time.monotonic() - started >= 0.5
    assert [m["text"] for m in throttled.state.messages("general")] == ["first", "eventually"]


async def test_fail_next_injects_faults(emu: Emulator) -> None:
    emu.state.fail_next("chat.postMessage", 500)
    with pytest.raises(SlackApiError) as err:
        await emu.client.chat_postMessage(channel="general", text="x")
    assert err.value.response.status_code == 500
    assert (await emu.client.chat_postMessage(channel="general", text="x"))["ok"]
    assert [c.status for c in emu.state.calls_to("chat.postMessage")] == [500, 200]

    emu.state.fail_next("auth.test", 429, count=2, retry_after=7)
    for _ in range(2):
        with pytest.raises(SlackApiError) as err:
            await emu.client.auth_test()
        assert err.value.response.status_code == 429 and err.value.response.headers["Retry-After"] == "7"
    assert (await emu.client.auth_test())["ok"]


async def test_mounted_under_parent_app() -> None:
    parent = web.Application()
    emulator = create_emulator_app()
    parent.add_subapp("/_slack/", emulator)
    async for base, server in _serve(parent, "/_slack/api/"):
        client = AsyncWebClient(token=TOKEN, base_url=base)
        assert (await client.auth_test())["ok"]
        await client.chat_postMessage(channel="support-general", text="via mount")
        assert emulator[EMULATOR_STATE].messages("support-general")[0]["text"] == "via mount"
        async with ClientSession() as http, http.get(f"http://127.0.0.1:{server.port}/_slack/state") as r:
            summary = await r.json()
        counts = {c["name"]: c["messages"] for c in summary["channels"]}
        assert counts["support-general"] == 1 and counts["general"] == 0


async def test_soak_mode_keeps_only_the_newest_messages_and_calls() -> None:
    config = EmulatorConfig(max_messages_per_channel=20, max_recorded_calls=30)
    async for e in _emulator(config):
        for i in range(60):
            await e.client.chat_postMessage(channel="general", text=f"m{i}")
        history = await e.client.conversations_history(channel=e.state.channel_id("general"), limit=100)
        texts = [m["text"] for m in history["messages"]]
        assert 20 <= len(texts) <= 22 and texts[0] == "m59", "newest kept, oldest dropped in chunks"
        assert len(e.state.calls) == 30 and e.state.calls[-1].method == "conversations.history"
        assert e.state.calls_to("chat.postMessage")[-1].response["message"]["text"] == "m59"


@pytest.mark.parametrize(("level", "printed"), [("info", False), ("debug", True)])
def test_standalone_emulator_prints_each_call_only_at_debug(level: str, printed: bool) -> None:
    """Unconfigured, structlog printed a line per Web API call: a tenth of the emulator's CPU under load."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "integrations.slack.emulator", "--port", str(port),
                             "--log-level", level], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/auth.test", method="POST",
                                     headers={"Authorization": f"Bearer {TOKEN}"})
    try:
        for _ in range(200):
            try:
                with urllib.request.urlopen(request, timeout=5) as resp:
                    assert json.loads(resp.read())["ok"]
                    break
            except OSError:
                time.sleep(0.1)
        else:
            raise AssertionError("the emulator did not start")
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    assert b"Slack emulator desk" in out
    assert (b"slack_emulator.call" in out) is printed
