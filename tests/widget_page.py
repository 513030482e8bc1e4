"""Reading the web chat widget's state from a Chromium page, for the browser tests."""

from __future__ import annotations

from typing import Any

from playwright.async_api import Page


async def state(page: Page) -> dict[str, Any]:
    """The widget's own state (`window.SwitchboardChat.state()`): session, outbox, lastSeq, inflight."""
    result: dict[str, Any] = await page.evaluate("window.SwitchboardChat.state()")
    return result


async def settled(page: Page) -> bool:
    """Connected, with nothing waiting to be sent and nothing awaiting its ack."""
    s = await state(page)
    return bool(s["session"]) and not s["outbox"] and s["inflight"] is None


async def texts(page: Page) -> list[str]:
    """The conversation as the widget shows it, oldest first."""
    return [t.strip() for t in await page.locator(".sbc-msg .sbc-text").all_text_contents()]
