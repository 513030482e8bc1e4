"""`/switchboard` through signed slash-command requests to the real gateway, answers read back from the
emulator's response_url: every command's success path, malformed input, and the leads announcement."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest

from gateway.policy_admin import HISTORY
from integrations.slack.commands.changes import hours
from router.policy import Policy, load_policy
from tests.harness import Gateway, eventually
from tests.test_commands_support import LEAD, Slash, apply_token, cmd_gw, scores, store_conversation

__all__ = ["cmd_gw"]


async def leads_messages(gw: Gateway) -> list[str]:
    return [str(m.get("text", "")) for m in gw.slack.messages("support-leads")]


async def test_views_answer_ephemerally(cmd_gw: Gateway) -> None:
    slash = Slash(cmd_gw)
    body = await slash("help")
    assert body["response_type"] == "ephemeral"
    assert "route <skill> #channel" in body["text"]
    policy = await slash.text("policy")
    assert "Routing policy v1" in policy and "`billing` → #support-billing" in policy
    who = await slash.text("whoami")
    assert "lead" in who and "local mode" in who and "everyone is a lead" in who
    assert "No policy changes yet" in await slash.text("history")
    models = await slash.text("models")
    for name in ("skill", "sentiment", "urgency", "automation"):
        assert f"*{name}*" in models
    assert "labels" in models and "snapshot v0" in models
    stats = await slash.text("stats 7d")
    assert "Stats, last 7d" in stats and "Conversations: *0*" in stats
    assert "No canary is running" in await slash.text("canary status")
    assert "steer routing without a deploy" in await slash.text("")  # bare command = help


@pytest.mark.parametrize(
    ("command", "check"),
    [
        ("route billing #support-payments", lambda p: p.skills["billing"].channel == "support-payments"),
        ("route billing <#C0PAY123|support-payments>", lambda p: p.skills["billing"].channel == "support-payments"),
        ("skill add warranty guarantee repair", lambda p: p.skills["warranty"].keywords == ("guarantee", "repair")
         and p.skills["warranty"].channel == "support-warranty"),
        ("skill add billing dunning", lambda p: "dunning" in p.skills["billing"].keywords),
        ("skill remove billing invoice", lambda p: "invoice" not in p.skills["billing"].keywords),
        ("skill remove shipping", lambda p: "shipping" not in p.skills),
        ('keyword add "money back now" escalate', lambda p: "money back now" in p.escalation_keywords),
        ("keyword remove lawyer escalate", lambda p: "lawyer" not in p.escalation_keywords),
        ('keyword add “direct debit” billing', lambda p: "direct debit" in p.skills["billing"].keywords),
        ("threshold urgent 0.9", lambda p: p.thresholds.urgent == 0.9),
        ("sla billing first=5m next=30m",
         lambda p: (p.skills["billing"].sla.first_response, p.skills["billing"].sla.next_response) == (300, 1800)),
        ("hours billing Mon-Fri 09:00-18:00 Europe/Berlin",
         lambda p: p.skills["billing"].business_hours is not None
         and p.skills["billing"].business_hours.days == (0, 1, 2, 3, 4)
         and p.skills["billing"].business_hours.timezone == "Europe/Berlin"),
        ("hours team Sat,Sun 10:00-14:00 UTC",
         lambda p: p.business_hours is not None and p.business_hours.days == (5, 6)),
        ("automation pause", lambda p: p.automation_paused),
        ("automation pause billing", lambda p: p.skills["billing"].automation_paused and not p.automation_paused),
        ("capacity <@U0JANE|jane> 3", lambda p: p.capacity == {"U0JANE": 3}),
    ],
)
async def test_each_change_applies_and_is_announced(
    cmd_gw: Gateway, command: str, check: Callable[[Policy], bool]
) -> None:
    slash = Slash(cmd_gw)
    text = await slash.text(command)
    assert text.startswith("✅"), text
    policy = await cmd_gw.rt.policies.current(force=True)
    assert policy.version == 2
    assert check(policy)
    announced = await eventually(lambda: leads_messages(cmd_gw))
    assert any("changed the routing policy" in t and f"<@{LEAD}>" in t for t in announced)
    rows: Any = await cmd_gw.rt.redis.xrevrange(HISTORY)
    assert len(rows) == 1 and rows[0][1][b"user"] == LEAD.encode()


async def test_route_to_new_channel_creates_it_locally(cmd_gw: Gateway) -> None:
    await Slash(cmd_gw).text("route billing #support-payments")
    assert cmd_gw.slack.channel_id("support-payments")


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("frobnicate", "unknown command 'frobnicate'"),
        ("threshold urgent 2", "thresholds.urgent: Input should be less than or equal to 1"),
        ("threshold bogus 1", "unknown threshold 'bogus'; thresholds are automation_success_floor (0..1)"),
        ("threshold urgent high", "urgent 'high': not a number"),
        ("sla billing first=soon", "first response 'soon': use a number with s, m, h or d"),
        ("sla billing first=10s", "first response 10s: must be from 30s to 7d"),
        ("sla billing later=5m", "use first=&lt;duration&gt; and/or next=&lt;duration&gt;"),
        ("sla nosuch first=5m", "unknown skill 'nosuch'; skills are account, billing"),
        ("route nosuch #x", "unknown skill 'nosuch'"),
        ("route billing #bad!", "channel '#bad!': mention a channel like #support-billing"),
        ("route billing #support two", "usage: route &lt;skill&gt; #channel (one channel"),
        ("route billing", "usage: route &lt;skill&gt; #channel"),
        ("hours billing Mon-Fri 9-18 Europe/Berlin", "hours '9-18': use a 24-hour span like 09:00-18:00"),
        ("hours billing Mon-Fri 09:00-18:00 Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
        ("hours billing Someday 09:00-18:00 UTC", "days 'Someday': use day names like Mon-Fri"),
        ("capacity jane 3", "agent 'jane': mention the agent"),
        ("capacity <@U0JANE> lots", "capacity 'lots': a whole number from 0 to 1000"),
        ("capacity <@U0JANE> 5000", "capacity 5000: must be from 0 to 1000"),
        ('keyword add "unbalanced escalate', "unbalanced quote"),
        ("keyword add lawyer escalate", "'lawyer' is already a keyword for escalate"),
        ("skill remove general", "general is the default skill and cannot be removed"),
        ("skill add bad!name", "skill name 'bad!name': lowercase letters, digits, - and _"),
        ("skill add billing refund €", "a keyword needs a letter or digit (in any script): '€'"),
        ('keyword add "👍" escalate', "a keyword needs a letter or digit (in any script): '👍'"),
        ("automation stop", "usage: automation pause|resume [skill]"),
        ("stats 3w", "stats window '3w': use one of 24h"),
        ("route billing #x --canary 150%", "canary share '150%': give a percentage between 1% and 99%"),
        ("route billing #x --force", "unknown option --force"),
        ("undo", "nothing to undo"),
        ("apply", "nothing to apply"),
        ("canary promote", "no canary is running"),
        ("canary fly", "usage: canary status|promote|drop"),
        ("undo --canary 10%", "--canary goes with a policy change"),
    ],
)
async def test_malformed_input_gets_one_clear_line(cmd_gw: Gateway, command: str, expected: str) -> None:
    """The line is mrkdwn: `<`, `>` and `&` come escaped (it may echo what the lead typed)."""
    text = await Slash(cmd_gw).text(command)
    assert "\n" not in text
    assert text.startswith("⚠️"), text
    assert expected in text
    assert (await cmd_gw.rt.policies.current(force=True)).version == 1


async def test_two_leads_changing_at_once_lose_nothing(cmd_gw: Gateway) -> None:
    slash = Slash(cmd_gw)
    commands = [f'keyword add "phrase {i}" escalate' for i in range(6)] + ["threshold urgent 0.85",
                                                                           "capacity <@U0JANE> 2"]
    answers = await asyncio.gather(*(slash.text(c, user=LEAD if i % 2 else "U0OTHERLEAD")
                                     for i, c in enumerate(commands)))
    assert all(a.startswith("✅") for a in answers), answers
    policy = await cmd_gw.rt.policies.current(force=True)
    assert policy.version == 1 + len(commands)
    assert {f"phrase {i}" for i in range(6)} <= set(policy.escalation_keywords)
    assert policy.thresholds.urgent == 0.85 and policy.capacity == {"U0JANE": 2}
    history = await slash.text("history")
    assert history.count("\n•") == len(commands)


async def test_dry_run_then_apply_button_and_typed_apply(cmd_gw: Gateway) -> None:
    slash = Slash(cmd_gw)
    live = await cmd_gw.rt.policies.current()
    for i in range(6):
        await store_conversation(cmd_gw.rt.store, f"invoice {i} is wrong, I want a human", scores("billing"),
                                 policy=live)
    for i in range(4):
        await store_conversation(cmd_gw.rt.store, f"where is parcel {i}", scores("shipping"), policy=live)
    body = await slash("route billing #support-payments --dry-run")
    assert "Replayed the last *10* conversations: *6* would route differently (60%)" in json.dumps(body,
                                                                                                    ensure_ascii=False)
    assert "#support-billing → #support-payments: 6" in json.dumps(body, ensure_ascii=False)
    examples = [b for b in body["blocks"] if b["type"] == "context" and "`conv_" in b["elements"][0]["text"]]
    assert len(examples) == 3 and "customer asked for a human once" in examples[0]["elements"][0]["text"]
    assert (await cmd_gw.rt.policies.current(force=True)).version == 1  # a preview changes nothing
    # Another lead changes something first: the preview is stale and says so.
    await slash.text("threshold urgent 0.9", user="U0OTHERLEAD")
    stale = await slash.click_apply(LEAD, apply_token(body))
    assert "stale preview" in stale["text"]
    # Preview again and apply with the button.
    fresh = await slash("route billing #support-payments --dry-run")
    applied = await slash.click_apply(LEAD, apply_token(fresh))
    assert applied["text"].startswith("✅ Applied: route billing → #support-payments"), applied
    policy = await cmd_gw.rt.policies.current(force=True)
    assert policy.skills["billing"].channel == "support-payments" and policy.version == 3
    # Typed apply works too, on the user's latest preview.
    preview = await slash("threshold automation_success_floor 0.95 --dry-run")
    assert "bot → #support-shipping: 4" in json.dumps(preview, ensure_ascii=False)
    typed = await slash.text("apply")
    assert typed.startswith("✅ Applied"), typed
    assert (await cmd_gw.rt.policies.current(force=True)).thresholds.automation_success_floor == 0.95
    assert "expired or was already applied" in (await slash.click_apply(LEAD, apply_token(preview)))["text"]


async def test_undo_reverts_and_is_audited(cmd_gw: Gateway) -> None:
    slash = Slash(cmd_gw)
    original = await cmd_gw.rt.policies.current()
    await slash.text("threshold urgent 0.9")
    await slash.text("route billing #support-payments")
    undone = await slash.text("undo")
    assert "undo: route billing → #support-payments" in undone and "v4" in undone
    policy = await cmd_gw.rt.policies.current(force=True)
    assert policy.skills["billing"].channel == "support-billing" and policy.thresholds.urgent == 0.9
    await slash.text("undo")
    policy = await cmd_gw.rt.policies.current(force=True)
    assert policy.version == 5
    assert policy.model_dump(exclude={"version"}) == original.model_dump(exclude={"version"})
    assert "nothing to undo" in await slash.text("undo")
    history = await slash.text("history")
    assert history.count("undo:") == 2


async def test_app_home_publishes_queue_stats_and_models(cmd_gw: Gateway) -> None:
    sender = Slash(cmd_gw).sender
    status, _ = await sender.event({"type": "app_home_opened", "user": "U0BOB", "channel": "D0BOB", "tab": "home",
                                    "event_ts": "1.1"})
    assert status == 200
    call = (await eventually(lambda: cmd_gw.slack.calls_to("views.publish")))[0]
    view = json.dumps(call.params, ensure_ascii=False)
    assert "waiting *0*" in view and "breaching" in view and "Last 24h" in view and "Model health" in view


async def test_models_shows_the_newest_published_snapshot(cmd_gw: Gateway) -> None:
    from learners.snapshot import RedisLock, new_learners, publish

    lock = RedisLock(cmd_gw.rt.redis)
    assert await lock.acquire()
    version = await publish(cmd_gw.rt.redis, new_learners(), lock)
    models = await Slash(cmd_gw).text("models")
    assert f"snapshot v{version}" in models and "old)" in models


async def test_emulator_desk_slash_box_runs_a_preview_and_its_apply_button(cmd_gw: Gateway) -> None:
    """The desk page's slash box and buttons go through the emulator's Desk: same signed requests."""
    from gateway.app import EMULATOR
    from integrations.slack.emulator.deskweb import DESK

    desk = cmd_gw.app[EMULATOR][DESK]
    assert await desk.slash("/switchboard", "threshold urgent 0.9 --dry-run", user="U0ALICE",
                            channel="support-leads") == 200
    preview = (await eventually(lambda: [e for e in cmd_gw.slack.ephemerals if "Preview" in json.dumps(e)]))[0]
    assert await desk.click("support-leads", preview["message_ts"], "sb_policy_apply", user="U0ALICE") == 200
    await eventually(lambda: [e for e in cmd_gw.slack.ephemerals if "Applied" in e["text"]])
    assert (await cmd_gw.rt.policies.current(force=True)).thresholds.urgent == 0.9


async def test_undo_and_promote_can_be_previewed_first(cmd_gw: Gateway) -> None:
    slash = Slash(cmd_gw)
    live = await cmd_gw.rt.policies.current()
    for i in range(3):
        await store_conversation(cmd_gw.rt.store, f"invoice {i}, I want a human", scores("billing"), policy=live)
    await slash.text("route billing #support-payments")
    preview = await slash("undo --dry-run")
    dumped = json.dumps(preview, ensure_ascii=False)
    assert "Preview:* undo: route billing → #support-payments" in dumped
    assert "*3* would route differently" in dumped and "#support-payments → #support-billing: 3" in dumped
    assert (await cmd_gw.rt.policies.current(force=True)).skills["billing"].channel == "support-payments"
    assert (await slash.click_apply(LEAD, apply_token(preview)))["text"].startswith("✅ Applied: undo:")
    assert (await cmd_gw.rt.policies.current(force=True)).skills["billing"].channel == "support-billing"
    assert "nothing to undo" in await slash.text("undo")  # the previewed undo counts as the undo
    await slash.text("automation pause billing --canary 20%")
    promote = await slash("canary promote --dry-run")
    assert "promote canary: automation pause billing" in json.dumps(promote, ensure_ascii=False)
    assert await cmd_gw.rt.policies.canary(force=True) is not None
    assert "Applied: promote canary" in (await slash.click_apply(LEAD, apply_token(promote)))["text"]
    assert (await cmd_gw.rt.policies.current(force=True)).skills["billing"].automation_paused
    assert "has nothing to preview" in await slash.text("apply --dry-run")
    assert "dropping a canary only stops it" in await slash.text("canary drop --dry-run")


class _NoLookups:
    async def channel_name(self, channel_id: str) -> str:
        raise AssertionError("hours needs no channel look-up")


async def test_hours_for_a_skill_keeps_the_night_team_it_had_from_the_team() -> None:
    """`hours billing …` to close billing earlier, on a desk whose team hours have an after-hours channel. Before:
    billing had no hours of its own, so its new hours had no after-hours channel: its cards went to
    #support-billing at night, which nobody watches, instead of the night team's channel."""
    base = load_policy()
    assert base.business_hours is not None and base.skills["billing"].business_hours is None
    night = base.model_copy(update={"business_hours": base.business_hours.model_copy(
        update={"after_hours_channel": "support-night"})})
    change = await hours(["billing", "Mon-Fri", "09:00-17:00", "Europe/Berlin"], _NoLookups())
    billing = change.build(night).hours_for("billing")
    assert billing is not None and (billing.close.hour, billing.after_hours_channel) == (17, "support-night")
    earlier = await hours(["billing", "Mon-Fri", "09:00-16:00", "Europe/Berlin"], _NoLookups())  # its own hours now
    again = earlier.build(change.build(night)).hours_for("billing")
    assert again is not None and (again.close.hour, again.after_hours_channel) == (16, "support-night")
