"""The emulator acting as Slack *towards* the gateway: signed requests, responses, and the desk page.

A tiny aiohttp "gateway" here verifies every request with slack_sdk's own SignatureVerifier, so
a passing test means bolt in the real gateway would accept the same bytes. The browser test
drives the desk page in headless Chromium the way a person would.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from integrations.slack.emulator import EMULATOR_DESK, EMULATOR_STATE, Desk, EmulatorConfig, create_emulator_app
from tests.conftest import free_port

SECRET = "test-signing-secret"
TOKEN = "xoxb-emulator"
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"

Reply = Callable[["Received"], Any]


@dataclass
class Received:
    """One request as the gateway saw it, with the signature check already done."""

    kind: str
    headers: dict[str, str]
    body: str
    data: dict[str, Any]
    signed: bool


@dataclass
class FakeGateway:
    """Records signed requests; ``reply`` decides the HTTP answer (an awaitable is awaited)."""

    received: list[Received] = field(default_factory=list)
    reply: Reply | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.text()
        signed = SignatureVerifier(SECRET).is_valid(
            body=body,
            timestamp=request.headers.get("X-Slack-Request-Timestamp", ""),
            signature=request.headers.get("X-Slack-Signature", ""),
        )
        if request.content_type == "application/json":
            data = json.loads(body)
            kind = data["event"]["type"] if data.get("type") == "event_callback" else data["type"]
        else:
            form = {k: v[0] for k, v in parse_qs(body).items()}
            data = json.loads(form["payload"]) if "payload" in form else form
            kind = data.get("type") or "slash_command"
        got = Received(kind, dict(request.headers), body, data, signed)
        self.received.append(got)
        if not signed:
            return web.Response(status=401)
        answer = self.reply(got) if self.reply else None
        if asyncio.iscoroutine(answer):
            answer = await answer
        if isinstance(answer, web.StreamResponse):
            return answer
        return web.json_response(answer) if answer is not None else web.Response(status=200)

    def of(self, kind: str) -> list[Received]:
        return [r for r in self.received if r.kind == kind]

    async def wait_for(self, kind: str, count: int = 1, within: float = 8.0) -> Received:
        deadline = time.monotonic() + within
        while len(self.of(kind)) < count:
            assert time.monotonic() < deadline, f"gateway never got {count}x {kind}: {[r.kind for r in self.received]}"
            await asyncio.sleep(0.05)
        return self.of(kind)[count - 1]


@dataclass
class Rig:
    gateway: FakeGateway
    desk: Desk
    client: AsyncWebClient
    base: str  # the emulator root, e.g. http://127.0.0.1:1234/_slack/


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    """Gateway route and mounted emulator in one app on one port, the way local mode runs."""
    port = free_port()
    gateway = FakeGateway()
    parent = web.Application()
    parent.router.add_post("/slack/events", gateway.handle)
    config = EmulatorConfig(gateway_events_url=f"http://127.0.0.1:{port}/slack/events", signing_secret=SECRET)
    emulator = create_emulator_app(config)
    parent.add_subapp("/_slack/", emulator)
    server = TestServer(parent, host="127.0.0.1", port=port)
    await server.start_server()
    base = f"http://127.0.0.1:{port}/_slack/"
    try:
        yield Rig(gateway, emulator[EMULATOR_DESK], AsyncWebClient(token=TOKEN, base_url=base + "api/"), base)
    finally:
        await server.close()


def card(conversation: str = "conv-1") -> list[dict[str, Any]]:
    return [
        {"type": "header", "text": {"type": "plain_text", "text": "Refund request"}},
        {
            "type": "section",
            "block_id": "summary",
            "text": {"type": "mrkdwn", "text": "*Customer* says: _where is my refund?_"},
            "fields": [{"type": "mrkdwn", "text": "*Skill*\nbilling"}, {"type": "mrkdwn", "text": "*Urgency*\nhigh"}],
        },
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "via webchat · `conv-1`"}]},
        {"type": "divider"},
        {
            "type": "actions",
            "block_id": "card_actions",
            "elements": [
                {
                    "type": "button",
                    "action_id": "claim",
                    "text": {"type": "plain_text", "text": "Claim"},
                    "style": "primary",
                    "value": conversation,
                },
                {
                    "type": "button",
                    "action_id": "resolve",
                    "text": {"type": "plain_text", "text": "Resolve"},
                    "style": "danger",
                    "value": conversation,
                },
                {
                    "type": "static_select",
                    "action_id": "transfer",
                    "placeholder": {"type": "plain_text", "text": "Transfer to"},
                    "options": [
                        {"text": {"type": "plain_text", "text": "Technical"}, "value": "technical"},
                        {"text": {"type": "plain_text", "text": "Shipping"}, "value": "shipping"},
                    ],
                },
            ],
        },
    ]


RESOLVE_MODAL = {
    "type": "modal",
    "callback_id": "resolve",
    "private_metadata": "conv-1",
    "title": {"type": "plain_text", "text": "Resolve"},
    "submit": {"type": "plain_text", "text": "Resolve"},
    "blocks": [
        {
            "type": "input",
            "block_id": "skill",
            "label": {"type": "plain_text", "text": "Final skill"},
            "element": {
                "type": "static_select",
                "action_id": "value",
                "options": [
                    {"text": {"type": "plain_text", "text": "Billing"}, "value": "billing"},
                    {"text": {"type": "plain_text", "text": "Shipping"}, "value": "shipping"},
                ],
            },
        },
        {
            "type": "input",
            "block_id": "note",
            "label": {"type": "plain_text", "text": "Resolution note"},
            "element": {"type": "plain_text_input", "action_id": "value", "multiline": True},
        },
    ],
}


async def post_card(rig: Rig, channel: str = "support-billing") -> tuple[str, str]:
    resp = await rig.client.chat_postMessage(channel=channel, text="Refund request", blocks=card())
    return resp["channel"], resp["ts"]


# ---- signed requests ------------------------------------------------------------------------


async def test_block_actions_shape_signature_and_immediate_ephemeral(rig: Rig) -> None:
    channel, ts = await post_card(rig)
    rig.gateway.reply = lambda r: {"text": "Already claimed by @bob"}
    assert await rig.desk.click(channel, ts, "claim", user="U0ALICE") == 200
    got = rig.gateway.of("block_actions")[0]
    assert got.signed and got.headers["Content-Type"] == "application/x-www-form-urlencoded"
    p = got.data
    assert p["user"] == {"id": "U0ALICE", "username": "alice", "name": "alice", "team_id": "T0SWITCHBD"}
    assert p["container"] == {"type": "message", "message_ts": ts, "channel_id": channel, "is_ephemeral": False}
    assert p["channel"] == {"id": channel, "name": "support-billing"} and p["team"]["id"] == "T0SWITCHBD"
    assert p["message"]["ts"] == ts and p["message"]["blocks"] == card() and p["api_app_id"] and p["token"]
    [action] = p["actions"]
    assert action["action_id"] == "claim" and action["block_id"] == "card_actions"
    assert action["type"] == "button" and action["value"] == "conv-1" and action["action_ts"]
    assert p["response_url"].startswith(rig.base + "response/") and p["trigger_id"]
    [ephemeral] = rig.desk.state.ephemerals_for("U0ALICE")
    assert ephemeral["text"] == "Already claimed by @bob" and ephemeral["channel"] == channel

    rig.gateway.reply = None
    assert await rig.desk.click(channel, ts, "transfer", user="U0BOB", selected_option="shipping") == 200
    select = rig.gateway.of("block_actions")[1].data["actions"][0]
    assert select["type"] == "static_select" and select["selected_option"]["value"] == "shipping"
    assert select["selected_option"]["text"]["text"] == "Shipping"
    assert [r.kind for r in rig.desk.state.outbound] == ["block_actions", "block_actions"]
    assert rig.desk.state.outbound[0].status == 200


async def test_response_url_ephemeral_in_channel_replace_delete(rig: Rig) -> None:
    channel, ts = await post_card(rig)
    await rig.desk.click(channel, ts, "claim")
    url = rig.gateway.of("block_actions")[0].data["response_url"]
    async with ClientSession() as http:

        async def respond(body: dict[str, Any], target: str = url) -> int:
            async with http.post(target, json=body) as resp:
                return resp.status

        assert await respond({"text": "just you"}) == 200
        assert await respond({"text": "everyone", "response_type": "in_channel"}) == 200
        assert await respond({"replace_original": True, "text": "Claimed by @alice", "blocks": []}) == 200
        assert [m["text"] for m in rig.desk.state.messages(channel)] == ["Claimed by @alice", "everyone"]
        assert await respond({"delete_original": True}) == 200
        assert [m["text"] for m in rig.desk.state.messages(channel)] == ["everyone"]
        assert await respond({"text": "x"}, url.rsplit("/", 1)[0] + "/nope") == 404
    assert [e["text"] for e in rig.desk.state.ephemerals_for("U0ALICE")] == ["just you"]
    modes = [r["mode"] for r in rig.desk.state.responses]
    assert modes == ["ephemeral", "in_channel", "replace_original", "delete_original"]


async def test_trigger_opens_modal_and_view_submission_round_trip(rig: Rig) -> None:
    channel, ts = await post_card(rig)
    opened: list[str] = []

    async def open_modal(r: Received) -> None:
        if r.kind == "block_actions":
            resp = await rig.client.views_open(trigger_id=r.data["trigger_id"], view=RESOLVE_MODAL)
            opened.append(resp["view"]["id"])

    rig.gateway.reply = open_modal
    await rig.desk.click(channel, ts, "resolve", user="U0CAROL")
    [view_id] = opened
    modal = rig.desk.open_modal("U0CAROL")
    assert modal is not None and modal["id"] == view_id and rig.desk.open_modal("U0BOB") is None
    with pytest.raises(SlackApiError) as err:  # a trigger is single-use, as on Slack
        used = rig.gateway.of("block_actions")[0].data["trigger_id"]
        await rig.client.views_open(trigger_id=used, view=RESOLVE_MODAL)
    assert err.value.response["error"] == "trigger_exchanged"
    with pytest.raises(SlackApiError) as err:
        await rig.client.views_open(trigger_id="1.2." + "0" * 32, view=RESOLVE_MODAL)
    assert err.value.response["error"] == "invalid_trigger_id"
    rig.desk.state.config.trigger_ttl = 0.01
    stale = rig.desk.state.issue_trigger("U0CAROL")
    await asyncio.sleep(0.05)
    with pytest.raises(SlackApiError) as err:
        await rig.client.views_open(trigger_id=stale, view=RESOLVE_MODAL)
    assert err.value.response["error"] == "expired_trigger_id"

    rig.gateway.reply = lambda r: {"response_action": "errors", "errors": {"note": "Say what you did"}}
    assert await rig.desk.submit_view(view_id, {"skill": {"value": "shipping"}}) == 200
    got = rig.gateway.of("view_submission")[0]
    assert got.signed and got.data["user"]["id"] == "U0CAROL" and got.data["trigger_id"]
    view = got.data["view"]
    assert view["id"] == view_id and view["callback_id"] == "resolve" and view["private_metadata"] == "conv-1"
    shipping = RESOLVE_MODAL["blocks"][0]["element"]["options"][1]  # type: ignore[index]
    assert view["hash"] and view["state"]["values"] == {
        "skill": {"value": {"type": "static_select", "selected_option": shipping}},
        "note": {"value": {"type": "plain_text_input", "value": None}},
    }
    assert rig.desk.open_modal("U0CAROL") is not None
    assert rig.desk.state.view_errors[view_id] == {"note": "Say what you did"}

    rig.gateway.reply = None
    assert await rig.desk.submit_view(view_id, {"note": "fixed"}, user="U0CAROL") == 200
    assert rig.gateway.of("view_submission")[1].data["view"]["state"]["values"]["note"]["value"]["value"] == "fixed"
    assert rig.desk.open_modal("U0CAROL") is None


async def test_message_event_thread_reply_and_retry(rig: Rig) -> None:
    channel, ts = await post_card(rig)
    reply_ts = await rig.desk.post_as_user("support-billing", "on it", user="U0BOB", thread_ts=ts)
    got = rig.gateway.of("message")[0]
    assert got.signed and got.headers["Content-Type"] == "application/json"
    body = got.data
    assert body["type"] == "event_callback" and body["event_id"].startswith("Ev") and body["team_id"] == "T0SWITCHBD"
    assert body["api_app_id"] and body["token"] and isinstance(body["event_time"], int)
    event = body["event"]
    assert event["type"] == "message" and event["channel"] == channel and event["user"] == "U0BOB"
    assert event["text"] == "on it" and event["ts"] == reply_ts == event["event_ts"]
    assert event["thread_ts"] == ts and event["channel_type"] == "channel"
    assert rig.desk.state.replies(channel, ts)[-1]["text"] == "on it"

    assert await rig.desk.resend_event(body["event_id"], retry_num=2) == 200
    retry = rig.gateway.of("message")[1]
    assert retry.signed and retry.body == got.body
    assert retry.headers["X-Slack-Retry-Num"] == "2" and retry.headers["X-Slack-Retry-Reason"] == "http_timeout"
    second = await rig.desk.post_as_user("support-billing", "top level")
    assert rig.gateway.of("message")[2].data["event_id"] != body["event_id"]
    assert "thread_ts" not in rig.gateway.of("message")[2].data["event"] and second > reply_ts


async def test_slash_command_and_app_home(rig: Rig) -> None:
    queue = {"response_type": "ephemeral", "text": "Queue: 3 waiting"}
    rig.gateway.reply = lambda r: queue if r.kind == "slash_command" else None
    assert await rig.desk.slash("/switchboard", "queue billing", user="U0BOB", channel="support-billing") == 200
    form = rig.gateway.of("slash_command")[0]
    assert form.signed and form.data["command"] == "/switchboard" and form.data["text"] == "queue billing"
    assert form.data["user_id"] == "U0BOB" and form.data["user_name"] == "bob"
    assert form.data["channel_name"] == "support-billing" and form.data["team_id"] == "T0SWITCHBD"
    assert form.data["response_url"].startswith(rig.base + "response/")
    assert {"token", "channel_id", "trigger_id", "api_app_id"} <= form.data.keys()
    assert [e["text"] for e in rig.desk.state.ephemerals_for("U0BOB")] == ["Queue: 3 waiting"]

    assert await rig.desk.open_home("U0CAROL") == 200
    home = rig.gateway.of("app_home_opened")[0]
    assert home.signed and home.data["event"]["user"] == "U0CAROL" and home.data["event"]["tab"] == "home"


async def test_gateway_down_is_recorded_not_raised() -> None:
    config = EmulatorConfig(gateway_events_url=f"http://127.0.0.1:{free_port()}/slack/events", signing_secret=SECRET)
    app = create_emulator_app(config)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    try:
        desk = app[EMULATOR_DESK]
        ts = await desk.post_as_user("general", "hello?")
        assert app[EMULATOR_STATE].messages("general")[0]["ts"] == ts
        [record] = desk.state.outbound
        assert record.status == 0 and "Connect" in record.error
    finally:
        await server.close()


async def test_desk_page_and_static_files_are_served_under_the_mount(rig: Rig) -> None:
    async with ClientSession() as http:
        async with http.get(rig.base) as resp:
            html = await resp.text()
            assert resp.status == 200 and "script-src 'self'" in resp.headers["Content-Security-Policy"]
            assert 'src="static/desk.js"' in html
        for name in ("desk.js", "blocks.js", "desk.css"):
            async with http.get(rig.base + "static/" + name) as resp:
                assert resp.status == 200
        async with http.post(rig.base + "desk/post", data="channel=general&text=x") as resp:
            assert resp.status == 415  # forms are refused: no cross-site posting into the desk
        async with http.get(rig.base + "desk/state", params={"user": "U0BOB", "channel": "general"}) as resp:
            state = await resp.json()
        assert state["channel"]["name"] == "general" and {u["id"] for u in state["users"]} >= {"U0ALICE"}


# ---- the desk in a real browser ---------------------------------------------------------------


def _chromium_present() -> bool:
    """Fail rather than skip without it: CI installs chromium, so absence is a broken setup."""
    return CHROMIUM.exists()


async def test_desk_in_headless_chromium(rig: Rig) -> None:
    if not _chromium_present():
        pytest.fail("/usr/bin/chromium is missing: apt-get install -y chromium")
    from playwright.async_api import Dialog, async_playwright, expect

    channel, ts = await post_card(rig)
    hostile = "<script>alert(1)</script> &lt;!channel&gt; <img src=x onerror=alert(2)>"
    await rig.client.chat_postMessage(channel=channel, text=hostile)
    controls = "<javascript:alert(3)|click me> <@U0BOB> <http://evil.example|bank>"
    await rig.client.chat_postMessage(channel=channel, text=controls)
    await rig.client.chat_postMessage(channel=channel, text="Customer: any news?", thread_ts=ts)
    await rig.client.chat_postMessage(channel=channel, text="set SWITCHBOARD_API_CALLBACK_URL, _then_ retry")

    async def gateway_reply(r: Received) -> Any:
        action = r.data.get("actions", [{}])[0].get("action_id") if r.kind == "block_actions" else None
        if action == "resolve":
            await rig.client.views_open(trigger_id=r.data["trigger_id"], view=RESOLVE_MODAL)
        return {"text": "You claimed it"} if action == "claim" else None

    rig.gateway.reply = gateway_reply
    dialogs: list[str] = []
    errors: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 900})

            async def dismiss(dialog: Dialog) -> None:
                dialogs.append(dialog.message)
                await dialog.dismiss()

            page.on("dialog", dismiss)
            page.on("pageerror", lambda e: errors.append(str(e)))
            await page.goto(rig.base)
            billing = page.locator("button.channel", has_text="support-billing")
            await expect(billing.locator(".badge")).to_have_text("5")
            await billing.click()

            messages = page.locator("#messages")
            await expect(messages.get_by_role("heading", name="Refund request")).to_be_visible()
            await expect(messages.locator("strong", has_text="Customer")).to_be_visible()
            # Underscores inside a name are not italics (Slack's rule); at word edges they are.
            named = messages.locator("article", has_text="retry")
            await expect(named).to_contain_text("SWITCHBOARD_API_CALLBACK_URL")
            await expect(named.locator("em")).to_have_text("then")
            await expect(messages.get_by_text(hostile.replace("&lt;", "<").replace("&gt;", ">"))).to_be_visible()
            assert await page.evaluate("document.querySelectorAll('script').length") == 2
            hostile_node = messages.locator("article", has_text="alert(1)")
            assert await hostile_node.locator("script, img, .mention").count() == 0
            # Real control sequences render like Slack's, but a javascript: link stays inert text.
            controls_node = messages.locator("article", has_text="click me")
            await expect(controls_node.locator(".mention")).to_have_text("@bob")
            assert await messages.locator("a[href^='javascript']").count() == 0
            await expect(controls_node.locator("a")).to_have_attribute("href", "http://evil.example")

            await messages.get_by_role("button", name="Claim").click()
            claim = await rig.gateway.wait_for("block_actions")
            assert claim.signed and claim.data["actions"][0]["action_id"] == "claim"
            await expect(messages.locator(".ephemeral", has_text="You claimed it")).to_be_visible()

            await messages.get_by_role("button", name="1 reply").click()
            await page.get_by_label("Reply in thread").fill("Refund sent, 3-5 days")
            await page.get_by_role("button", name="Reply", exact=True).click()
            reply = await rig.gateway.wait_for("message")
            assert reply.signed and reply.data["event"]["thread_ts"] == ts
            assert reply.data["event"]["text"] == "Refund sent, 3-5 days" and reply.data["event"]["user"] == "U0ALICE"
            await expect(page.locator("#thread-messages")).to_contain_text("Refund sent, 3-5 days")
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "emulator-desk.png"), full_page=True)

            await messages.get_by_role("button", name="Resolve").click()
            dialog = page.get_by_role("dialog")
            await expect(dialog).to_be_visible()
            await dialog.get_by_label("Final skill").select_option("shipping")
            await dialog.get_by_label("Resolution note").fill("refunded")
            await dialog.get_by_role("button", name="Resolve").click()
            submitted = await rig.gateway.wait_for("view_submission")
            values = submitted.data["view"]["state"]["values"]
            assert values["skill"]["value"]["selected_option"]["value"] == "shipping"
            assert values["note"]["value"]["value"] == "refunded" and submitted.data["user"]["id"] == "U0ALICE"
            await expect(dialog).to_be_hidden()
        finally:
            await browser.close()
    assert dialogs == [] and errors == []
