"""The multi-workspace install, end to end over real HTTP: bolt's OAuth flow ↔ the Slack emulator ↔ Redis.

No gateway: a small aiohttp app mounts bolt exactly as the gateway would (`/slack/events` plus the
install routes from `integrations.slack.oauth.oauth_routes`), with its Web API client pointed at the
emulator. The browser is an aiohttp client that follows each redirect by hand, so every hop is checked.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import SecretStr
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from integrations.slack.emulator import EMULATOR_STATE, EmulatorConfig, EmulatorState, create_emulator_app
from integrations.slack.oauth import (
    DEFAULT_SCOPES,
    RedisInstallationStore,
    SlackOAuthConfig,
    build,
    oauth_routes,
)
from tests.conftest import free_port

SIGNING_SECRET = "oauth-test-signing-secret"
EMU = EmulatorConfig()
TEAM = EMU.team_id


@dataclass
class Setup:
    app_base: str
    emu_base: str
    emu: EmulatorState
    bolt: AsyncApp
    config: SlackOAuthConfig
    store: RedisInstallationStore
    browser: aiohttp.ClientSession
    seen: list[dict[str, Any]] = field(default_factory=list)


def _signed(body: str) -> dict[str, str]:
    ts = str(int(time.time()))
    sig = hmac.new(SIGNING_SECRET.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={sig}"}


def _event(team_id: str) -> str:
    return json.dumps(
        {
            "token": "legacy",
            "team_id": team_id,
            "api_app_id": "A0SWITCHBD",
            "type": "event_callback",
            "event": {"type": "app_home_opened", "user": "U0ALICE", "channel": "D0ALICE", "tab": "home"},
            "event_id": f"Ev{uuid.uuid4().hex[:10].upper()}",
            "event_time": int(time.time()),
            "authorizations": [{"team_id": team_id, "user_id": EMU.bot_user_id, "is_bot": True}],
        }
    )


@pytest.fixture
async def setup(redis: aioredis.Redis) -> AsyncIterator[Setup]:
    emulator = create_emulator_app(EMU)
    emu_server = TestServer(emulator, host="127.0.0.1", port=0)
    await emu_server.start_server()
    emu_base = f"http://127.0.0.1:{emu_server.port}"

    port = free_port()
    app_base = f"http://127.0.0.1:{port}"
    config = SlackOAuthConfig(
        enabled=True,
        client_id=EMU.client_id,
        client_secret=SecretStr(EMU.client_secret),
        redirect_uri=f"{app_base}/slack/oauth_redirect",
        authorize_url=f"{emu_base}/oauth/v2/authorize",
    )
    settings = build(redis, config)
    assert settings is not None
    # Bolt gives its own client to the OAuth flow, so pointing it at the emulator covers
    # oauth.v2.access, the auth.test after it, and the auth.test of each authorized request.
    bolt = AsyncApp(
        client=AsyncWebClient(base_url=f"{emu_base}/api/"),
        signing_secret=SIGNING_SECRET,
        oauth_settings=settings,
        raise_error_for_unhandled_request=False,
    )
    seen: list[dict[str, Any]] = []

    @bolt.event("app_home_opened")
    async def home(context: dict[str, Any]) -> None:
        seen.append({"team_id": context.get("team_id"), "bot_token": context.get("bot_token")})

    async def events(request: web.Request) -> web.Response:
        return await to_aiohttp_response(await bolt.async_dispatch(await to_bolt_request(request)))

    app = web.Application()
    app.router.add_post("/slack/events", events)
    app.add_routes(oauth_routes(bolt))
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    # bolt's state cookie is Secure; treat our loopback origin as secure, like browsers treat localhost.
    jar = aiohttp.CookieJar(unsafe=True, treat_as_secure_origin=[app_base])
    browser = aiohttp.ClientSession(cookie_jar=jar)
    store = settings.installation_store
    assert isinstance(store, RedisInstallationStore)
    try:
        yield Setup(app_base, emu_base, emulator[EMULATOR_STATE], bolt, config, store, browser, seen)
    finally:
        await browser.close()
        await runner.cleanup()
        await emu_server.close()


async def _hop(browser: aiohttp.ClientSession, url: str, expect: int = 302) -> aiohttp.ClientResponse:
    async with browser.get(url, allow_redirects=False) as resp:
        await resp.read()
        assert resp.status == expect, (url, resp.status, await resp.text())
        return resp


async def _install(s: Setup, installer: str | None = None) -> str:
    """Install page → emulator's authorize → our redirect URL; returns the callback URL used."""
    start = await _hop(s.browser, f"{s.app_base}/slack/install")
    authorize = start.headers["Location"]
    assert authorize.startswith(f"{s.emu_base}/oauth/v2/authorize?")
    query = parse_qs(urlsplit(authorize).query)
    assert query["client_id"] == [EMU.client_id]
    assert query["scope"] == [",".join(DEFAULT_SCOPES)]
    assert query["redirect_uri"] == [s.config.redirect_uri]
    if installer:
        authorize += f"&user={installer}"
    back = (await _hop(s.browser, authorize)).headers["Location"]
    assert back.startswith(f"{s.config.redirect_uri}?")
    assert parse_qs(urlsplit(back).query)["state"] == query["state"]
    done = await _hop(s.browser, back, expect=200)
    assert "slack-app-oauth-state" in done.headers.get("Set-Cookie", "")  # bolt clears the cookie
    return back


