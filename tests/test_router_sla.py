"""The pure SLA ladder, capacity rules and business-hours arithmetic."""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Any

import pytest

from router.capacity import AgentLoad, can_claim, suggest_agent
from router.hours import add_open_time, is_open, next_open
from router.policy import BusinessHours, PolicyError, load_policy
from router.sla import ActionKind, SlaState, SlaStep, actions_due, deadlines, duration, eta_minutes, handoff_notice

DEFAULT = load_policy()  # billing: first response 600 s, next 1800 s; warn at 75 %, leads 900 s after breach
# The ladder's arithmetic around the clock; the default's business-hours clock has tests of its own below.
POLICY = DEFAULT.with_changes(escalation={**DEFAULT.escalation.model_dump(mode="json"), "clock": "calendar"})
T0 = 1_767_225_600.0


def unclaimed(**kw: Any) -> SlaState:
    return SlaState(conversation_id="conv_1", skill="billing", waiting_since=T0, channel="support-billing", **kw)


def test_unclaimed_ladder_reping_escalate_leads() -> None:
    s = unclaimed()
    assert deadlines(s, POLICY) == [(SlaStep.WARN, T0 + 450), (SlaStep.ESCALATE, T0 + 600),
                                    (SlaStep.LEADS, T0 + 1500)]
    assert actions_due(s, POLICY, T0 + 449) == []
    (warn,) = actions_due(s, POLICY, T0 + 450)
    assert (warn.kind, warn.channel, warn.reason) == (
        ActionKind.REPING, "support-billing", "first-response due in 2m 30s (SLA 10m), still unclaimed")
    (esc,) = actions_due(unclaimed(done=frozenset({"warn"})), POLICY, T0 + 605)
    assert (esc.kind, esc.channel) == (ActionKind.MOVE, "support-leads")
    assert esc.reason == "first-response SLA 10m breached: unclaimed for 10m 05s → support-leads"
    (leads,) = actions_due(unclaimed(done=frozenset({"escalate"})), POLICY, T0 + 1500)
    assert leads.step is SlaStep.LEADS and leads.reason.startswith("still unclaimed 25m")


def test_late_worker_fires_only_the_most_severe_step() -> None:
    (a,) = actions_due(unclaimed(), POLICY, T0 + 2000)
    assert a.step is SlaStep.LEADS
    assert actions_due(unclaimed(done=frozenset({"leads"})), POLICY, T0 + 9999) == []


def test_answered_or_resolved_makes_deadlines_stale() -> None:
    assert actions_due(unclaimed(answered=True), POLICY, T0 + 9999) == []
    assert actions_due(unclaimed(resolved=True), POLICY, T0 + 9999) == []
    assert deadlines(unclaimed(resolved=True), POLICY) == []


def test_claimed_agent_silent_is_nudged_then_reassigned() -> None:
    s = unclaimed(claimed_by="U1", responded=True)
    assert deadlines(s, POLICY) == [(SlaStep.NUDGE, T0 + 1350), (SlaStep.REASSIGN, T0 + 1800)]
    (nudge,) = actions_due(s, POLICY, T0 + 1350)
    assert nudge.agent == "U1"
    assert nudge.reason == "U1 has not replied for 22m 30s; next-response due in 7m 30s (SLA 30m)"
    agents = [AgentLoad("U1", frozenset({"billing"}), 0), AgentLoad("U2", frozenset({"billing"}), 1)]
    (re,) = actions_due(s, POLICY, T0 + 1800, agents)
    assert (re.kind, re.agent, re.suggested_agent) == (ActionKind.REASSIGN, "U1", "U2")
    assert re.reason == "U1 has not replied for 30m (next-response SLA 30m breached) → reassign to U2"
    (back,) = actions_due(s, POLICY, T0 + 1800)
    assert back.reason.endswith("→ back to the queue")
    no_reassign = POLICY.with_changes(escalation={**POLICY.escalation.model_dump(mode="json"),
                                                  "reassign_claimed": False})
    (moved,) = actions_due(s, no_reassign, T0 + 1800)
    assert (moved.kind, moved.channel) == (ActionKind.MOVE, "support-leads")


def test_claiming_an_overdue_conversation_gives_the_agent_a_full_window() -> None:
    """Claimed 40 minutes into a 10-minute first-response SLA: not reassigned at the next tick."""
    claimed_at = T0 + 2400
    s = unclaimed(claimed_by="U1", claimed_at=claimed_at, done=frozenset())
    assert deadlines(s, POLICY) == [(SlaStep.NUDGE, claimed_at + 450), (SlaStep.REASSIGN, claimed_at + 600)]
    assert actions_due(s, POLICY, claimed_at + 1) == []
    (nudge,) = actions_due(s, POLICY, claimed_at + 450)
    assert nudge.reason == "U1 has not replied for 7m 30s; first-response due in 2m 30s (SLA 10m)"
    (re,) = actions_due(s, POLICY, claimed_at + 600)
    assert re.kind is ActionKind.REASSIGN and re.reason.startswith("U1 has not replied for 10m ")
    # The unclaimed ladder measured the queue (time to claim); the claimed one measures the agent.
    early = unclaimed(claimed_by="U1", claimed_at=T0 + 60)
    assert deadlines(early, POLICY) == [(SlaStep.NUDGE, T0 + 510), (SlaStep.REASSIGN, T0 + 660)]
    # A reply by the agent starts a new wait at the customer's next message, after the claim.
    later = unclaimed(claimed_by="U1", claimed_at=T0 - 5000, responded=True)
    assert deadlines(later, POLICY) == [(SlaStep.NUDGE, T0 + 1350), (SlaStep.REASSIGN, T0 + 1800)]


