"""Team-lead commands as a lead on day two found them (review findings, each failing before its fix)."""

from __future__ import annotations

from tests.harness import Gateway, eventually
from tests.test_commands_support import Slash, cmd_gw
from tests.test_desk import new_card, sender

__all__ = ["cmd_gw"]


async def test_resuming_one_skill_while_paused_everywhere_resumes_it(cmd_gw: Gateway) -> None:
    """It said "nothing to change: the policy already has automation resume billing", and billing stayed paused."""
    slash = Slash(cmd_gw)
    assert (await slash.text("automation pause")).startswith("✅")
    assert (await slash.text("automation resume billing")).startswith("✅")
    policy = await cmd_gw.rt.policies.current(force=True)
    assert policy.automation_enabled("billing")
    assert not any(policy.automation_enabled(s) for s in policy.skills if s != "billing")


async def test_canary_status_names_the_canary_before_any_conversation(cmd_gw: Gateway) -> None:
    slash = Slash(cmd_gw)
    assert (await slash.text("threshold urgent 0.9 --canary 20%")).startswith("🐤")
    status = await slash.text("canary status")
    assert "Canary running" in status and "No conversation has landed in either arm yet" in status


async def test_policy_shows_every_keyword_of_a_skill(cmd_gw: Gateway) -> None:
    """Cut at 12 with "…": billing already had more, so a keyword a lead added never showed."""
    slash = Slash(cmd_gw)
    assert (await slash.text("keyword add zzqfee billing")).startswith("✅")
    assert "zzqfee" in await slash.text("policy")


async def test_a_capacity_of_zero_is_said_as_such(cmd_gw: Gateway) -> None:
    """"You already have 0 open conversations (your capacity). Resolve or release one first." helped nobody."""
    slash = Slash(cmd_gw)
    assert (await slash.text("capacity <@U0BOB|bob> 0")).startswith("✅")
    conv_id, card, channel = await new_card(cmd_gw)
    await sender(cmd_gw).click("U0BOB", channel, card, {"type": "button", "action_id": "sb_claim", "value": conv_id})
    refused = await eventually(lambda: cmd_gw.slack.calls_to("chat.postEphemeral"))
    assert "Your capacity is 0" in refused[-1].params["text"]
    assert await cmd_gw.rt.ops.holder(conv_id) is None
