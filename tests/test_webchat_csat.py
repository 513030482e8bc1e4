"""The rating prompt in headless Chromium: asked once per request, across reloads and the customer's tabs."""

from __future__ import annotations

import redis.asyncio as aioredis
from playwright.async_api import Browser, Page

from integrations.webchat import outbox, request_csat
from tests.harness import eventually
from tests.test_webchat_support import Chat, chat
from tests.widget_page import settled, state

__all__ = ["chat"]


async def _caught_up(page: Page, redis: aioredis.Redis, conversation_id: str) -> bool:
    """The whole stream was replayed to the page (so whatever it shows now is the final state)."""
    s = await state(page)
    return bool(s["session"]) and s["lastSeq"] == await outbox.last_seq(redis, conversation_id)


async def test_a_given_rating_is_not_asked_again_after_a_reload_or_in_another_tab(
    browser: Browser, chat: Chat, redis: aioredis.Redis
) -> None:
    """csat_request is replayed from seq 0 on every load: the prompt came back and a second rating overwrote
    the first. The rating is now in the stream after the request, so the replay ends with the prompt hidden."""
    context = await browser.new_context()  # one browser profile: both tabs are the same visitor
    tab = await context.new_page()
    await tab.goto(f"{chat.url}/webchat/")
    await tab.get_by_role("button", name="Open support chat").click()
    await tab.get_by_label("Your message").fill("thanks, that solved it")
    await tab.keyboard.press("Enter")
    await eventually(lambda: settled(tab), timeout=10)
    conv = (await state(tab))["session"]["conversation_id"]
    await request_csat(redis, conv, request_id="resolution-1")
    other = await context.new_page()
    await other.goto(f"{chat.url}/webchat/")
    await other.get_by_role("button", name="Open support chat").click()
    for page in (tab, other):
        await page.get_by_role("button", name="Rate 4 out of 5").wait_for()

    await tab.get_by_role("button", name="Rate 4 out of 5").click()
    await tab.get_by_text("Thank you for your feedback!").wait_for()
    await other.get_by_role("button", name="Rate 4 out of 5").wait_for(state="detached")  # answered elsewhere
    assert await redis.hget(outbox.csat_key(conv), "score") == b"4"

    await tab.reload()
    await tab.get_by_role("button", name="Open support chat").click()
    await eventually(lambda: _caught_up(tab, redis, conv), timeout=10)
    await tab.get_by_text("thanks, that solved it").wait_for()
    assert await tab.get_by_role("button", name="Rate 4 out of 5").count() == 0
    assert await tab.locator(".sbc-csat").is_hidden()

    await request_csat(redis, conv, request_id="resolution-2")  # reopened and resolved again: a new question
    await tab.get_by_role("button", name="Rate 5 out of 5").wait_for()
    await context.close()

