"""A change that would post to a channel Switchboard cannot post to is refused before it commits.

With a real Slack token the gateway never creates channels (`SlackDesk.create_missing` is off), so these
tests turn the emulator's auto-create off the same way; a typo in `route` used to answer ✅, be announced,
and send the next card to channel_not_found and the customer's message to the dead letters.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from integrations.slack.emulator import webapi
from integrations.slack.emulator.state import EmulatorState
from tests.harness import Gateway, cards, eventually
from tests.test_commands_support import Slash, apply_token, cmd_gw

__all__ = ["cmd_gw"]


@pytest.fixture
def slack_mode(cmd_gw: Gateway) -> Iterator[Gateway]:
    """As with a real SLACK_BOT_TOKEN: the workspace's channels are what they are."""
    assert cmd_gw.rt.desk.create_missing
    cmd_gw.rt.desk.create_missing = False
    yield cmd_gw
    cmd_gw.rt.desk.create_missing = True


def leads(gw: Gateway) -> list[str]:
    return [str(m.get("text", "")) for m in gw.slack.messages("support-leads")]


async def test_route_to_a_missing_channel_is_refused_until_it_exists(slack_mode: Gateway) -> None:
    gw, slash = slack_mode, Slash(slack_mode)
    text = await slash.text("route billing #suport-billing")
    assert text == "⚠️ no channel #suport-billing: create it and invite @Switchboard first", text
    assert (await gw.rt.policies.current(force=True)).version == 1
    assert leads(gw) == [] and "suport-billing" not in {c.name for c in gw.slack.channels.values()}
    # The channel-mention form is checked the same way (its name, not just whether Slack knows the id).
    assert "no channel #support-payments" in await slash.text("route billing <#C0PAY123|support-payments>")
    gw.slack.create_channel("suport-billing")
    assert (await slash.text("route billing #suport-billing")).startswith("✅ route billing → #suport-billing")
    status, _ = await gw.post_message({"customer_id": "c-1", "message_id": "m-1",
                                       "text": "I was charged twice on my invoice, I want a human"})
    assert status == 202
    await eventually(lambda: cards(gw.slack, "suport-billing"), timeout=20)


async def test_skill_add_needs_its_channel_but_new_keywords_do_not(slack_mode: Gateway) -> None:
    slash = Slash(slack_mode)
    text = await slash.text("skill add warranty guarantee repair")
    assert text == "⚠️ no channel #support-warranty: create it and invite @Switchboard first", text
    assert (await slash.text("skill add billing dunning")).startswith("✅")  # no new channel: no look-up needed
    slack_mode.slack.create_channel("support-warranty")
    assert (await slash.text("skill add warranty guarantee repair")).startswith("✅")


async def test_a_channel_switchboard_is_not_in_is_refused(
    slack_mode: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The emulator's bot is in every channel; Slack's conversations.list says `is_member: false` otherwise."""
    real = webapi.METHODS["conversations.list"]

    def not_in_payments(state: EmulatorState, params: dict[str, Any]) -> dict[str, Any]:
        body = real(state, params)
        for ch in body["channels"]:
            ch["is_member"] = ch["name"] != "support-payments"
        return body

    monkeypatch.setitem(webapi.METHODS, "conversations.list", not_in_payments)
    slack_mode.slack.create_channel("support-payments")
    slash = Slash(slack_mode)
    text = await slash.text("route billing #support-payments")
    assert text.startswith("⚠️ invite @Switchboard to #support-payments first"), text
    assert (await slack_mode.rt.policies.current(force=True)).version == 1


async def test_previews_canaries_and_undo_are_checked_when_they_commit(slack_mode: Gateway) -> None:
    gw, slash = slack_mode, Slash(slack_mode)
    preview = await slash("route billing #support-payments --dry-run")  # viewing needs no channel
    assert "Preview" in json.dumps(preview, ensure_ascii=False)
    applied = await slash.click_apply("U0LEAD", apply_token(preview))
    assert applied["text"] == "⚠️ no channel #support-payments: create it and invite @Switchboard first", applied
    assert "no channel #support-payments" in await slash.text("route billing #support-payments --canary 10%")
    assert await gw.rt.policies.canary(force=True) is None
    # An undo that would bring back a channel which is gone since is refused the same way.
    gw.slack.create_channel("support-payments")
    assert (await slash.text("route billing #support-payments")).startswith("✅")
    del gw.slack.channels[gw.slack.channel_id("support-billing")]  # archived or deleted in Slack
    assert await slash.text("undo") == "⚠️ no channel #support-billing: create it and invite @Switchboard first"
    assert (await gw.rt.policies.current(force=True)).skills["billing"].channel == "support-payments"
