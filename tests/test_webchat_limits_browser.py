"""The widget under the server's socket limits, in headless Chromium against the real server and real Redis."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
from playwright.async_api import Browser, Page

from tests.harness import eventually
from tests.test_webchat_support import start_chat
from tests.widget_page import settled, state

SET_VISIBILITY = """v => {
  Object.defineProperty(document, "visibilityState", { configurable: true, get: () => v });
  document.dispatchEvent(new Event("visibilitychange"));
}"""


async def socket_state(page: Page) -> int | None:
    result: int | None = await page.evaluate("window.SwitchboardChat._ws && window.SwitchboardChat._ws.readyState")
    return result


async def test_widget_keeps_a_seen_page_alive_sleeps_when_hidden_and_waits_out_a_refusal(
    browser: Browser, redis: aioredis.Redis
) -> None:
    chat, runner = await start_chat(redis, idle_timeout_s=1, sockets_per_visitor=1)
    context = await browser.new_context()
    try:
        page = await context.new_page()
        opened: list[str] = []
        page.on("websocket", lambda ws: opened.append(ws.url))
        await page.goto(f"{chat.url}/webchat/")
        await page.get_by_role("button", name="Open support chat").click()
        await eventually(lambda: settled(page), timeout=5)
        await asyncio.sleep(1.6)  # past the idle timeout: a visible page pings, so it keeps its one socket
        assert len(opened) == 1 and await socket_state(page) == 1

        await page.evaluate(SET_VISIBILITY, "hidden")  # a hidden page lets the server close it as idle...
        await eventually(lambda: _closed(page), timeout=3)
        await asyncio.sleep(0.3)
        assert len(opened) == 1  # ...and does not reconnect while nobody looks
        s = (await state(page))["session"]
        await chat.reply(s["conversation_id"], s["visitor_id"], "answered while you were away")
        await page.evaluate(SET_VISIBILITY, "visible")  # seen again: back, with what it missed
        await page.get_by_text("answered while you were away").wait_for(timeout=5000)
        assert len(opened) == 2

        other = await context.new_page()  # the same visitor in a second tab, over a cap of one
        attempts: list[str] = []
        other.on("websocket", lambda ws: attempts.append(ws.url))
        await other.goto(f"{chat.url}/webchat/")
        await other.get_by_role("button", name="Open support chat").click()
        await other.get_by_text("this chat is open in too many tabs").wait_for(timeout=5000)
        await asyncio.sleep(0.8)
        assert len(attempts) == 1  # it waits the 30 s it was told instead of retrying at once
    finally:
        await context.close()
        await chat.http.close()
        await runner.cleanup()


async def _closed(page: Page) -> bool:
    return await socket_state(page) in (None, 3)  # 3: CLOSED
