"""Invariants of decide() under hypothesis: human requests reach humans, pauses hold, reasons exist,
and the function is deterministic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.domain import ChannelKind, Conversation, Customer, CustomerProfile, Direction, Message, RouteKind, Scores
from router.capacity import AgentLoad
from router.context import RoutingContext
from router.decide import decide
from router.policy import load_policy

BASE = load_policy()
SKILLS = sorted(BASE.skills)
WORDS = ["order", "refund", "please", "where", "is", "my", "login", "broken", "thanks", "help", "now", "card",
         "invoice", "again", "still", "why", "the", "parcel", "ok", "great", "worst", "!", "?", "personal", "humane"]
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)

sentences = st.lists(st.sampled_from(WORDS), min_size=1, max_size=12).map(" ".join)
policies = st.builds(
    lambda paused, hours, skill_pause: BASE.with_changes(
        automation_paused=paused,
        business_hours=hours,
        skills={
            name: {**r.model_dump(mode="json"), "automation_paused": name in skill_pause}
            for name, r in BASE.skills.items()
        },
    ),
    st.booleans(),
    st.sampled_from([None, {"timezone": "Europe/Berlin", "open": "08:00", "close": "20:00",
                            "after_hours_channel": "support-night"}]),
    st.sets(st.sampled_from(SKILLS)),
)


@st.composite
def score_values(draw: st.DrawFn) -> Scores:
    weights = draw(st.lists(st.floats(0.01, 1.0), min_size=len(SKILLS), max_size=len(SKILLS)))
    total = sum(weights)
    return Scores(
        sentiment=draw(st.floats(-1, 1)),
        urgency=draw(st.floats(0, 1)),
        skill={s: w / total for s, w in zip(SKILLS, weights, strict=True)},
        automation_success=draw(st.floats(0, 1)),
    )


@st.composite
def conversations(draw: st.DrawFn, must_contain: str | None = None) -> Conversation:
    texts = draw(st.lists(sentences, min_size=1, max_size=6))
    outbound = draw(st.sets(st.integers(0, len(texts) - 1)))
    if must_contain is not None:
        i = draw(st.integers(0, len(texts) - 1))
        texts[i] = f"{texts[i]} {must_contain} {draw(sentences)}"
        outbound.discard(i)  # the request is the customer's, not the bot's
    start = T0 + timedelta(minutes=draw(st.integers(0, 7 * 24 * 60)))
    msgs = [
        Message(id=f"m{i}", direction=Direction.OUTBOUND if i in outbound else Direction.INBOUND,
                channel=ChannelKind.SMS, text=t, at=start + timedelta(seconds=30 * i))
        for i, t in enumerate(texts)
    ]
    tier = draw(st.sampled_from([None, "gold", "platinum", "basic"]))
    customer = Customer(key="sms:1", channel=ChannelKind.SMS, external_id="1", profile=CustomerProfile(tier=tier))
    return Conversation(id="conv_p", customer=customer, messages=msgs)


contexts = st.builds(
    RoutingContext,
    sentiment_history=st.lists(st.floats(-1, 1), max_size=5).map(tuple),
    previous_agent=st.sampled_from([None, "U1", "U2"]),
    previous_resolved_at=st.sampled_from([None, T0 - timedelta(days=1), T0 - timedelta(days=30)]),
    previous_agent_available=st.sampled_from([None, True, False]),
    reopened=st.booleans(),
    agents=st.sampled_from([(), (AgentLoad("U1", frozenset(SKILLS), 2), AgentLoad("U3", frozenset({"billing"})))]),
    bot_failed=st.booleans(),
) | st.none()


@SETTINGS
@given(policies, st.sampled_from(BASE.human_request_phrases), st.data())
def test_explicit_human_request_always_reaches_a_human(policy, phrase, data) -> None:
    c = data.draw(conversations(must_contain=phrase))
    d = decide(c, data.draw(score_values()), policy, data.draw(contexts))
    assert d.route is RouteKind.HUMAN
    assert d.channel in policy.channels()
    assert any(r.startswith("customer asked for a human") for r in d.reasons)


@SETTINGS
@given(policies, conversations(), score_values(), contexts)
def test_paused_automation_never_receives_conversations(policy, c, sc, ctx) -> None:
    d = decide(c, sc, policy, ctx)
    if d.route is RouteKind.AUTOMATION:
        assert policy.automation_enabled(d.skill)
    paused = policy.with_changes(automation_paused=True)
    assert decide(c, sc, paused, ctx).route is RouteKind.HUMAN


@SETTINGS
@given(policies, conversations(), score_values(), contexts)
def test_reasons_priority_channel_and_determinism(policy, c, sc, ctx) -> None:
    d = decide(c, sc, policy, ctx)
    assert d.reasons and all(isinstance(r, str) and r for r in d.reasons)
    assert 1 <= d.priority <= 4
    assert d.skill in policy.skills
    assert d.channel in policy.channels()
    assert d.policy_version == policy.version
    again = decide(Conversation.model_validate(c.model_dump()), sc.model_copy(deep=True), policy, ctx)
    assert again == d
