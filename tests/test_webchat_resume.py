"""Where a widget resumes: a position from another conversation, a refused token, a position Redis cannot read.

Widget behaviour runs in headless Chromium against the real server, real Redis and the real store.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator

import aiohttp
import redis.asyncio as aioredis
from aiohttp import web
from playwright.async_api import Browser, Page

from gateway import keys
from gateway.store import ConversationStore
from integrations.webchat import WebchatConfig, outbox, setup
from tests.conftest import free_port
from tests.harness import eventually
from tests.test_webchat_support import Chat, chat, recv, recv_until, start_chat
from tests.widget_page import settled, state, texts

__all__ = ["chat"]

REOPEN_LONG_AGO_S = 8 * 86400


async def first_question(browser: Browser, chat: Chat) -> tuple[Page, str, str]:
    """A visitor opens the widget and asks: (its page, the conversation id, the visitor id)."""
    page = await browser.new_page()
    await page.goto(f"{chat.url}/webchat/")
    await page.get_by_role("button", name="Open support chat").click()
    await page.get_by_label("Your message").fill("first question")
    await page.keyboard.press("Enter")
    await eventually(lambda: settled(page), timeout=10)
    s = (await state(page))["session"]
    return page, s["conversation_id"], s["visitor_id"]


async def test_widget_follows_a_conversation_another_tab_started_from_its_first_frame(
    browser: Browser, redis: aioredis.Redis
) -> None:
    """The widget used to resume the new conversation at the old one's seq and skip its first frames."""
    chat, runner = await start_chat(redis, token_ttl_s=30)  # every reconnect fetches a session
    try:
        page, old, visitor = await first_question(browser, chat)
        for i in range(4):
            await chat.reply(old, visitor, f"old reply {i}")
        await page.get_by_text("old reply 3").wait_for()
        assert (await state(page))["lastSeq"] == 5
        await redis.set(keys.closed(old), int(time.time()) - REOPEN_LONG_AGO_S)  # resolved long ago

        # The visitor's other tab writes: the store starts a new conversation.
        other = await chat.session({"resume": (await state(page))["session"]["resume"]})
        ws = await chat.connect(other["token"])
        await ws.send_json({"type": "message", "client_id": "ctab2", "text": "second tab question"})
        new = (await recv_until(ws, "conversation"))["conversation_id"]
        assert new != old

        await page.evaluate("window.SwitchboardChat._ws.close()")  # this tab's socket drops
        await eventually(lambda: _on(page, new), timeout=15)
        await chat.reply(new, visitor, "NEW REPLY a")
        await chat.reply(new, visitor, "NEW REPLY b")
        await page.get_by_text("NEW REPLY b").wait_for(timeout=10_000)
        shown = await texts(page)
        assert shown[-3:] == ["second tab question", "NEW REPLY a", "NEW REPLY b"]
        assert (await state(page))["lastSeq"] == 3
        await ws.close()
        await page.close()
    finally:
        await chat.http.close()
        await runner.cleanup()


async def test_an_open_tab_moves_to_the_conversation_another_tab_started_without_reconnecting(
    browser: Browser, redis: aioredis.Redis
) -> None:
    """Its socket followed the old stream and pinged, so it never reconnected: agent replies in the new
    conversation showed only once the customer typed there."""
    chat, runner = await start_chat(redis)
    try:
        page, old, visitor = await first_question(browser, chat)
        await redis.set(keys.closed(old), int(time.time()) - REOPEN_LONG_AGO_S)  # resolved long ago
        await page.evaluate("window.SwitchboardChat._ws.__first = true")
        other = await chat.session({"resume": (await state(page))["session"]["resume"]})
        ws = await chat.connect(other["token"])
        await ws.send_json({"type": "message", "client_id": "ctab2", "text": "second tab question"})
        new = (await recv_until(ws, "conversation"))["conversation_id"]
        await eventually(lambda: _on(page, new), timeout=10)
        await chat.reply(new, visitor, "NEW REPLY a")
        await page.get_by_text("NEW REPLY a").wait_for(timeout=10_000)
        assert (await texts(page))[-2:] == ["second tab question", "NEW REPLY a"]
        assert await page.evaluate("window.SwitchboardChat._ws.__first === true")  # the same socket moved
        await ws.close()
        await page.close()
    finally:
        await chat.http.close()
        await runner.cleanup()


async def _on(page: Page, conversation_id: str) -> bool:
    s = await state(page)
    return bool(s["session"]) and s["session"]["conversation_id"] == conversation_id and bool(
        await page.evaluate("!!(window.SwitchboardChat._ws && window.SwitchboardChat._ws.readyState === 1)")
    )