async def test_install_saves_bot_in_redis_and_authorizes_requests(setup: Setup, redis: aioredis.Redis) -> None:
    assert await setup.store.async_find_bot(enterprise_id=None, team_id=TEAM) is None
    await _install(setup)

    bot = await setup.store.async_find_bot(enterprise_id=None, team_id=TEAM)
    assert bot is not None
    assert bot.bot_token == EMU.bot_token
    assert bot.bot_user_id == EMU.bot_user_id
    assert bot.bot_id == "B" + EMU.bot_user_id[1:]  # from the auth.test bolt runs after oauth.v2.access
    assert list(bot.bot_scopes) == list(DEFAULT_SCOPES)
    installation = await setup.store.async_find_installation(enterprise_id=None, team_id=TEAM)
    assert installation is not None and installation.user_id == "U0ALICE" and installation.team_name == EMU.team_name
    assert [c.method for c in setup.emu.calls] == ["oauth.v2.access", "auth.test"]
    assert "client_secret" not in setup.emu.calls[0].params  # the emulator's log never keeps it
    assert not await redis.keys("sb:slack:oauth_state:*")  # consumed

    # A request from the installed workspace is authorized with the stored token.
    body = _event(TEAM)
    async with setup.browser.post(f"{setup.app_base}/slack/events", data=body, headers=_signed(body)) as r:
        assert r.status == 200
    for _ in range(100):
        if setup.seen:
            break
        await asyncio.sleep(0.02)
    assert setup.seen == [{"team_id": TEAM, "bot_token": EMU.bot_token}]


async def test_request_from_unknown_workspace_is_not_authorized(setup: Setup) -> None:
    body = _event("T0NOTINSTALLED")
    async with setup.browser.post(f"{setup.app_base}/slack/events", data=body, headers=_signed(body)) as r:
        assert "installation" in (await r.text()).lower() or r.status == 401, (r.status, await r.text())
    await asyncio.sleep(0.2)
    assert setup.seen == []


async def test_state_is_single_use(setup: Setup) -> None:
    callback = await _install(setup)
    state = parse_qs(urlsplit(callback).query)["state"][0]
    # Replay the callback with the matching browser cookie: the cookie check passes, the store refuses.
    async with aiohttp.ClientSession() as other:
        async with other.get(callback, headers={"Cookie": f"slack-app-oauth-state={state}"}) as resp:
            assert resp.status == 401
    assert [c.method for c in setup.emu.calls].count("oauth.v2.access") == 1


async def test_forged_or_cookieless_state_fails(setup: Setup) -> None:
    start = await _hop(setup.browser, f"{setup.app_base}/slack/install")
    back = (await _hop(setup.browser, start.headers["Location"])).headers["Location"]
    async with aiohttp.ClientSession() as stranger:  # no state cookie: a link sent to someone else
        async with stranger.get(back) as resp:
            assert resp.status == 400
    forged = back.replace("state=", "state=x")
    async with setup.browser.get(forged, allow_redirects=False) as resp:
        assert resp.status == 400  # bolt: the state does not match the browser's cookie
    assert await setup.store.async_find_bot(enterprise_id=None, team_id=TEAM) is None


async def test_expired_state_is_refused(setup: Setup, redis: aioredis.Redis) -> None:
    start = await _hop(setup.browser, f"{setup.app_base}/slack/install")
    back = (await _hop(setup.browser, start.headers["Location"])).headers["Location"]
    (key,) = await redis.keys("sb:slack:oauth_state:*")
    assert 0 < await redis.pttl(key) <= setup.config.state_ttl_s * 1000
    await redis.pexpire(key, 1)  # time passes: Redis expires the state on its own
    await asyncio.sleep(0.05)
    async with setup.browser.get(back, allow_redirects=False) as resp:
        assert resp.status == 401
    assert await setup.store.async_find_bot(enterprise_id=None, team_id=TEAM) is None


# ---- the emulator's side of the flow ---------------------------------------------------------------


async def _code(s: Setup, redirect_uri: str = "https://app.example/cb") -> str:
    url = f"{s.emu_base}/oauth/v2/authorize?client_id={EMU.client_id}&scope=chat:write&redirect_uri={redirect_uri}"
    location = (await _hop(s.browser, url)).headers["Location"]
    return parse_qs(urlsplit(location).query)["code"][0]


async def test_emulator_oauth_v2_access_shape_and_errors(setup: Setup) -> None:
    client = AsyncWebClient(base_url=f"{setup.emu_base}/api/")
    code = await _code(setup)
    resp = await client.oauth_v2_access(
        client_id=EMU.client_id, client_secret=EMU.client_secret, code=code, redirect_uri="https://app.example/cb"
    )
    assert resp["access_token"] == EMU.bot_token and resp["token_type"] == "bot"
    assert resp["team"] == {"id": TEAM, "name": EMU.team_name} and resp["enterprise"] is None
    assert resp["scope"] == "chat:write" and resp["authed_user"] == {"id": "U0ALICE"}
    assert resp["bot_user_id"] == EMU.bot_user_id and resp["is_enterprise_install"] is False

    async def error(**kw: Any) -> str:
        args = {"client_id": EMU.client_id, "client_secret": EMU.client_secret, **kw}
        with pytest.raises(SlackApiError) as exc:
            await client.oauth_v2_access(**args)
        return str(exc.value.response["error"])

    assert await error(code=code, redirect_uri="https://app.example/cb") == "invalid_code"  # used already
    assert await error(code=await _code(setup), client_secret="nope") == "bad_client_secret"
    assert await error(code=await _code(setup), client_id="nope") == "invalid_client_id"
    assert await error(code=await _code(setup), redirect_uri="https://evil.example/cb") == "bad_redirect_uri"


async def test_emulator_authorize_rejects_unknown_client(setup: Setup) -> None:
    async with setup.browser.get(
        f"{setup.emu_base}/oauth/v2/authorize?client_id=nope&redirect_uri=https://x/cb", allow_redirects=False
    ) as resp:
        assert resp.status == 400
        assert "invalid_client_id" in await resp.text()
