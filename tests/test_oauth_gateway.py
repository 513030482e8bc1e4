"""Multi-workspace install through the real gateway: /slack/install → Slack → redirect → cards post.

Slack is a standalone emulator here (as real Slack would be), not the one the gateway mounts locally.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestServer

from gateway.runtime import install_token
from integrations.slack.emulator import EMULATOR_STATE, EmulatorConfig, EmulatorState, create_emulator_app
from tests.harness import eventually, make_settings, start_gateway

EMU = EmulatorConfig()


@pytest.fixture
async def emulator() -> AsyncIterator[tuple[str, EmulatorState]]:
    app = create_emulator_app(EMU)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    yield f"http://127.0.0.1:{server.port}", app[EMULATOR_STATE]
    await server.close()


async def test_install_then_cards_post_with_the_installed_token(
    emulator: tuple[str, EmulatorState], redis: aioredis.Redis, redis_url: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    emu_base, slack = emulator
    settings = make_settings(
        redis_url, tmp_path, slack_oauth_enabled=True, slack_team_id=EMU.team_id,
        slack_signing_secret="oauth-signing-secret", slack_api_url=f"{emu_base}/api/",
    )
    base = f"http://127.0.0.1:{settings.port}"
    for name, value in {
        "SLACK_OAUTH_ENABLED": "true", "SLACK_CLIENT_ID": EMU.client_id, "SLACK_CLIENT_SECRET": EMU.client_secret,
        "SLACK_OAUTH_REDIRECT_URI": f"{base}/slack/oauth_redirect",
        "SLACK_OAUTH_AUTHORIZE_URL": f"{emu_base}/oauth/v2/authorize",
    }.items():
        monkeypatch.setenv(name, value)
    gw = await start_gateway(settings, with_worker=False, ensure_channels=False)
    try:
        assert gw.rt.slack.emulator is None  # real-Slack mode: nothing mounted locally
        assert not await install_token(gw.rt)  # not installed yet: the worker waits
        jar = aiohttp.CookieJar(unsafe=True, treat_as_secure_origin=[base])
        async with aiohttp.ClientSession(cookie_jar=jar) as browser:
            url = f"{base}/slack/install"
            for expect in (302, 302, 200):
                async with browser.get(url, allow_redirects=False) as resp:
                    assert resp.status == expect, await resp.text()
                    url = resp.headers.get("Location", "")
        assert await install_token(gw.rt)
        await gw.rt.desk.ensure_channels(gw.rt.policy.channels())
        gw.start_worker()
        status, _ = await gw.post_message({"customer_id": "o-1", "message_id": "m1", "text": "refund my invoice"})
        assert status == 202
        posted = await eventually(lambda: slack.messages("support-billing"))
        assert posted[0]["metadata"]["event_type"] == "switchboard_card"
    finally:
        await gw.close()
