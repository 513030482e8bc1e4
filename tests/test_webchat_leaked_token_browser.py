"""The widget keeps its resume secret out of URLs, comes back to its conversation after a reload, and does not
bring a visitor id stored by the widget before resume secrets back to that visitor's conversation.

Headless Chromium against the real web chat server, real Redis and the real store.
"""

from __future__ import annotations

import json

from playwright.async_api import Browser, Page, Request

from gateway.domain import ChannelKind, InboundMessage
from tests.harness import eventually
from tests.test_webchat_support import Chat, chat
from tests.widget_page import settled, state, texts

__all__ = ["chat"]

LEGACY_VISITOR = "v-" + "a" * 32
LEGACY_WORDS = "old private words of the legacy visitor"


async def ask(page: Page, text: str) -> None:
    await page.get_by_label("Your message").fill(text)
    await page.keyboard.press("Enter")
    await eventually(lambda: settled(page), timeout=10)


async def test_widget_resumes_by_a_secret_sent_only_in_a_post_body(browser: Browser, chat: Chat) -> None:
    # A conversation of a visitor from before resume secrets: their id is all a logged URL ever gave away.
    legacy = await chat.store.ingest(InboundMessage(channel=ChannelKind.WEBCHAT, customer_id=LEGACY_VISITOR,
                                                    message_id=f"{LEGACY_VISITOR}/c0", text=LEGACY_WORDS))
    context = await browser.new_context()
    page = await context.new_page()
    sockets: list[str] = []
    bodies: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))

    def sent(request: Request) -> None:
        bodies.append(request.post_data or "")
        sockets.append(request.url)  # every URL the widget asks for must be free of the secrets too

    page.on("request", sent)
    await page.goto(f"{chat.url}/webchat/")
    await page.evaluate(f"localStorage.setItem('sb_webchat_visitor', JSON.stringify('{LEGACY_VISITOR}'))")
    await page.reload()
    await page.get_by_role("button", name="Open support chat").click()
    await ask(page, "first question")
    session = (await state(page))["session"]
    assert session["conversation_id"] != legacy.conversation_id
    assert LEGACY_WORDS not in await texts(page)
    stored = await page.evaluate("({resume: localStorage.getItem('sb_webchat_resume'),"
                                 " visitor: localStorage.getItem('sb_webchat_visitor')})")
    assert stored["visitor"] is None  # the old id proves nothing: dropped, never sent again
    resume = json.loads(stored["resume"])
    assert resume == session["resume"] and resume.startswith("r-")

    await page.reload()
    await page.get_by_role("button", name="Open support chat").click()
    await page.get_by_text("first question").wait_for(timeout=10_000)
    assert (await state(page))["session"]["conversation_id"] == session["conversation_id"]
    await ask(page, "second question")
    assert await texts(page) == ["first question", "second question"]

    socket_urls = [u for u in sockets if "/webchat/ws" in u]
    assert socket_urls, sockets
    for url in sockets:
        assert "token=" not in url and resume not in url and session["visitor_id"] not in url, url
    assert any(json.loads(b).get("resume") == resume for b in bodies if b.startswith("{"))
    assert not any(LEGACY_VISITOR in b for b in bodies)
    await context.close()


async def test_a_tab_loaded_before_the_chat_started_joins_it(browser: Browser, chat: Chat) -> None:
    """Found in the diff review: each tab read the resume secret once, at load. Two tabs open, the chat started in
    A, then opened in B: B asked for a new secret, landed in a new conversation and overwrote A's."""
    context = await browser.new_context()
    a, b = await context.new_page(), await context.new_page()
    for page in (a, b):
        await page.goto(f"{chat.url}/webchat/")
    await a.get_by_role("button", name="Open support chat").click()
    await ask(a, "from tab A")
    first = (await state(a))["session"]["conversation_id"]
    await b.get_by_role("button", name="Open support chat").click()
    await b.get_by_text("from tab A").wait_for(timeout=10_000)
    assert (await state(b))["session"]["conversation_id"] == first
    await context.close()
