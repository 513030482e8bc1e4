"""A typed live change never silently overwrites what a running canary changed itself, and a canary the
live policy has caught up with is not "promoted" (a promote that changes nothing).

Both through `/switchboard` on the real gateway, as two leads would type it."""

from __future__ import annotations

from gateway.policy_canary import overwritten
from gateway.policy_store import CANDIDATE, arm_of
from router.policy import load_policy
from tests.harness import Gateway
from tests.test_commands_support import Slash, cmd_gw

__all__ = ["cmd_gw"]

LEAD2 = "U0LEAD2"
REFUSED = "⚠️ a canary is running (“threshold urgent = 0.9”) and this sets thresholds.urgent, which the canary " \
          "changes too; `canary promote` or `canary drop` it first"


async def test_a_typed_change_to_the_canarys_own_field_is_refused(cmd_gw: Gateway) -> None:
    slash = Slash(cmd_gw)
    assert (await slash.text("threshold urgent 0.9 --canary 50%")).startswith("🐤 Canary started")
    refused = await slash.text("threshold urgent 0.7", user=LEAD2)
    assert refused == REFUSED, refused
    live = await cmd_gw.rt.policies.current(force=True)
    canary = await cmd_gw.rt.policies.canary(force=True)
    assert live.version == 1 and live.thresholds.urgent == 0.8
    assert canary is not None and canary.policy.thresholds.urgent == 0.9  # the canary's change is intact
    history = await slash.text("history")
    assert "threshold urgent = 0.7" not in history
    # A field the canary leaves alone still follows, and the canary still routes its own value.
    followed = await slash.text("threshold sentiment_floor -0.5", user=LEAD2)
    assert followed == "✅ threshold sentiment_floor = -0.5 (policy v2; the running canary took it too).", followed
    candidate_id = next(f"conv_{i:020x}" for i in range(1000) if arm_of(f"conv_{i:020x}", 50) == CANDIDATE)
    candidate = await cmd_gw.rt.policies.for_conversation(candidate_id)
    assert candidate.thresholds.urgent == 0.9 and candidate.thresholds.sentiment_floor == -0.5
    promoted = await slash.text("canary promote")
    assert promoted.startswith("✅ Canary promoted: policy is now v3"), promoted
    live = await cmd_gw.rt.policies.current(force=True)
    assert live.thresholds.urgent == 0.9 and live.thresholds.sentiment_floor == -0.5


async def test_a_change_that_would_reset_the_canarys_field_on_the_candidate_is_refused(cmd_gw: Gateway) -> None:
    """"automation resume" leaves the live billing flag as it is but unpauses billing on the candidate:
    the live before/after alone shows no clash, the re-run would still erase the canary's pause."""
    slash = Slash(cmd_gw)
    assert (await slash.text("automation pause billing --canary 20%")).startswith("🐤")
    assert (await slash.text("automation pause", user=LEAD2)).startswith("✅ automation pause everywhere")
    refused = await slash.text("automation resume", user=LEAD2)
    assert refused.startswith("⚠️ a canary is running (“automation pause billing”) and this sets "
                              "skills.billing.automation_paused"), refused
    canary = await cmd_gw.rt.policies.canary(force=True)
    assert canary is not None and canary.policy.skills["billing"].automation_paused


async def test_item_by_item_changes_compose_with_the_canary(cmd_gw: Gateway) -> None:
    """Both add a keyword to the same list: the candidate keeps the canary's and takes the lead's."""
    slash = Slash(cmd_gw)
    assert (await slash.text('keyword add "ombudsman" escalate --canary 20%')).startswith("🐤")
    added = await slash.text('keyword add "small claims" escalate', user=LEAD2)
    assert added.endswith("(policy v2; the running canary took it too)."), added
    canary = await cmd_gw.rt.policies.canary(force=True)
    live = await cmd_gw.rt.policies.current(force=True)
    assert canary is not None
    assert {"ombudsman", "small claims"} <= set(canary.policy.escalation_keywords)
    assert "small claims" in live.escalation_keywords and "ombudsman" not in live.escalation_keywords


async def test_a_canary_the_live_policy_caught_up_with_is_not_promoted(cmd_gw: Gateway) -> None:
    slash = Slash(cmd_gw)
    assert (await slash.text("threshold urgent 0.9 --canary 10%")).startswith("🐤")
    same = await slash.text("threshold urgent 0.9", user=LEAD2)  # nothing of the canary's is lost
    assert same.startswith("✅ threshold urgent = 0.9 (policy v2; the running canary took it too)"), same
    promote = await slash.text("canary promote")
    assert promote == ("⚠️ nothing to promote: the canary (“threshold urgent = 0.9”) is the same as the live "
                       "policy v2 now; `canary drop` it"), promote
    assert (await cmd_gw.rt.policies.current(force=True)).version == 2
    assert await cmd_gw.rt.policies.canary(force=True) is not None
    assert "promote canary" not in await slash.text("history")
    assert "drop canary" in await slash.text("canary drop")


def test_overwritten_names_the_canarys_field_the_rerun_replaced() -> None:
    base = load_policy()
    own = base.with_skill_changes("billing", keywords=[*base.skills["billing"].keywords, "dunning"])
    skills = {k: v.model_dump(mode="json") for k, v in base.skills.items() if k != "billing"}
    after = base.with_changes(skills=skills)  # `skill remove billing`, re-run on the canary removes it too
    followed = own.with_changes(skills=skills)
    assert overwritten(base, after, own, followed) == "skills.billing"
    assert overwritten(base, after, base, after) is None  # the canary never touched billing
    # The canary's own value untouched by the re-run, or the live policy taking the canary's value: no loss.
    assert overwritten(base, base, own, own) is None
    assert overwritten(base, own, own, own) is None