def test_duration_format() -> None:
    assert [duration(x) for x in (5, 60, 605, 3600, 3900)] == ["5s", "1m", "10m 05s", "1h", "1h 05m"]


def test_capacity_refusal_message_and_suggestion() -> None:
    policy = POLICY.with_changes(capacity={"U1": 2}, default_capacity=3)
    ok, msg = can_claim("U1", 2, policy)
    assert not ok and msg == ("<@U1> already has 2 open conversations (limit 2); "
                              "resolve or hand one over before claiming another")
    assert can_claim("U2", 2, policy) == (True, "<@U2> can claim (3/3)")
    agents = [
        AgentLoad("U1", frozenset({"billing"}), 1),  # 50 % of 2
        AgentLoad("U2", frozenset({"billing"}), 1),  # 33 % of 3 → least loaded
        AgentLoad("U3", frozenset({"billing"}), 0, available=False),
        AgentLoad("U4", frozenset({"shipping"}), 0),
        AgentLoad("U5", frozenset({"billing"}), 3),  # full
    ]
    assert suggest_agent("billing", agents, policy) == "U2"
    assert suggest_agent("billing", agents, policy, prefer="U1") == "U1"
    assert suggest_agent("billing", agents, policy, prefer="U5") == "U2"
    assert suggest_agent("account", agents, policy) is None


def test_business_hours_overnight_and_next_open() -> None:
    night = BusinessHours(timezone="UTC", days=(4,), open=time(22), close=time(6))  # Friday night shift
    fri_23 = datetime(2026, 11, 27, 23, 0, tzinfo=UTC)
    assert is_open(night, fri_23) and is_open(night, datetime(2026, 11, 28, 5, 0, tzinfo=UTC))
    assert not is_open(night, datetime(2026, 11, 28, 7, 0, tzinfo=UTC))
    day = POLICY.business_hours
    sat = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    assert next_open(day, sat) == datetime(2026, 11, 30, 7, 0, tzinfo=UTC)  # Monday 08:00 Berlin
    assert "we open (Mon 08:00 Europe/Berlin)" in handoff_notice(POLICY, "billing", sat)
    assert handoff_notice(POLICY, "billing", datetime(2026, 11, 25, 10, tzinfo=UTC)).endswith("within about 10m.")
    # Two minutes before closing (Wed 19:58 Berlin), a 10-minute target on business time is met on Thursday
    # morning, not "in 10m"; on the calendar clock (POLICY here) it is 10 minutes.
    closing = handoff_notice(DEFAULT, "billing", datetime(2026, 11, 25, 18, 58, tzinfo=UTC))
    assert closing.endswith("by Thu 08:08 Europe/Berlin at the latest."), closing
    assert handoff_notice(POLICY, "billing", datetime(2026, 11, 25, 18, 58, tzinfo=UTC)).endswith("within about 10m.")


def test_a_desk_closed_now_with_a_night_team_promises_the_night_teams_target() -> None:
    """Before: "We're closed right now …; a person will reply after we open (Mon 08:00 …)" on Saturday, while
    the card went to the night channel and the web chat's wait said 10 minutes."""
    assert POLICY.business_hours is not None
    staffed = POLICY.model_copy(update={"business_hours": POLICY.business_hours.model_copy(
        update={"after_hours_channel": "support-night"})})
    sat = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    notice = handoff_notice(staffed, "billing", sat)
    assert "closed" not in notice and notice.endswith("within about 10m."), notice
    assert eta_minutes(staffed, "billing", sat) == 10
    assert "we open (Mon 08:00 Europe/Berlin)" in handoff_notice(POLICY, "billing", sat)  # no night team: as before


def test_invalid_policy_values_are_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match="unknown time zone"):
        BusinessHours(timezone="Mars/Olympus")
    bad = tmp_path / "p.yaml"
    bad.write_text("skills: {general: {channel: support-general}}\nbusiness_hours: {days: [9]}\n")
    with pytest.raises(PolicyError, match=r"business_hours\.days"):
        load_policy(bad)
    with pytest.raises(PolicyError, match="unknown skill"):
        POLICY.with_skill_changes("nope", automation_paused=True)


