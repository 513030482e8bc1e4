"""SLA ladder, pure: given a conversation's waiting state, its policy and `now`, what should happen.

The scheduler (gateway/scheduler.py) only stores deadlines and hands each to exactly one worker; the
worker loads the conversation, builds an `SlaState` and asks `actions_due()` here. Deciding from state
rather than from the deadline itself makes stale deadlines harmless: if the customer was answered or
the card claimed in the meantime, nothing fires.

Ladder while unclaimed:  warn (re-ping the channel) → escalate (skill's escalation channel) → leads.
Ladder while claimed:    warn (nudge the agent)     → reassign (back to the queue / a suggested agent),
                         counted from the claim when the customer was already waiting.
Back in the queue by the ladder's own reassign, the unclaimed ladder counts from the return.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from router.capacity import AgentLoad, suggest_agent
from router.hours import add_open_time, describe, is_open, next_open
from router.policy import BusinessHours, Policy


class SlaStep(StrEnum):
    WARN = "warn"
    ESCALATE = "escalate"
    LEADS = "leads"
    NUDGE = "nudge"
    REASSIGN = "reassign"


class ActionKind(StrEnum):
    REPING = "reping"
    MOVE = "move"
    REASSIGN = "reassign"


_UNCLAIMED = (SlaStep.WARN, SlaStep.ESCALATE, SlaStep.LEADS)
_CLAIMED = (SlaStep.NUDGE, SlaStep.REASSIGN)


@dataclass(frozen=True, slots=True)
class SlaState:
    """One conversation's wait. Times are unix seconds (the scheduler's unit).

    `waiting_since` is when the customer's oldest unanswered message arrived; `responded` says whether a
    human has ever replied (first vs next response target); `done` holds the steps already fired for
    this wait, so a redelivered deadline does not fire twice.
    """

    conversation_id: str
    skill: str
    waiting_since: float
    claimed_by: str | None = None
    responded: bool = False
    answered: bool = False
    resolved: bool = False
    channel: str | None = None
    done: frozenset[str] = frozenset()
    claimed_at: float | None = None
    """When `claimed_by` took it. The unclaimed ladder measures the queue (time to claim); the claimed
    one measures the agent, so nudge and reassign count from the claim when the customer was already
    waiting. Counting from the customer's first message took an overdue conversation back from the
    agent who had just claimed it, at the next tick."""
    requeued_at: float | None = None
    """When the ladder's reassign put it back in the queue: the queue's ladder starts over from here, as the
    agent's does from a claim. Not set by a release, or claiming and releasing could hold the leads off."""


@dataclass(frozen=True, slots=True)
class SlaAction:
    kind: ActionKind
    step: SlaStep
    conversation_id: str
    channel: str
    reason: str
    agent: str | None = None
    """For a nudge or reassign: the agent who has not replied."""
    suggested_agent: str | None = None


