"""The real gateway with Twilio configured against a local stand-in of its Messages API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from aiohttp import web

from tests.harness import Gateway, make_settings, serve_app, start_gateway
from tests.test_twilio import PUBLIC, SHOP, SID, TOKEN
from tests.twilio_standin import StandIn


@pytest.fixture
async def sms_gw(redis: aioredis.Redis, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                 ) -> AsyncIterator[tuple[Gateway, StandIn]]:
    """`redis` first: it empties the database, which must happen before the gateway creates its groups."""
    standin = StandIn(url="")
    twilio_app = web.Application()
    standin.mount(twilio_app)
    standin.url, twilio_runner = await serve_app(twilio_app)
    for name, value in {"TWILIO_AUTH_TOKEN": TOKEN, "TWILIO_ACCOUNT_SID": SID, "TWILIO_FROM_NUMBER": SHOP,
                        "TWILIO_API_URL": standin.url, "SWITCHBOARD_PUBLIC_URL": PUBLIC}.items():
        monkeypatch.setenv(name, value)
    gw = await start_gateway(make_settings(redis_url, tmp_path))
    yield gw, standin
    await gw.close()
    await twilio_runner.cleanup()


