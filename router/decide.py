"""`decide()`: the pure routing function.

Rules are a table of small functions, each looking at the whole conversation and returning a `Finding`
or nothing. The table order is the order reasons are shown in, so the card reads from the strongest
reason down. No I/O and no clock reads here: the same input and policy always give the same decision.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gateway.domain import Conversation, Decision, RouteKind, Scores
from router.policy import Policy


@dataclass(frozen=True, slots=True)
class Finding:
    reason: str
    needs_human: bool = False
    priority: int | None = None


Rule = Callable[[Conversation, Scores, Policy], Finding | None]


def _contains(text: str, phrases: Sequence[str]) -> str | None:
    lowered = f" {text.lower()} "
    for phrase in phrases:
        if phrase and phrase in lowered:
            return phrase
    return None


def human_requested(conv: Conversation, scores: Scores, policy: Policy) -> Finding | None:
    asks = sum(1 for m in conv.inbound if _contains(m.text, policy.human_request_phrases))
    if not asks:
        return None
    times = "once" if asks == 1 else ("twice" if asks == 2 else f"{asks} times")
    return Finding(f"customer asked for a human {times}", needs_human=True, priority=2 if asks > 1 else 3)


def escalation_keyword(conv: Conversation, scores: Scores, policy: Policy) -> Finding | None:
    hit = _contains(conv.last_inbound_text, policy.escalation_keywords)
    return Finding(f"keyword '{hit}'", needs_human=True, priority=2) if hit else None


def vip_tier(conv: Conversation, scores: Scores, policy: Policy) -> Finding | None:
    tier = (conv.customer.profile.tier or "").lower()
    if tier in policy.vip_tiers:
        return Finding(f"VIP tier {tier}", needs_human=True, priority=policy.vip_tiers[tier])
    return None


def urgency(conv: Conversation, scores: Scores, policy: Policy) -> Finding | None:
    t = policy.thresholds
    if scores.urgency >= t.urgent:
        return Finding(f"urgency {scores.urgency:.2f} ≥ {t.urgent:.2f}", needs_human=True, priority=1)
    if scores.urgency > t.automation_urgency_ceiling:
        return Finding(f"urgency {scores.urgency:.2f} > {t.automation_urgency_ceiling:.2f}", needs_human=True)
    return None


def sentiment(conv: Conversation, scores: Scores, policy: Policy) -> Finding | None:
    floor = policy.thresholds.sentiment_floor
    if scores.sentiment < floor:
        return Finding(f"sentiment {scores.sentiment:.2f} < {floor:.2f}", needs_human=True, priority=2)
    return None


def automation_paused(conv: Conversation, scores: Scores, policy: Policy) -> Finding | None:
    if policy.automation_paused:
        return Finding("automation paused", needs_human=True)
    route = policy.route_for(scores.top_skill)
    if not route.automation:
        return Finding(f"automation off for {scores.top_skill}", needs_human=True)
    return None


def automation_confidence(conv: Conversation, scores: Scores, policy: Policy) -> Finding | None:
    floor = policy.thresholds.automation_success_floor
    p = scores.automation_success
    if p < floor:
        return Finding(f"automation success {p:.2f} < {floor:.2f}", needs_human=True)
    return Finding(f"automation success {p:.2f} ≥ {floor:.2f}")


RULES: tuple[Rule, ...] = (
    human_requested,
    escalation_keyword,
    vip_tier,
    urgency,
    sentiment,
    automation_paused,
    automation_confidence,
)


def choose_skill(scores: Scores, policy: Policy) -> tuple[str, str]:
    """The skill to route to and the reason; unknown or low-confidence skills fall back to the default."""
    skill = scores.top_skill
    conf = scores.skill_confidence
    if skill not in policy.skills:
        return policy.default_skill, f"skill {skill} not in policy → {policy.default_skill}"
    if conf < policy.thresholds.skill_confidence_floor:
        return policy.default_skill, f"skill {skill} {conf:.2f} below confidence floor → {policy.default_skill}"
    return skill, f"skill {skill} {conf:.2f}"


def decide(conversation: Conversation, scores: Scores, policy: Policy, rules: Sequence[Rule] = RULES) -> Decision:
    skill, skill_reason = choose_skill(scores, policy)
    findings = [f for f in (rule(conversation, scores, policy) for rule in rules) if f is not None]
    to_human = any(f.needs_human for f in findings)
    priorities = [f.priority for f in findings if f.priority is not None and (f.needs_human or not to_human)]
    priority = min(priorities, default=3 if to_human else 4)
    # Reasons that argued for automation are noise once a human route wins.
    reasons = [f.reason for f in findings if f.needs_human or not to_human]
    reasons.append(skill_reason)
    route = policy.route_for(skill)
    return Decision(
        route=RouteKind.HUMAN if to_human else RouteKind.AUTOMATION,
        skill=skill,
        channel=route.channel,
        priority=priority,
        reasons=reasons,
        policy_version=policy.version,
    )
