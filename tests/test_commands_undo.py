"""Undo takes back what it says: no-op changes are refused (so an undo never "succeeds" doing nothing),
and a lead's `undo` never silently reverts another lead's change."""

from __future__ import annotations

import json
import re

from tests.harness import Gateway
from tests.test_commands_support import LEAD, Slash, apply_token, cmd_gw

__all__ = ["cmd_gw"]

CAROL = "U0CAROL"


async def test_a_change_that_changes_nothing_is_refused_and_undo_still_works(cmd_gw: Gateway) -> None:
    slash = Slash(cmd_gw)
    assert (await slash.text("automation pause", user=CAROL)).startswith("✅")
    again = await slash.text("automation pause", user=LEAD)
    assert again == "⚠️ nothing to change: the policy already has automation pause everywhere (v2)", again
    assert "nothing to change" in await slash.text("automation pause --dry-run", user=LEAD)
    assert (await cmd_gw.rt.policies.current(force=True)).version == 2
    assert (await slash.text("undo", user=CAROL)).startswith("↩️ undo: automation pause everywhere")
    policy = await cmd_gw.rt.policies.current(force=True)
    assert not policy.automation_paused and policy.version == 3
    assert (await slash.text("history")).count("\n•") == 2


async def test_undo_refuses_another_leads_change_and_shows_how_to_undo_it(cmd_gw: Gateway) -> None:
    slash = Slash(cmd_gw)
    await slash.text("route billing #support-payments", user=LEAD)
    await slash.text("threshold urgent 0.9", user=CAROL)
    refused = await slash.text("undo", user=LEAD)
    m = re.search(r"`(\d+-\d+)`", refused)
    assert m, refused
    entry = m.group(1)
    assert refused.startswith(f"⚠️ the newest change is <@{CAROL}>'s “threshold urgent = 0.9” (`{entry}`, v2 → v3)")
    assert f"`undo {entry}`" in refused and "\n" not in refused
    assert f"`{entry}`" in await slash.text("history")  # where the id is found
    policy = await cmd_gw.rt.policies.current(force=True)
    assert policy.version == 3 and policy.thresholds.urgent == 0.9
    assert "change id 'first': copy it from `history`" in await slash.text("undo first", user=LEAD)
    assert "only the newest change can be undone" in await slash.text("undo 1-0", user=LEAD)
    preview = await slash(f"undo {entry} --dry-run", user=LEAD)
    assert "Preview:* undo: threshold urgent = 0.9" in json.dumps(preview, ensure_ascii=False)
    assert (await slash.text(f"undo {entry}", user=LEAD)).startswith("↩️ undo: threshold urgent = 0.9")
    policy = await cmd_gw.rt.policies.current(force=True)
    assert policy.thresholds.urgent != 0.9 and policy.skills["billing"].channel == "support-payments"
    # Carol's change is undone: the newest undoable change is LEAD's own again.
    assert (await slash.text("undo", user=LEAD)).startswith("↩️ undo: route billing → #support-payments")
    # And a preview of someone else's undo applies only while it is still the newest change.
    await slash.text("threshold urgent 0.85", user=CAROL)
    carol_preview = await slash("undo --dry-run", user=CAROL)
    await slash.text("threshold urgent 0.75", user=LEAD)
    stale = await slash.click_apply(CAROL, apply_token(carol_preview))
    assert "stale preview" in stale["text"]


async def test_resume_everywhere_clears_skill_pauses_too(cmd_gw: Gateway) -> None:
    slash = Slash(cmd_gw)
    await slash.text("automation pause billing")
    await slash.text("automation pause")
    text = await slash.text("automation resume")
    assert text.startswith("✅ automation resume everywhere, skill pauses included"), text
    policy = await cmd_gw.rt.policies.current(force=True)
    assert not policy.automation_paused and not policy.skills["billing"].automation_paused
    assert policy.automation_enabled("billing")
    assert "nothing to change" in await slash.text("automation resume")
    assert (await slash.text("automation pause billing")).startswith("✅")
    assert (await slash.text("automation resume")).startswith("✅")  # only a skill was paused: still a change
    assert (await cmd_gw.rt.policies.current(force=True)).automation_enabled("billing")