def duration(seconds: float) -> str:
    """'10m', '1h 05m', '45s': compact so reason lines stay on one card row."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        m, r = divmod(s, 60)
        return f"{m}m" if not r else f"{m}m {r:02d}s"
    h, r = divmod(s, 3600)
    return f"{h}h" if r < 60 else f"{h}h {r // 60:02d}m"


def _target(state: SlaState, policy: Policy) -> tuple[str, int]:
    sla = policy.route_for(state.skill).sla
    return ("next-response", sla.next_response) if state.responded else ("first-response", sla.first_response)


def _ladder(state: SlaState) -> tuple[SlaStep, ...]:
    return _CLAIMED if state.claimed_by else _UNCLAIMED


def _agent_since(state: SlaState) -> float:
    """Start of the claiming agent's window: the customer's wait, or the claim if that came later."""
    return max(state.waiting_since, state.claimed_at or state.waiting_since)


def _queue_since(state: SlaState) -> float:
    """Start of the queue's window: the customer's wait, or the return to the queue if that came later."""
    return max(state.waiting_since, state.requeued_at or state.waiting_since)


def sla_hours(state: SlaState, policy: Policy) -> BusinessHours | None:
    """The hours the SLA clock runs in; None = around the clock. A skill with an after-hours channel has
    people on it at night, so its clock does not stop."""
    return clock_hours(policy, state.skill)


def clock_hours(policy: Policy, skill: str) -> BusinessHours | None:
    hours = policy.hours_for(skill)
    if policy.escalation.clock == "calendar" or hours is None or hours.after_hours_channel:
        return None
    return hours


_STARTS: dict[SlaStep, Callable[[SlaState], float]] = {
    SlaStep.WARN: _queue_since, SlaStep.ESCALATE: _queue_since, SlaStep.LEADS: _queue_since,
    SlaStep.NUDGE: _agent_since, SlaStep.REASSIGN: _agent_since,
}


def _due(step: SlaStep, state: SlaState, policy: Policy) -> float:
    """When `step` falls due: its share of the target after its window opened, counted in staffed time."""
    _, target = _target(state, policy)
    esc = policy.escalation
    after = {SlaStep.WARN: target * esc.warn_fraction, SlaStep.NUDGE: target * esc.warn_fraction,
             SlaStep.ESCALATE: target, SlaStep.REASSIGN: target, SlaStep.LEADS: target + esc.leads_after}[step]
    return add_open_time(sla_hours(state, policy), _STARTS[step](state), after)


def deadlines(state: SlaState, policy: Policy) -> list[tuple[SlaStep, float]]:
    """Every deadline of the current wait, for the scheduler; steps already done are left out."""
    if state.resolved or state.answered:
        return []
    ladder = _ladder(state)
    level = _done_level(state, ladder)
    return [(step, _due(step, state, policy)) for i, step in enumerate(ladder) if i > level]


def _done_level(state: SlaState, ladder: tuple[SlaStep, ...]) -> int:
    """A later step being done implies the earlier ones are moot (no re-ping after an escalation)."""
    return max((i for i, step in enumerate(ladder) if step.value in state.done), default=-1)


def actions_due(
    state: SlaState, policy: Policy, now: float, agents: Sequence[AgentLoad] = ()
) -> list[SlaAction]:
    """The single most severe step that is due and not yet done; lower steps are skipped, because a
    worker that was down should escalate once, not replay the whole ladder."""
    if state.resolved or state.answered:
        return []
    due = [(step, at) for step, at in deadlines(state, policy) if at <= now]
    if not due:
        return []
    step, _ = due[-1]
    return [_action(step, state, policy, now, agents)]


def _action(step: SlaStep, state: SlaState, policy: Policy, now: float, agents: Sequence[AgentLoad]) -> SlaAction:
    name, target = _target(state, policy)
    since = _queue_since(state)
    waited = duration(now - since)
    here = state.channel or policy.route_for(state.skill).channel
    cid = state.conversation_id
    if step is SlaStep.WARN:
        left = duration(_due(SlaStep.ESCALATE, state, policy) - now)
        reason = f"{name} due in {left} (SLA {duration(target)}), still unclaimed"
        return SlaAction(ActionKind.REPING, step, cid, here, reason)
    if step is SlaStep.ESCALATE:
        to = policy.escalation_channel_for(state.skill)
        reason = f"{name} SLA {duration(target)} breached: unclaimed for {waited} → {to}"
        return SlaAction(ActionKind.MOVE, step, cid, to, reason)
    if step is SlaStep.LEADS:
        reason = f"still unclaimed {waited} after a {duration(target)} {name} SLA → {policy.leads_channel}"
        return SlaAction(ActionKind.MOVE, step, cid, policy.leads_channel, reason)
    agent = state.claimed_by
    since = _agent_since(state)
    waited = duration(now - since)
    if step is SlaStep.NUDGE:
        left = duration(_due(SlaStep.REASSIGN, state, policy) - now)
        reason = f"{agent} has not replied for {waited}; {name} due in {left} (SLA {duration(target)})"
        return SlaAction(ActionKind.REPING, step, cid, here, reason, agent=agent)
    others = [a for a in agents if a.agent != agent]
    suggested = suggest_agent(state.skill, others, policy)
    if not policy.escalation.reassign_claimed:
        to = policy.escalation_channel_for(state.skill)
        reason = f"{agent} has not replied for {waited} ({name} SLA {duration(target)} breached) → {to}"
        return SlaAction(ActionKind.MOVE, step, cid, to, reason, agent=agent)
    where = f"reassign to {suggested}" if suggested else "back to the queue"
    reason = f"{agent} has not replied for {waited} ({name} SLA {duration(target)} breached) → {where}"
    return SlaAction(ActionKind.REASSIGN, step, cid, here, reason, agent=agent, suggested_agent=suggested)


def first_reply_due(policy: Policy, skill: str, now: datetime) -> datetime:
    """When the SLA clock says a person's first reply is due, for a customer handed to people at `now`.

    Counted in staffed time (`clock_hours`); a desk that is closed now, with no after-hours team, starts the
    clock when it opens, also on a calendar clock (nobody is there to answer before). The web chat widget
    showed the bare target instead ("about 15 minutes" on a Saturday morning, with the desk closed until
    Monday, right under the hand-off notice saying so)."""
    hours = policy.hours_for(skill)
    start = now
    if hours is not None and not hours.after_hours_channel and not is_open(hours, now):
        start = next_open(hours, now)
    due = add_open_time(clock_hours(policy, skill), start.timestamp(), policy.route_for(skill).sla.first_response)
    return datetime.fromtimestamp(due, UTC)


def eta_minutes(policy: Policy, skill: str, now: datetime) -> int:
    """Whole minutes from `now` until `first_reply_due`, at least one: the web chat's "about N minutes".

    >>> from router.policy import load_policy
    >>> policy = load_policy()
    >>> saturday = datetime(2026, 12, 5, 9, 42, tzinfo=UTC)  # the default desk: Mon-Fri 08:00-20:00 Berlin
    >>> eta_minutes(policy, "technical", saturday)  # Monday 08:00 Berlin (07:00 UTC), plus the 15-minute target
    2733
    >>> eta_minutes(policy, "technical", datetime(2026, 12, 7, 10, 0, tzinfo=UTC))  # Monday, open
    15
    """
    due = first_reply_due(policy, skill, now)
    return max(1, math.ceil((due.timestamp() - now.timestamp()) / 60))


def handoff_notice(policy: Policy, skill: str, now: datetime) -> str:
    """What the customer is told when the bot hands over: who is coming and roughly when. A desk closed now
    but with an after-hours team is staffed: "we're closed … after we open (Mon 08:00)" sent customers to wait
    for Monday while the night channel answered in minutes (and the web chat's wait said so)."""
    hours = policy.hours_for(skill)
    if hours is not None and not hours.after_hours_channel and not is_open(hours, now):
        back = next_open(hours, now)
        return (
            "I'm passing you to a member of our team. We're closed right now "
            f"({describe(hours, now)}); a person will reply after we open ({describe(hours, back)})."
        )
    first = policy.route_for(skill).sla.first_response
    clock = clock_hours(policy, skill)
    due = first_reply_due(policy, skill, now).timestamp()  # the time the web chat widget shows, too
    if clock is not None and due > now.timestamp() + first + 60:
        # Open now but closing before the target: "within about 15m" at 19:58 promised what the SLA clock
        # (which stops at 20:00) does not, and the reply came the next morning.
        return ("I'm passing you to a member of our team. We close soon, so a person will reply by "
                f"{describe(clock, datetime.fromtimestamp(due, UTC))} at the latest.")
    return f"I'm passing you to a member of our team; a person will reply within about {duration(first)}."
