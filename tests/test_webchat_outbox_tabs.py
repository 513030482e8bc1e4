"""The widget's saved outbox is shared by the visitor's tabs and kept per visitor.

Found in review: each tab read the saved outbox once, at load, and wrote its own copy back whole. Tab A's message
refused while storage was down was dropped from the browser's storage as soon as tab B saved anything (the
customer typed there, or an ack came), and was never sent once A was closed. And the saved outbox belonged to the
browser, not to the customer: after a logout and login the old user's unsent text went out as the new user.

Headless Chromium against the real web chat server, real Redis and the real store.
"""

from __future__ import annotations

import json
import re

from playwright.async_api import Browser, Page, WebSocketRoute

from integrations.webchat import tokens
from tests.harness import eventually
from tests.test_webchat_support import IDENTITY_SECRET, Chat, chat
from tests.widget_page import settled, state, texts

__all__ = ["chat"]

SAVED_OUTBOXES = """() => Object.keys(localStorage).filter(k => k.startsWith("sb_webchat_outbox"))
  .flatMap(k => JSON.parse(localStorage.getItem(k) || "[]").map(m => m.text))"""


def storage_down(ws: WebSocketRoute) -> None:
    """This tab's socket: every message is answered "unavailable, retry in 1 s", as the server does while
    Redis is unreachable; everything else goes through."""
    server = ws.connect_to_server()

    def from_page(message: str | bytes) -> None:
        frame = json.loads(message)
        if frame.get("type") == "message":
            ws.send(json.dumps({"type": "error", "code": "unavailable", "message": "storage is unavailable",
                                "client_id": frame["client_id"], "retry_after": 1}))
            return
        server.send(message)

    ws.on_message(from_page)


async def type_message(page: Page, text: str) -> None:
    await page.get_by_label("Your message").fill(text)
    await page.keyboard.press("Enter")


async def connected(page: Page) -> bool:
    return bool(await page.evaluate("!!(window.SwitchboardChat._ws && window.SwitchboardChat._ws.readyState === 1)"))


async def saved(page: Page) -> list[str]:
    """The texts of every saved outbox in this browser (whatever key the widget keeps them under)."""
    result: list[str] = await page.evaluate(SAVED_OUTBOXES)
    return result


async def test_a_tab_keeps_the_message_another_tab_could_not_send(browser: Browser, chat: Chat) -> None:
    context = await browser.new_context()  # one browser profile: the tabs share localStorage
    try:
        a, b = await context.new_page(), await context.new_page()
        await a.route_web_socket(re.compile(r"/webchat/ws"), storage_down)
        for page in (a, b):
            await page.goto(f"{chat.url}/webchat/")
        await a.get_by_role("button", name="Open support chat").click()
        await eventually(lambda: settled(a), timeout=5)
        await b.get_by_role("button", name="Open support chat").click()  # after A: the same visitor
        await eventually(lambda: settled(b), timeout=5)
        conv = (await state(b))["session"]["conversation_id"]
        assert (await state(a))["session"]["conversation_id"] == conv

        await type_message(a, "m1: typed in tab A during the blip")
        await a.get_by_text("Waiting to send…").wait_for()
        assert await saved(a) == ["m1: typed in tab A during the blip"]
        await type_message(b, "m2: typed in tab B")
        await eventually(lambda: settled(b), timeout=10)
        # B's change kept A's message, and B sent it too, first: it was typed first.
        both = ["m1: typed in tab A during the blip", "m2: typed in tab B"]
        assert await eventually(lambda: _transcript_is(chat, conv, both), timeout=10)
        await a.get_by_text("Waiting to send…").wait_for(state="detached", timeout=5000)  # A saw it stored
        await a.close()  # before A's own retry was ever acknowledged

        await b.reload()
        await b.get_by_role("button", name="Open support chat").click()
        await eventually(lambda: settled(b), timeout=10)
        await b.get_by_text("m1: typed in tab A during the blip").wait_for()
        assert sorted(await texts(b)) == both
        assert [m["text"] for m in await chat.transcript(conv)] == both  # each once
        assert await saved(b) == []
    finally:
        await context.close()


async def _transcript_is(chat: Chat, conv: str, expected: list[str]) -> bool:
    return [m["text"] for m in await chat.transcript(conv)] == expected


SIGNED_IN = """signed => new MutationObserver((changes, watch) => {
  for (const change of changes) for (const node of change.addedNodes) {
    const user = new URLSearchParams(location.search).get("user");
    if (node.tagName === "SCRIPT" && node.src.includes("/webchat/widget.js") && user) {
      node.dataset.userId = user; node.dataset.userHash = signed[user]; watch.disconnect();
    }
  }
}).observe(document, { childList: true, subtree: true })"""
"""Makes the demo page the host site's page for the signed-in user named in `?user=`: its widget tag gets the user
id and its signature while the page is parsed, before the widget runs. (A page the test serves itself through
`route.fulfill` may not open a socket to 127.0.0.1: Chromium's local network access checks.)"""


async def test_an_unsent_message_is_not_sent_as_the_next_user_who_signs_in(browser: Browser, chat: Chat) -> None:
    context = await browser.new_context()
    signed = {user: tokens.identity_hash(IDENTITY_SECRET, user) for user in ("42", "77")}
    await context.add_init_script(f"({SIGNED_IN})({json.dumps(signed)})")
    try:
        page = await context.new_page()
        await page.goto(f"{chat.url}/webchat/?user=42")
        await page.get_by_role("button", name="Open support chat").click()
        await eventually(lambda: connected(page), timeout=5)
        session = (await state(page))["session"]
        assert session["resume"] is None  # signed in as user 42, not an anonymous visitor
        first = session["conversation_id"]
        await page.evaluate("window.SwitchboardChat._ws.onclose = null; window.SwitchboardChat._ws.close()")
        await type_message(page, "private words of user 42")
        assert await saved(page) == ["private words of user 42"]

        await page.goto(f"{chat.url}/webchat/?user=77")  # user 42 signed out, user 77 signed in, same browser
        await page.get_by_role("button", name="Open support chat").click()
        await eventually(lambda: settled(page), timeout=5)
        await type_message(page, "hello from user 77")
        await eventually(lambda: settled(page), timeout=10)
        other = (await state(page))["session"]["conversation_id"]
        assert other != first
        assert [m["text"] for m in await chat.transcript(other)] == ["hello from user 77"]
        assert "private words of user 42" not in await texts(page)
        assert await saved(page) == ["private words of user 42"]  # kept for its own user

        await page.goto(f"{chat.url}/webchat/?user=42")  # user 42 back: their message goes out now, as them, once
        await page.get_by_role("button", name="Open support chat").click()
        await eventually(lambda: settled(page), timeout=10)
        assert (await state(page))["session"]["conversation_id"] == first
        assert [m["text"] for m in await chat.transcript(first)] == ["private words of user 42"]
        assert await saved(page) == []
    finally:
        await context.close()