def test_back_in_the_queue_the_queue_ladder_starts_over() -> None:
    """Reassigned by the ladder 40 minutes into a 10-minute SLA: the queue gets its window again, from the return."""
    back = T0 + 2400
    s = unclaimed(requeued_at=back, done=frozenset({"warn", "nudge", "reassign"}))
    assert deadlines(s, POLICY) == [(SlaStep.ESCALATE, back + 600), (SlaStep.LEADS, back + 1500)]
    assert actions_due(s, POLICY, back + 1) == []
    (esc,) = actions_due(s, POLICY, back + 600)
    assert esc.step is SlaStep.ESCALATE and esc.reason.endswith("unclaimed for 10m → support-leads")
    # A return to the queue before the customer's current wait began changes nothing.
    assert deadlines(unclaimed(requeued_at=T0 - 60), POLICY) == deadlines(unclaimed(), POLICY)


BERLIN_WEEKDAYS = {"timezone": "Europe/Berlin", "days": [0, 1, 2, 3, 4], "open": "08:00", "close": "20:00"}


def _at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_the_default_sla_clock_stops_while_the_desk_is_closed() -> None:
    """A message on Saturday night: the leads were pinged at 2 a.m. (25 minutes later); now each step falls
    due in staffed time, counted from Monday's opening."""
    saturday_night = _at("2026-12-05T01:53:00+01:00")
    s = SlaState(conversation_id="c", skill="billing", waiting_since=saturday_night)
    assert DEFAULT.escalation.clock == "business"
    monday = _at("2026-12-07T08:00:00+01:00")
    assert deadlines(s, DEFAULT) == [(SlaStep.WARN, monday + 450), (SlaStep.ESCALATE, monday + 600),
                                     (SlaStep.LEADS, monday + 1500)]
    assert actions_due(s, DEFAULT, saturday_night + 1500) == []
    (warn,) = actions_due(s, DEFAULT, monday + 450)
    assert warn.reason == "first-response due in 2m 30s (SLA 10m), still unclaimed"
    # Five minutes before closing on Friday: the rest of the window runs on Monday morning.
    friday = _at("2026-12-04T19:55:00+01:00")
    late = SlaState(conversation_id="c", skill="billing", waiting_since=friday)
    assert dict(deadlines(late, DEFAULT))[SlaStep.ESCALATE] == monday + 300
    # Open all along: the same as around the clock.
    tuesday = _at("2026-12-08T10:00:00+01:00")
    open_now = SlaState(conversation_id="c", skill="billing", waiting_since=tuesday)
    assert deadlines(open_now, DEFAULT) == deadlines(open_now, POLICY)


def test_a_skill_with_night_cover_or_a_calendar_policy_counts_around_the_clock() -> None:
    saturday_night = _at("2026-12-05T01:53:00+01:00")
    s = SlaState(conversation_id="c", skill="billing", waiting_since=saturday_night)
    covered = DEFAULT.with_changes(business_hours={**BERLIN_WEEKDAYS, "after_hours_channel": "support-night"})
    assert deadlines(s, covered)[0] == (SlaStep.WARN, saturday_night + 450)
    assert deadlines(s, POLICY)[0] == (SlaStep.WARN, saturday_night + 450)


def test_open_time_across_overnight_spans_and_daylight_saving() -> None:
    night_shift = BusinessHours(timezone="Europe/Berlin", days=(0, 1, 2, 3, 4), open=time(22), close=time(6))
    # Tuesday 05:00 is still Monday's shift; one hour is left of it, the second hour starts at 22:00.
    tuesday_5am = _at("2026-03-03T05:00:00+01:00")
    assert add_open_time(night_shift, tuesday_5am, 2 * 3600) == _at("2026-03-03T23:00:00+01:00")
    # Friday 05:00 is Thursday's shift: one hour left of it, the second from Friday 22:00.
    friday_5am = _at("2026-03-27T05:00:00+01:00")
    assert add_open_time(night_shift, friday_5am, 2 * 3600) == _at("2026-03-27T23:00:00+01:00")
    # The clocks go forward at 02:00 on Sunday 29 March 2026: Saturday night's 22:00-06:00 shift is 7 hours
    # long, so 7½ hours of it end half an hour into Sunday night's shift (summer time).
    every_night = BusinessHours(timezone="Europe/Berlin", days=tuple(range(7)), open=time(22), close=time(6))
    saturday_10pm = _at("2026-03-28T22:00:00+01:00")
    assert add_open_time(every_night, saturday_10pm, 7.5 * 3600) == _at("2026-03-29T22:30:00+02:00")
    weekdays = BusinessHours(timezone="Europe/Berlin", days=(0, 1, 2, 3, 4), open=time(8), close=time(20))
    friday_7pm = _at("2026-03-27T19:00:00+01:00")
    assert add_open_time(weekdays, friday_7pm, 2 * 3600) == _at("2026-03-30T09:00:00+02:00")
    assert add_open_time(None, friday_7pm, 60) == friday_7pm + 60
