"""The widget in headless Chromium, when its click on the rating prompt is not the rating that counts.

Before: any click was answered "Thank you for your feedback!" and published as the rating, although the server
kept the earlier one, so the customer believed they had changed it.
"""

from __future__ import annotations

import json

import redis.asyncio as aioredis
from playwright.async_api import Browser

from gateway import keys
from integrations.webchat import outbox, request_csat
from tests.harness import eventually
from tests.test_webchat_support import Chat, chat
from tests.widget_page import settled, state

__all__ = ["chat"]


async def test_a_click_after_the_rating_was_given_elsewhere_shows_the_kept_one(
    browser: Browser, chat: Chat, redis: aioredis.Redis
) -> None:
    page = await (await browser.new_context()).new_page()
    await page.goto(f"{chat.url}/webchat/")
    await page.get_by_role("button", name="Open support chat").click()
    await page.get_by_label("Your message").fill("thanks, all sorted")
    await page.keyboard.press("Enter")
    await eventually(lambda: settled(page), timeout=10)
    conv = (await state(page))["session"]["conversation_id"]
    await request_csat(redis, conv, request_id="resolution-1")
    await page.get_by_role("button", name="Rate 2 out of 5").wait_for()
    # Meanwhile the customer answered by typing "3" (what the worker's csat.record stores and closes).
    await redis.hset(keys.conversation(conv), "csat", json.dumps(3))
    await redis.delete(keys.csat_asked(conv))

    await page.get_by_role("button", name="Rate 2 out of 5").click()
    await page.get_by_text("You already rated this conversation 3 out of 5. Thank you!").wait_for()
    assert await page.get_by_text("Thank you for your feedback!").count() == 0
    assert [f for _, f in await outbox.read(redis, conv, 0) if f["type"] == "csat_rated"] == []
    assert await redis.hget(keys.conversation(conv), "csat") == b"3"
