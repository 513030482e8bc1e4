"""The widget in headless Chromium against the real web chat server, real Redis and the real store."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import redis.asyncio as aioredis
from playwright.async_api import Browser, Page, WebSocketRoute

from integrations.webchat import outbox, request_csat
from tests.harness import eventually
from tests.test_webchat_support import Chat, chat
from tests.widget_page import state

__all__ = ["chat"]

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
HOSTILE = "<img src=x onerror=alert(1)>"


async def test_widget_send_reply_drop_csat_and_hostile_text(
    browser: Browser, chat: Chat, redis: aioredis.Redis
) -> None:
    page = await browser.new_page(viewport={"width": 375, "height": 720})
    dialogs: list[str] = []
    page.on("dialog", lambda d: dialogs.append(d.message))
    await page.goto(f"{chat.url}/webchat/")
    launcher = page.get_by_role("button", name="Open support chat")
    await launcher.focus()
    await page.keyboard.press("Enter")  # keyboard only
    panel = page.get_by_role("dialog", name="Example shop support")
    await panel.wait_for()
    box = await panel.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 375
    textbox = page.get_by_label("Your message")
    await textbox.fill("Where is my parcel?")
    await page.keyboard.press("Enter")
    await eventually(lambda: _acked(page), timeout=5)
    s = (await state(page))["session"]
    conv, visitor = s["conversation_id"], s["visitor_id"]

    await chat.reply(conv, visitor, "Hi, this is Alice. Let me check.", author="Alice")
    log = page.get_by_role("log", name="Conversation")
    await log.get_by_text("Hi, this is Alice. Let me check.").wait_for()
    assert await log.get_by_text("Alice", exact=True).count() == 1

    # Forced drop: close the socket; meanwhile a reply arrives and the customer types another message.
    await page.evaluate("window.SwitchboardChat._ws.close()")
    await chat.reply(conv, visitor, "Found it: it ships tomorrow.", author="Alice")
    await textbox.fill(HOSTILE)
    await page.get_by_role("button", name="Send message").click()
    await log.get_by_text("Found it: it ships tomorrow.").wait_for(timeout=10_000)
    await eventually(lambda: _acked(page), timeout=10)
    texts = [t.strip() for t in await page.locator(".sbc-msg .sbc-text").all_text_contents()]
    # The offline message shows at once, the missed reply when the socket is back: each exactly once.
    assert sorted(texts) == sorted(
        ["Where is my parcel?", "Hi, this is Alice. Let me check.", "Found it: it ships tomorrow.", HOSTILE]
    )
    stored = [m["text"] for m in await chat.transcript(conv)]
    assert stored == ["Where is my parcel?", HOSTILE]

    # Hostile text is text: no element was created from it and no script ran.
    assert await page.locator(".sbc-panel img").count() == 0
    assert dialogs == []

    await outbox.set_eta(redis, conv, 3)
    await outbox.publish_status(redis, conv)
    await page.get_by_text("A person will be with you in about 3 minutes.").wait_for()
    await request_csat(redis, conv)
    rate = page.get_by_role("button", name="Rate 5 out of 5")
    await rate.wait_for()
    await page.screenshot(path=str(_artifact("webchat.png")), full_page=True)
    await rate.focus()
    await page.keyboard.press("Enter")
    await page.get_by_text("Thank you for your feedback!").wait_for()
    assert (await redis.hget(outbox.csat_key(conv), "score")) == b"5"
    await page.close()


async def _acked(page: Page) -> bool:
    st = await state(page)
    sending = await page.locator(".sbc-state:text('Sending…')").count()
    return st["session"] is not None and st["outbox"] == [] and sending == 0


def _artifact(name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / name


async def test_widget_resends_unacked_message_after_reload(browser: Browser, chat: Chat) -> None:
    """A message typed while offline is kept in localStorage and sent once the page is back."""
    page = await browser.new_page()
    await page.goto(f"{chat.url}/webchat/")
    await page.evaluate("window.SwitchboardChat.open()")
    await eventually(lambda: _connected(page), timeout=5)
    await page.evaluate("window.SwitchboardChat._ws.onclose = null; window.SwitchboardChat._ws.close()")
    await page.evaluate("window.SwitchboardChat.send('sent while offline')")
    pending = (await state(page))["outbox"]
    assert [m["text"] for m in pending] == ["sent while offline"]
    conv = (await state(page))["session"]["conversation_id"]
    await page.reload()
    await page.evaluate("window.SwitchboardChat.open()")
    await eventually(lambda: _acked(page), timeout=5)
    await page.get_by_text("sent while offline").wait_for()
    await asyncio.sleep(0.2)
    assert await page.get_by_text("sent while offline").count() == 1
    assert [m["text"] for m in await chat.transcript(conv)] == ["sent while offline"]
    await page.close()


async def _connected(page: Page) -> bool:
    return bool(await page.evaluate("!!(window.SwitchboardChat._ws && window.SwitchboardChat._ws.readyState === 1)"))


async def test_a_message_that_must_wait_holds_back_the_ones_typed_after_it(browser: Browser, chat: Chat) -> None:
    """Storage answers "unavailable, retry in 1 s" to the first message; the customer types a second one at
    once. Only the first used to wait, so the second was stored (and answered) before it."""
    page = await browser.new_page()
    refused: list[str] = []

    def route(ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()

        def from_page(message: str | bytes) -> None:
            frame = json.loads(message)
            if frame.get("type") == "message" and not refused:
                refused.append(frame["client_id"])
                ws.send(json.dumps({"type": "error", "code": "unavailable", "message": "storage is unavailable",
                                    "client_id": frame["client_id"], "retry_after": 1}))
                return
            server.send(message)

        ws.on_message(from_page)

    await page.route_web_socket(re.compile(r"/webchat/ws"), route)
    await page.goto(f"{chat.url}/webchat/")
    await page.get_by_role("button", name="Open support chat").click()
    textbox = page.get_by_label("Your message")
    await eventually(lambda: page.evaluate("(window.SwitchboardChat._ws || {}).readyState === 1"))
    await page.wait_for_timeout(300)  # past the server's hello, which re-sends whatever is unacknowledged
    await textbox.fill("first: my order never came")
    await page.keyboard.press("Enter")
    await page.get_by_text("Waiting to send…").wait_for()
    await textbox.fill("second: and nobody answers")
    await page.keyboard.press("Enter")
    await eventually(lambda: _acked(page), timeout=15)
    assert refused
    conv = (await state(page))["session"]["conversation_id"]
    stored = [m["text"] for m in await chat.transcript(conv)]
    assert stored == ["first: my order never came", "second: and nobody answers"]
    await page.close()
