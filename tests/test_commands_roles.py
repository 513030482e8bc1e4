"""Who may do what: agents view, leads change, refusals say why and are logged; user groups in local mode."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from gateway import keys
from integrations.slack.commands.roster import Roster
from tests.harness import Gateway, eventually
from tests.test_commands_support import Slash, commands_gateway


@pytest.fixture
async def carol_gw(redis: aioredis.Redis, redis_url: str, tmp_path: Path) -> AsyncIterator[Gateway]:
    gw = await commands_gateway(redis_url, tmp_path, leads_raw="U0CAROL")
    yield gw
    await gw.close()


async def test_agent_views_but_cannot_change(carol_gw: Gateway) -> None:
    slash = Slash(carol_gw)
    assert "Routing policy v1" in await slash.text("policy", user="U0BOB")
    who = await slash.text("whoami", user="U0BOB")
    assert "*agent*" in who and "not in SWITCHBOARD_LEADS" in who
    for command in ("threshold urgent 0.9", "undo", "apply", "canary drop", "route billing #x --canary 10%"):
        text = await slash.text(command, user="U0BOB")
        assert text.startswith("🚫 only team leads can change routing (not in SWITCHBOARD_LEADS)"), text
    assert (await carol_gw.rt.policies.current(force=True)).version == 1
    rows: Any = await carol_gw.rt.redis.xrange(keys.AUDIT)
    audit = [json.loads(f[b"data"]) for _, f in rows]
    refused = [a for a in audit if a["action"] == "policy_refused"]
    assert len(refused) == 5 and refused[0]["user"] == "U0BOB" and refused[0]["command"] == "threshold urgent 0.9"
    # A dry run is viewing: allowed, but without an Apply button for a non-lead.
    preview = await slash("threshold urgent 0.9 --dry-run", user="U0BOB")
    assert "Preview" in json.dumps(preview) and "sb_policy_apply" not in json.dumps(preview)


async def test_lead_changes(carol_gw: Gateway) -> None:
    slash = Slash(carol_gw)
    assert "*lead*" in await slash.text("whoami", user="U0CAROL")
    assert (await slash.text("threshold urgent 0.9", user="U0CAROL")).startswith("✅")
    assert (await carol_gw.rt.policies.current(force=True)).thresholds.urgent == 0.9


async def test_user_group_leads_are_checked_through_usergroups_users_list(
    redis: aioredis.Redis, redis_url: str, tmp_path: Path
) -> None:
    gw = await commands_gateway(redis_url, tmp_path, leads_raw="S0LEADS")
    try:
        slash = Slash(gw)
        assert "not in SWITCHBOARD_LEADS" in await slash.text("whoami", user="U0BOB")
        assert (await slash.text("automation pause", user="U0BOB")).startswith("🚫")
        assert not (await slash.text("automation pause", user="U0CAROL")).startswith("🚫")  # in S0LEADS
    finally:
        await gw.close()


async def test_non_agents_are_refused_even_viewing(
    redis: aioredis.Redis, redis_url: str, tmp_path: Path
) -> None:
    gw = await commands_gateway(redis_url, tmp_path, agents_raw="U0AGENT", leads_raw="U0CAROL")
    try:
        slash = Slash(gw)
        assert (await slash.text("policy", user="U0STRANGER")).startswith("🚫 Switchboard is for support agents")
        assert "Routing policy" in await slash.text("policy", user="U0AGENT")
        assert "Routing policy" in await slash.text("policy", user="U0CAROL")
    finally:
        await gw.close()


async def test_agents_listed_through_a_user_group_can_use_the_command(
    redis: aioredis.Redis, redis_url: str, tmp_path: Path
) -> None:
    """SWITCHBOARD_AGENTS=S0SUPPORT: the desk lets its members work, so /switchboard must let them view."""
    gw = await commands_gateway(redis_url, tmp_path, agents_raw="S0SUPPORT", leads_raw="U0CAROL")
    try:
        slash = Slash(gw)
        assert "Routing policy v1" in await slash.text("policy", user="U0BOB")
        who = await slash.text("whoami", user="U0BOB")
        assert "*agent*" in who and "member of agent user group S0SUPPORT" in who, who
        assert (await slash.text("automation pause", user="U0BOB")).startswith("🚫 only team leads")
        assert (await slash.text("policy", user="U0STRANGER")).startswith("🚫 Switchboard is for support agents")
        # The desk's check is the same helper: a group member is an agent there too.
        roster = Roster()
        assert (await roster.find("U0BOB", gw.settings.agents, gw.rt.client)).via == "S0SUPPORT"
        assert not (await roster.find("U0STRANGER", gw.settings.agents, gw.rt.client)).member
    finally:
        await gw.close()


async def test_app_home_shows_the_desk_to_agents_only(redis: aioredis.Redis, redis_url: str, tmp_path: Path) -> None:
    gw = await commands_gateway(redis_url, tmp_path, agents_raw="U0ALICE", leads_raw="S0LEADS")
    try:
        sender = Slash(gw).sender
        for user in ("U0BOB", "U0ALICE", "U0CAROL"):  # a workspace member, an agent, a lead (through a group)
            status, _ = await sender.event({"type": "app_home_opened", "user": user, "channel": f"D{user}",
                                            "tab": "home", "event_ts": "1.1"})
            assert status == 200
        await eventually(lambda: len(gw.slack.home_views) == 3)
        views = {user: json.dumps(view, ensure_ascii=False) for user, view in gw.slack.home_views.items()}
        assert "not one" in views["U0BOB"] and "waiting" not in views["U0BOB"], views["U0BOB"]
        assert "Last 24h" not in views["U0BOB"] and "Policy v" not in views["U0BOB"]
        for user in ("U0ALICE", "U0CAROL"):
            assert "waiting *0*" in views[user] and "Last 24h" in views[user], user
    finally:
        await gw.close()
