"""decide() over a table of realistic conversations: route, channel, priority and the exact reasons."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest

from gateway.domain import (
    ChannelKind,
    Conversation,
    Customer,
    CustomerProfile,
    Direction,
    Message,
    RouteKind,
    Scores,
)
from learners.coldstart import ColdStartScorer
from router.capacity import AgentLoad
from router.context import RoutingContext
from router.decide import decide, explain, suggested_agent
from router.policy import BusinessHours, Policy, load_policy

POLICY = load_policy()
WEDNESDAY_NOON = datetime(2026, 11, 25, 11, 0, tzinfo=UTC)  # 12:00 in Berlin, open
SATURDAY = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


def conv(
    *texts: str, tier: str | None = None, bot: tuple[int, ...] = (), at: datetime = WEDNESDAY_NOON
) -> Conversation:
    """Inbound messages one minute apart; indexes in `bot` become outbound bot answers."""
    msgs = [
        Message(
            id=f"m{i}",
            direction=Direction.OUTBOUND if i in bot else Direction.INBOUND,
            channel=ChannelKind.WEBCHAT,
            text=t,
            at=at - timedelta(minutes=len(texts) - i - 1),
        )
        for i, t in enumerate(texts)
    ]
    customer = Customer(key="webchat:c1", channel=ChannelKind.WEBCHAT, external_id="c1",
                        profile=CustomerProfile(tier=tier))
    return Conversation(id="conv_1", customer=customer, messages=msgs)


def scores(skill: str = "shipping", sentiment: float = 0.0, urgency: float = 0.2, automation: float = 0.8) -> Scores:
    dist = {s: 0.05 for s in POLICY.skills}
    dist[skill] = 0.8
    return Scores(sentiment=sentiment, urgency=urgency, skill=dist, automation_success=automation)


CASES = [
    pytest.param(
        conv("Where is my order 1234?"), scores(), None,
        RouteKind.AUTOMATION, "support-shipping", 4,
        ["automation success 0.80 ≥ 0.60", "skill shipping 0.80"], id="routine-to-bot",
    ),
    pytest.param(
        conv("This is unacceptable, I want a person"), scores("billing", sentiment=-0.5, urgency=0.4), None,
        RouteKind.HUMAN, "support-billing", 2,
        ["customer asked for a human once", "keyword 'unacceptable'", "sentiment -0.50 < -0.40",
         "skill billing 0.80"], id="unacceptable-want-person",
    ),
    pytest.param(
        conv("can I talk to a human", "Where is my refund?", "I said I want a HUMAN"), scores("billing"), None,
        RouteKind.HUMAN, "support-billing", 2,
        ["customer asked for a human twice", "skill billing 0.80"], id="asked-twice",
    ),
    pytest.param(
        conv("Site is down, we are losing sales"), scores("technical", urgency=0.91), None,
        RouteKind.HUMAN, "support-technical", 1, ["urgency 0.91 ≥ 0.80", "skill technical 0.80"], id="urgent",
    ),
    pytest.param(
        conv("Can I change my email?", tier="Gold"), scores("account"), None,
        RouteKind.HUMAN, "support-account", 2, ["VIP tier gold", "skill account 0.80"], id="vip",
    ),
    pytest.param(
        conv("hmm, how do subscriptions work"), scores("billing", automation=0.22), None,
        RouteKind.HUMAN, "support-billing", 3, ["automation success 0.22 < 0.60", "skill billing 0.80"],
        id="bot-unlikely",
    ),
    pytest.param(
        conv("I was charged twice for my order", "You can see charges under Account",
             "I was charged twice for my order!!"), scores("billing"), None,
        RouteKind.HUMAN, "support-billing", 3, ["customer repeated themselves once", "skill billing 0.80"],
        id="repeats",
    ),
    pytest.param(
        conv("Where is my order 1234?"), scores(), RoutingContext(automation=False),
        RouteKind.HUMAN, "support-shipping", 3, ["no automation configured", "skill shipping 0.80"],
        id="routine-without-a-bot",
    ),
]


@pytest.mark.parametrize(("conversation", "sc", "ctx", "route", "channel", "priority", "reasons"), CASES)
def test_decide_table(conversation, sc, ctx, route, channel, priority, reasons) -> None:
    d = decide(conversation, sc, POLICY, ctx)
    assert (d.route, d.channel, d.priority, d.reasons) == (route, channel, priority, reasons)
    assert d.policy_version == POLICY.version


def test_repeat_after_bot_answer_counts_only_inbound() -> None:
    c = conv("I was charged twice for my order", "See Account → Billing", "I was charged twice for my order!!",
             bot=(1,))
    d = decide(c, scores("billing"), POLICY)
    assert d.route is RouteKind.HUMAN and "customer repeated themselves once" in d.reasons


def test_sentiment_trend_worsening_goes_to_human() -> None:
    from router.context import RoutingContext

    ctx = RoutingContext(sentiment_history=(0.4, 0.1, -0.3))
    d = decide(conv("ok", "still nothing", "this is taking forever"), scores(sentiment=-0.3), POLICY, ctx)
    assert d.route is RouteKind.HUMAN
    assert d.reasons[0] == "sentiment worsening 0.40 → -0.30 over 3 messages"


def test_returning_customer_goes_back_to_available_agent() -> None:
    from router.context import RoutingContext

    agents = (AgentLoad("U1", frozenset({"shipping"}), 4), AgentLoad("U2", frozenset({"shipping"}), 0))
    ctx = RoutingContext(previous_agent="U1", previous_resolved_at=WEDNESDAY_NOON - timedelta(days=1), agents=agents)
    d = decide(conv("Hi again, the parcel still has not arrived"), scores(), POLICY, ctx)
    assert d.route is RouteKind.HUMAN
    assert "returning customer: previous agent U1 available" in d.reasons
    assert suggested_agent(d, ctx, POLICY) == "U1"  # continuity beats the less loaded U2


def test_returning_customer_outside_window_or_agent_away() -> None:
    from router.context import RoutingContext

    old = RoutingContext(previous_agent="U1", previous_resolved_at=WEDNESDAY_NOON - timedelta(days=10),
                         previous_agent_available=True)
    assert decide(conv("Where is my order?"), scores(), POLICY, old).route is RouteKind.AUTOMATION
    away = RoutingContext(previous_agent="U1", previous_agent_available=False, reopened=True)
    d = decide(conv("Where is my order?"), scores(), POLICY, away)
    assert d.route is RouteKind.AUTOMATION
    assert d.reasons[0] == "reopened conversation: previous agent U1 unavailable"  # context, not a human trigger
    d = decide(conv("Where is my order?"), scores(automation=0.1), POLICY, away)
    assert "reopened conversation: previous agent U1 unavailable" in d.reasons


def test_bot_failure_from_context() -> None:
    from router.context import RoutingContext

    d = decide(conv("where is it"), scores(), POLICY, RoutingContext(bot_failed=True, bot_answers=2))
    assert d.route is RouteKind.HUMAN and d.reasons[0] == "bot answer did not help (2 answers)"


def test_after_hours_routes_humans_to_after_hours_channel() -> None:
    hours = BusinessHours(timezone="Europe/Berlin", open=time(8), close=time(20), after_hours_channel="support-night")
    policy = POLICY.with_changes(business_hours=hours.model_dump(mode="json"))
    assert "support-night" in policy.channels()
    c = conv("I want to speak to a real person", at=SATURDAY)
    d = decide(c, scores(), policy)
    assert d.channel == "support-night"
    assert "outside business hours (Sat 10:00 Europe/Berlin) → support-night" in d.reasons
    assert decide(conv("I want a human"), scores(), policy).channel == "support-shipping"  # Wednesday: open
    assert decide(conv("Where is my order?", at=SATURDAY), scores(), policy).route is RouteKind.AUTOMATION
    # The bot then hands over: routed as any human route is (it kept the skill channel and P4 before).
    handed = decide(conv("Where is my order?", at=SATURDAY), scores(), policy, human=True)
    assert (handed.route, handed.channel, handed.priority) == (RouteKind.HUMAN, "support-night", 3)


def test_pause_global_and_per_skill() -> None:
    paused = POLICY.with_changes(automation_paused=True)
    assert decide(conv("Where is my order?"), scores(), paused).reasons[0] == "automation paused"
    per_skill = POLICY.with_skill_changes("shipping", automation_paused=True)
    d = decide(conv("Where is my order?"), scores(), per_skill)
    assert d.route is RouteKind.HUMAN and d.reasons[0] == "automation paused for shipping"
    assert decide(conv("invoice?"), scores("billing"), per_skill).route is RouteKind.AUTOMATION


def test_flat_skill_distribution_falls_back_to_default() -> None:
    flat = Scores(sentiment=0, urgency=0.1, skill={s: 0.2 for s in POLICY.skills}, automation_success=0.9)
    d = decide(conv("hello?"), flat, POLICY)
    assert d.skill == "general" and d.reasons[-1] == "skill unclear (0.20 tie) → general"


def test_a_tie_with_the_catch_all_alone_goes_to_the_specific_skill() -> None:
    """"I need help with the withdrawal fee": billing's "fee" and general's "help" tied, and it went to general."""
    tied = {s: 0.1 for s in POLICY.skills} | {"billing": 0.3, "general": 0.3}
    d = decide(conv("I need help with the withdrawal fee"), Scores(sentiment=0, urgency=0.1, skill=tied,
                                                                   automation_success=0.2), POLICY)
    assert d.skill == "billing" and "tied only with general, the catch-all" in d.reasons[-1]
    three = tied | {"technical": 0.3}  # two specific skills tied: still unclear
    d = decide(conv("help with the fee for the app"), Scores(sentiment=0, urgency=0.1, skill=three,
                                                             automation_success=0.2), POLICY)
    assert d.skill == "general" and d.reasons[-1].startswith("skill unclear")


def test_now_defaults_to_last_message_time() -> None:
    policy = POLICY.with_changes(business_hours={"timezone": "UTC", "open": "09:00", "close": "17:00"})
    c = conv("I want a human", at=SATURDAY)
    assert decide(c, scores(), policy) == decide(c, scores(), policy, now=SATURDAY)
    assert decide(c, scores(), policy, now=WEDNESDAY_NOON) != decide(c, scores(), policy)


def test_end_to_end_with_cold_start_scorer() -> None:
    scorer = ColdStartScorer()
    text = "This is unacceptable, I was charged twice and I want a person"
    d = decide(conv(text), scorer.score(text, POLICY.skill_keywords()), POLICY)
    assert d.route is RouteKind.HUMAN and d.channel == "support-billing"
    assert d.reasons[:2] == ["customer asked for a human once", "keyword 'unacceptable'"]
    routine = "Where is my order? What is the tracking number?"
    d = decide(conv(routine), scorer.score(routine, POLICY.skill_keywords()), POLICY)
    assert d.route is RouteKind.AUTOMATION and d.skill == "shipping"


def test_explain_lists_losing_findings() -> None:
    skill, _, findings = explain(conv("I want a human"), scores(), POLICY)
    assert skill == "shipping"
    assert [f.needs_human for f in findings] == [True, False]  # the bot-confidence finding lost


def test_policy_defaults_and_round_trip() -> None:
    assert isinstance(POLICY, Policy)
    assert Policy.from_json(POLICY.to_json()) == POLICY
    assert POLICY.capacity_of("U9") == POLICY.default_capacity
    assert POLICY.hours_for("billing") == POLICY.business_hours


def test_a_curly_apostrophe_matches_a_keyword_typed_with_a_straight_one() -> None:
    """`keyword add "won't refund" escalate` stores a straight apostrophe; phones type U+2019. Before: "won’t"
    became "won t" and the keyword never matched, with nothing to warn the lead."""
    policy = POLICY.model_copy(update={"escalation_keywords": (*POLICY.escalation_keywords, "won't refund")})
    d = decide(conv("So you won\u2019t refund me?"), scores("billing"), policy, RoutingContext(), WEDNESDAY_NOON)
    assert d.route is RouteKind.HUMAN and "keyword 'won't refund'" in d.reasons
