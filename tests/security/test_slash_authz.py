"""`/switchboard` through the real signed endpoint: strangers are refused everything, agents every change.

The answer comes back on Slack's `response_url`, served here by a tiny recorder, exactly like Slack.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp import web

from integrations.slack.commands.context import DEFAULT_COMMAND
from integrations.slack.commands.format import APPLY_ACTION
from tests.conftest import free_port
from tests.harness import Gateway, eventually, make_settings, start_gateway
from tests.slack_requests import SlackSender


@pytest.fixture
async def responses() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    got: list[dict[str, Any]] = []

    async def record(request: web.Request) -> web.Response:
        got.append(json.loads(await request.read()))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/respond", record)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}/respond", got
    await runner.cleanup()


@pytest.fixture
async def roles_gw(redis: aioredis.Redis, redis_url: str, tmp_path: Path) -> AsyncIterator[Gateway]:
    gw = await start_gateway(make_settings(redis_url, tmp_path, agents_raw="U0ALICE,U0CAROL", leads_raw="U0CAROL"),
                             with_worker=False)
    yield gw
    await gw.close()


async def test_strangers_and_agents_cannot_change_routing(
    roles_gw: Gateway, responses: tuple[str, list[dict[str, Any]]]
) -> None:
    url, got = responses
    slack = SlackSender(roles_gw.session, f"{roles_gw.url}/slack/events", roles_gw.rt.slack.signing_secret)
    channel = roles_gw.slack.channel_id("support-leads")
    before = (await roles_gw.rt.policies.current(force=True)).version
    attempts = [("U0MALLORY", "policy"), ("U0MALLORY", "threshold urgent 0.1"), ("U0MALLORY", "automation pause"),
                ("U0ALICE", "threshold urgent 0.1"), ("U0ALICE", "automation pause"), ("U0ALICE", "undo"),
                ("U0ALICE", "apply deadbeef")]
    for user, text in attempts:
        status, _ = await slack.slash(user, DEFAULT_COMMAND, text, channel, response_url=url)
        assert status == 200
    await eventually(lambda: len(got) >= len(attempts), timeout=15)
    texts = [r.get("text", "") for r in got]
    assert all(t.startswith("🚫") for t in texts), texts
    assert all(r.get("response_type") == "ephemeral" for r in got)
    status, _ = await slack.interaction({
        "type": "block_actions", "user": {"id": "U0ALICE", "username": "alice", "team_id": "T0SWITCHBD"},
        "api_app_id": "A0SWITCHBD", "token": "legacy", "team": {"id": "T0SWITCHBD", "domain": "switchboard"},
        "container": {"type": "message", "message_ts": "1.000001", "channel_id": channel, "is_ephemeral": True},
        "channel": {"id": channel, "name": "support-leads"}, "response_url": url, "trigger_id": "1.2",
        "actions": [{"type": "button", "action_id": APPLY_ACTION, "value": "deadbeef", "block_id": "b",
                     "action_ts": "1.3"}],
    })
    assert status == 200
    await eventually(lambda: len(got) > len(attempts), timeout=15)
    assert got[-1].get("text", "").startswith("🚫")
    assert (await roles_gw.rt.policies.current(force=True)).version == before