async def test_a_since_past_the_streams_end_resumes_from_the_start(chat: Chat) -> None:
    """Such a seq was issued for another conversation (or an older widget kept it): 0 is the only safe point."""
    s = await chat.session()
    conv = s["conversation_id"]
    await chat.reply(conv, s["visitor_id"], "one")
    await chat.reply(conv, s["visitor_id"], "two")
    ws = await chat.http.ws_connect(f"{chat.url}/webchat/ws?token={s['token']}&since=7",
                                    headers={"Origin": chat.url})
    hello = await recv(ws)
    frames = [await recv_until(ws, "message", timeout=2) for _ in range(2)]
    assert [(f["seq"], f["text"]) for f in frames] == [(1, "one"), (2, "two")]
    assert hello["type"] == "hello" and hello["since"] == 0  # the widget resets its position to this
    await ws.close()
    ws = await chat.connect(s["token"], since=1)  # a real position is kept
    frame = await recv_until(ws, "message")
    assert (frame["seq"], frame["text"]) == (2, "two")
    await ws.close()


async def test_since_beyond_a_stream_id_is_refused(chat: Chat) -> None:
    """10**30 used to make every stream read fail ("Invalid stream ID") and the socket retry forever."""
    s = await chat.session()
    for since in (10**30, 2**63):
        try:
            await chat.http.ws_connect(f"{chat.url}/webchat/ws?token={s['token']}&since={since}",
                                       headers={"Origin": chat.url})
            raise AssertionError(f"since={since} accepted")
        except aiohttp.WSServerHandshakeError as exc:
            assert exc.status == 400
    ws = await chat.http.ws_connect(f"{chat.url}/webchat/ws?token={s['token']}&since={2**63 - 1}",
                                    headers={"Origin": chat.url})
    assert (await recv(ws))["since"] == 0
    await ws.send_json({"type": "message", "client_id": "c1", "text": "hi"})
    assert (await recv_until(ws, "message"))["seq"] == 1  # the echo arrives: the stream is followed
    await ws.close()


async def test_a_stream_redis_refuses_to_read_closes_the_socket_with_an_error(
    chat: Chat, redis: aioredis.Redis
) -> None:
    """An error reply repeats on every retry: the socket says so and closes instead of going silent forever."""
    s = await chat.session()
    await redis.set(outbox.out_stream(s["conversation_id"]), "not a stream")  # WRONGTYPE on every read
    for since in (0, 3):
        ws = await chat.http.ws_connect(f"{chat.url}/webchat/ws?token={s['token']}&since={since}",
                                        headers={"Origin": chat.url})
        frames = [await recv(ws)]
        if frames[0]["type"] == "hello":
            frames.append(await recv(ws))
        assert frames[-1]["type"] == "error" and frames[-1]["code"] == "stream_unavailable"
        closing = await ws.receive(timeout=5)
        assert closing.type is aiohttp.WSMsgType.CLOSE and closing.data == 1011
        await ws.close()


# --- a token the server no longer accepts --------------------------------------------------------------


async def _serve(redis: aioredis.Redis, port: int) -> AsyncGenerator[web.AppRunner, None]:
    """Local mode (no WEBCHAT_TOKEN_SECRET): each start signs with a new generated key."""
    async with aiohttp.ClientSession() as http:
        app = web.Application()
        setup(app, redis=redis, ingest=ConversationStore(redis, partitions=4).ingest, session=http,
              config=WebchatConfig(_env_file=None))  # type: ignore[call-arg]
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            yield runner
        finally:
            await runner.cleanup()


async def test_widget_asks_for_a_new_session_when_its_token_is_refused(
    browser: Browser, chat: Chat, redis: aioredis.Redis
) -> None:
    """After a restart with a generated key every handshake is 401; the widget kept its token for 15 minutes."""
    port = free_port()
    first = _serve(redis, port)
    await anext(first)
    page = await browser.new_page()
    sessions: list[str] = []
    page.on("request", lambda r: sessions.append(r.url) if r.url.endswith("/webchat/session") else None)
    await page.goto(f"http://127.0.0.1:{port}/webchat/")
    await page.get_by_role("button", name="Open support chat").click()
    await page.get_by_label("Your message").fill("before restart")
    await page.keyboard.press("Enter")
    await eventually(lambda: settled(page), timeout=10)
    conv = (await state(page))["session"]["conversation_id"]
    await first.aclose()  # the web process restarts...
    second = _serve(redis, port)
    await anext(second)  # ...with a new generated token key
    try:
        sessions.clear()
        await page.get_by_label("Your message").fill("after restart")
        await page.keyboard.press("Enter")
        await eventually(lambda: settled(page), timeout=15)
        assert sessions, "the widget never asked for a new session"
        assert [m["text"] for m in await chat.transcript(conv)] == ["before restart", "after restart"]
        await page.close()
    finally:
        await second.aclose()
