"""The context card: valid Block Kit, the fields agents need, and customer text made inert."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from slack_sdk.models.blocks import Block

from gateway.domain import (
    ChannelKind,
    Conversation,
    ConversationState,
    Customer,
    CustomerProfile,
    Direction,
    Message,
    PastConversation,
)
from integrations.slack.card import ContextCard, fits_whole, transcript
from integrations.slack.escape import escape
from learners.coldstart import ColdStartScorer
from router.decide import decide
from router.policy import load_policy

HOSTILE = [
    "<!channel> please look",
    "<!here|here> and <!everyone>",
    "ping <@U0ALICE> and <#C123|general>",
    "click <http://evil.example|your bank> now",
    "a & b < c > d",
    "*bold* _it_ ~strike~ `code` ```block```",
]


def conversation(text: str, name: str = "Jane <@U1>") -> Conversation:
    customer = Customer(
        key="api:c1", channel=ChannelKind.API, external_id="c1",
        profile=CustomerProfile(name=name, email="jane@example.com"),
    )
    conv = Conversation(id="conv_test", customer=customer)
    conv.messages.append(Message(id="m1", direction=Direction.INBOUND, channel=ChannelKind.API, text=text))
    return conv


def build(text: str, name: str = "Jane <@U1>") -> ContextCard:
    policy = load_policy()
    conv = conversation(text, name)
    scores = ColdStartScorer().score(text, policy.skill_keywords())
    conv.scores = scores
    return ContextCard(conv, decide(conv, scores, policy), scores)


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_text_cannot_mention_or_link(text: str) -> None:
    card = build(text)
    rendered = json.dumps(card.to_dicts())
    for live in ("<!channel>", "<!here", "<!everyone>", "<@U0ALICE>", "<@U1>", "<http://", "<#C123"):
        assert live not in rendered
    assert escape(text) in rendered or escape(text)[:400] in rendered
    assert "<" not in card.fallback_text()


def test_card_shows_customer_scores_reasons_and_id() -> None:
    card = build("I was charged twice, this is unacceptable")
    blocks = card.to_dicts()
    assert blocks[0]["type"] == "header" and "billing" in blocks[0]["text"]["text"]
    rendered = json.dumps(blocks)
    for needle in ("Customer", "jane@example.com", "Mood", "Urgency", "Skill", "Automation success",
                   "Why here", "keyword 'unacceptable'", "conv_test", "policy v1"):
        assert needle in rendered, needle
    assert card.metadata()["event_payload"]["conversation_id"] == "conv_test"


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=1, max_size=4000).filter(lambda s: s.strip() and "\x00" not in s))
def test_any_text_gives_valid_bounded_blocks(text: str) -> None:
    card = build(text)
    for block in card.to_dicts():
        for obj in [block.get("text"), *(block.get("fields") or [])]:
            if obj:
                assert len(obj["text"]) <= 3000
    assert "<!" not in json.dumps(card.to_dicts()).replace("&lt;!", "")


@pytest.mark.parametrize("state", list(ConversationState))
def test_every_card_variant_is_valid_block_kit(state: ConversationState) -> None:
    """The card is built as plain dicts for speed; slack_sdk's models are the schema it must satisfy."""
    base = build("I was charged twice <!channel> & more " + "x" * 600)
    base.conversation.state = state
    past = PastConversation(id="conv_old", created_at=datetime(2026, 1, 1, tzinfo=UTC), channel=ChannelKind.SMS,
                            skill="billing", state=ConversationState.RESOLVED, csat=4)
    variants = [
        ContextCard(base.conversation, base.decision, base.scores),
        ContextCard(base.conversation, base.decision, base.scores, history=[past] * 6,
                    skills=("billing", "technical", "shipping"), suggested="U0AGENT"),
        ContextCard(base.conversation, base.decision, base.scores, status="Claimed by <@U0AGENT> · 14:02"),
    ]
    for card in variants:
        blocks = card.to_dicts()
        parsed = [Block.parse(b) for b in blocks]
        assert all(p is not None for p in parsed)
        # to_dict() runs slack_sdk's validators (text lengths, element counts, required fields).
        assert [p.to_dict() for p in parsed if p is not None] == blocks


@pytest.mark.parametrize("name", ["&" * 200, "<>" * 100, "Jane " + "&<>" * 60, "x" * 200])
def test_a_hostile_name_still_gives_a_header_slack_accepts(name: str) -> None:
    """The name is the customer's to set (widget identity, WhatsApp profile): escaping grows `&<>` five- and
    fourfold, and a header over 150 characters made Slack refuse every card for that customer."""
    card = build("I was charged twice", name=name)
    header = card.to_dicts()[0]
    assert header["type"] == "header" and len(header["text"]["text"]) <= 150
    parsed = Block.parse(header)
    assert parsed is not None and parsed.to_dict() == header
    assert "<" not in header["text"]["text"] and ">" not in header["text"]["text"]
    assert header["text"]["text"].endswith("…") or len(escape(name)) < 130


def test_the_newest_message_is_always_on_the_card_and_what_is_cut_is_named() -> None:
    """Long earlier messages used to push the newest one (the message being routed) off the card."""
    conv = conversation("first " * 150)  # 900 characters: shown in part
    for i in range(2, 8):
        conv.messages.append(Message(id=f"m{i}", direction=Direction.INBOUND, channel=ChannelKind.API,
                                     text=f"message {i} " + "x" * 480))
    conv.messages.append(Message(id="m8", direction=Direction.INBOUND, channel=ChannelKind.API,
                                 text="NEWEST: my order number is 99-1234"))
    lines, cut = transcript(conv)
    assert "NEWEST: my order number is 99-1234" in lines[-1]
    assert len("\n".join(lines)) <= 2900
    shown = len(lines)
    assert [m.id for m in cut] == [m.id for m in conv.messages[: 8 - shown]]  # the oldest, in order, no gaps
    card = build("short")
    assert "Cut short" not in json.dumps(card.blocks())
    long_card = build("refund " * 100)  # 700 characters
    assert "full words are in the thread" in json.dumps(long_card.blocks())
    assert [m.id for m in transcript(long_card.conversation)[1]] == ["m1"]


def test_the_quick_check_never_says_whole_when_the_card_cuts() -> None:
    """`fits_whole` spares the routing worker a render per card; it may say "maybe not", never a wrong "yes"."""
    for text in ("short", "&" * 499, "x" * 501, "<!channel> & " * 30):
        conv = conversation(text)
        for i in range(7):
            conv.messages.append(Message(id=f"m{i + 2}", direction=Direction.INBOUND, channel=ChannelKind.API,
                                         text=text))
        for n in range(1, 9):
            part = conv.model_copy(update={"messages": conv.messages[:n]})
            if fits_whole(part):
                assert transcript(part)[1] == [], (text[:20], n)
    assert fits_whole(conversation("Where is my order?"))
