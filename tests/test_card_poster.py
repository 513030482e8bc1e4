"""The card poster answers exactly as slack_sdk's client did, for every kind of answer Slack gives.

`CardPoster` skips slack_sdk's per-call machinery for chat.postMessage (the one call every routed message
makes). Callers rely on what the client raised: the pacer on a 429's `Retry-After`, `worker.transient` on
the status code, the desk on `["error"]`. Each case here is sent through both, to the same real server.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from slack_sdk.errors import SlackApiError

from gateway.worker import transient
from integrations.slack.desk import make_client, slack_session
from integrations.slack.poster import CardPoster

ANSWERS: dict[str, tuple[int, dict[str, str], bytes]] = {
    "ok": (200, {"Content-Type": "application/json"},
           b'{"ok": true, "channel": "C1", "ts": "1.000100", "message": {"text": "hi \xe2\x9c\x85"}}'),
    "refused": (200, {"Content-Type": "application/json"}, b'{"ok": false, "error": "channel_not_found"}'),
    "limited": (429, {"Content-Type": "application/json", "Retry-After": "7"},
                b'{"ok": false, "error": "ratelimited"}'),
    "limited_lower": (429, {"Content-Type": "application/json", "retry-after": "9"},  # HTTP/2 proxies send it so
                      b'{"ok": false, "error": "ratelimited"}'),
    "proxy": (502, {"Content-Type": "text/html"}, b"<html>Bad Gateway</html>"),
    "broken": (500, {"Content-Type": "application/json"}, b"{not json"),
}


@pytest.fixture
async def slack() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []

    async def post(request: web.Request) -> web.Response:
        body = await request.json()
        seen.append({"auth": request.headers.get("Authorization"), "type": request.content_type, "body": body})
        status, headers, raw = ANSWERS[body["channel"]]
        return web.Response(status=status, body=raw, headers=headers)

    app = web.Application()
    app.router.add_post("/api/chat.postMessage", post)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/api/", seen
    await runner.cleanup()


async def outcome(call: Any, channel: str) -> tuple[Any, ...]:
    try:
        resp = await call(channel=channel, text="x", blocks=[{"type": "section", "text": {"type": "mrkdwn",
                                                                                        "text": "é <&>"}}])
    except SlackApiError as exc:
        r = exc.response
        if not hasattr(r, "status_code"):  # slack_sdk on a body it cannot parse: aiohttp's bare response
            return ("raised", r.status, None, r.headers.get("Retry-After"), transient(exc))
        return ("raised", r.status_code, r.get("error"), r.headers.get("Retry-After"), transient(exc))
    return ("ok", resp.status_code, resp["channel"], resp["ts"], resp["message"]["text"])


@pytest.mark.parametrize("case", sorted(ANSWERS))
async def test_every_answer_comes_back_as_the_client_gave_it(slack: tuple[str, list[dict[str, Any]]],
                                                              case: str) -> None:
    url, seen = slack
    session = slack_session()
    try:
        client = make_client("xoxb-one", url, retries=False, session=session)
        before = await outcome(client.chat_postMessage, case)
        after = await outcome(CardPoster(client).chat_postMessage, case)
    finally:
        await session.close()
    if case == "broken":  # slack_sdk raised with aiohttp's response, no `status_code`: a 500 read as a bug
        assert before == ("raised", 500, None, None, False)  # (parked after 10 tries), not as an outage
        assert after == ("raised", 500, None, None, True)
    else:
        assert after == before
    assert after[0] == ("ok" if case == "ok" else "raised")
    sdk, ours = seen
    assert ours == sdk  # same token, same JSON body (blocks as objects, not strings)
    assert ours["auth"] == "Bearer xoxb-one" and ours["type"] == "application/json"
    assert ours["body"]["blocks"][0]["text"]["text"] == "é <&>"


async def test_the_retry_after_and_status_drive_the_callers(slack: tuple[str, list[dict[str, Any]]]) -> None:
    url, _ = slack
    session = slack_session()
    try:
        poster = CardPoster(make_client("xoxb-one", url, retries=False, session=session))
        assert await outcome(poster.chat_postMessage, "limited") == ("raised", 429, "ratelimited", "7", True)
        assert (await outcome(poster.chat_postMessage, "proxy"))[1:] == (502, None, None, True)
        assert (await outcome(poster.chat_postMessage, "refused"))[1:] == (200, "channel_not_found", None, False)
    finally:
        await session.close()


async def test_a_token_installed_later_is_the_one_sent(slack: tuple[str, list[dict[str, Any]]]) -> None:
    """OAuth mode sets the bot token on the shared client once the workspace installs the app."""
    url, seen = slack
    session = slack_session()
    try:
        client = make_client("", url, retries=False, session=session)
        poster = CardPoster(client)
        client.token = "xoxb-installed"
        await poster.chat_postMessage(channel="ok", text="x")
    finally:
        await session.close()
    assert seen[-1]["auth"] == "Bearer xoxb-installed"


async def test_without_a_shared_session_it_still_posts_once(slack: tuple[str, list[dict[str, Any]]]) -> None:
    """A client built without a session (scripts): slack_sdk opens one, and a 5xx is not resent."""
    url, seen = slack
    poster = CardPoster(make_client("xoxb-one", url))  # the retrying client: the poster must not retry
    assert (await outcome(poster.chat_postMessage, "broken"))[:2] == ("raised", 500)
    assert len(seen) == 1
    assert json.dumps(seen[0]["body"]["blocks"])  # sent as JSON objects
    async with aiohttp.ClientSession() as s:  # and the server is still there for the next
        async with s.post(f"{url}chat.postMessage", json={"channel": "ok"}) as r:
            assert r.status == 200
