"""`decide()`: the pure routing function.

Rules (see `router.rules`) are a table of small functions, each looking at the whole conversation and
returning a `Finding` or nothing. The table order is the order reasons are shown in, so the card reads
from the strongest reason down. No I/O and no clock reads here: the same conversation, scores, policy,
context and `now` always give the same decision, which is what makes replays and dry runs honest.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from gateway.domain import Conversation, Decision, Direction, RouteKind, Scores
from router.capacity import suggest_agent
from router.context import EMPTY_CONTEXT, RoutingContext
from router.policy import Policy
from router.rules import RULES, Facts, Finding, Rule, normalise

__all__ = [
    "RULES",
    "Finding",
    "RoutingContext",
    "Rule",
    "choose_skill",
    "decide",
    "decision_time",
    "explain",
    "suggested_agent",
]


def choose_skill(scores: Scores, policy: Policy) -> tuple[str, str]:
    """The skill to route to and the reason. Unknown, low-confidence or tied skills fall back to the
    default: a flat distribution means "no idea", and picking the alphabetically first skill would
    send every vague message to the same specialist queue."""
    best, conf, runner_up = "", -1.0, -1.0
    for name in sorted(scores.skill):
        p = scores.skill[name]
        if p > conf:
            best, conf, runner_up = name, p, conf
        elif p > runner_up:
            runner_up = p
    fallback = policy.default_skill
    if best not in policy.skills:
        return fallback, f"skill {best} not in policy → {fallback}"
    if conf < policy.thresholds.skill_confidence_floor:
        return fallback, f"skill {best} {conf:.2f} below confidence floor → {fallback}"
    if conf == runner_up and len(scores.skill) > 1:
        # A tie with the catch-all alone is no tie: "I need help with the withdrawal fee" names billing, and
        # the default skill's generic words ("help", "question") matched one in twelve real messages.
        specific = [s for s, p in scores.skill.items() if p == conf and s != fallback]
        if len(specific) == 1 and scores.skill.get(fallback) == conf and specific[0] in policy.skills:
            return specific[0], f"skill {specific[0]} {conf:.2f} (tied only with {fallback}, the catch-all)"
        if best != fallback:
            return fallback, f"skill unclear ({conf:.2f} tie) → {fallback}"
    return best, f"skill {best} {conf:.2f}"


def decision_time(conversation: Conversation) -> datetime:
    """The moment a decision is about when the caller gives none: the last message, never the wall clock."""
    return conversation.messages[-1].at if conversation.messages else conversation.updated_at


def explain(
    conversation: Conversation,
    scores: Scores,
    policy: Policy,
    context: RoutingContext | None = None,
    now: datetime | None = None,
    rules: Sequence[Rule] = RULES,
) -> tuple[str, str, list[Finding]]:
    """Every finding, including those that lost; for dry runs and debugging a surprising route."""
    skill, skill_reason = choose_skill(scores, policy)
    facts = Facts(
        conversation,
        scores,
        policy,
        context or EMPTY_CONTEXT,
        now or decision_time(conversation),
        skill,
        tuple([normalise(m.text) for m in conversation.messages if m.direction is Direction.INBOUND]),
    )
    findings = []
    for rule in rules:
        found = rule(facts)
        if found is not None:
            findings.append(found)
    return skill, skill_reason, findings


def decide(
    conversation: Conversation,
    scores: Scores,
    policy: Policy,
    context: RoutingContext | None = None,
    now: datetime | None = None,
    *,
    rules: Sequence[Rule] = RULES,
    human: bool = False,
) -> Decision:
    """`human`: the bot has handed over, so route to people whatever the rules say, with everything a human
    route gets (the after-hours channel, the human default priority)."""
    skill, skill_reason, findings = explain(conversation, scores, policy, context, now, rules)
    to_human = human or any(f.needs_human for f in findings)
    # Reasons that argued for automation are noise once a human route wins; `keep` ones are context.
    shown = [f for f in findings if f.needs_human or f.keep] if to_human else findings
    priority: int | None = None
    channel = policy.route_for(skill).channel
    override = None
    reasons: list[str] = []
    for f in shown:
        reasons.append(f.reason)
        if f.priority is not None and (priority is None or f.priority < priority):
            priority = f.priority
        if override is None and f.channel:
            override = f.channel
    if to_human and override:
        channel = override
    reasons.append(skill_reason)
    if priority is None:
        priority = 3 if to_human else 4
    return Decision(
        route=RouteKind.HUMAN if to_human else RouteKind.AUTOMATION,
        skill=skill,
        channel=channel,
        priority=priority,
        reasons=reasons,
        policy_version=policy.version,
    )


def suggested_agent(decision: Decision, context: RoutingContext | None, policy: Policy) -> str | None:
    """The agent the card should offer: the previous agent for a returning customer, else least loaded."""
    if decision.route is not RouteKind.HUMAN or context is None:
        return None
    return suggest_agent(decision.skill, context.agents, policy, prefer=context.previous_agent)
