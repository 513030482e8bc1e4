"""The card marks identity details nobody vouched for: a web chat visitor's typed name and email read
"(unverified)", a host-signed web chat user's id is said to be signed in, and an API customer's details (signed
by the host's backend) are shown as they are."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from slack_sdk.models.blocks import Block

from gateway.domain import ChannelKind, Conversation, Customer, CustomerProfile, Direction, Message
from integrations.slack.card import ContextCard
from integrations.webchat import tokens
from learners.coldstart import ColdStartScorer
from router.decide import decide
from router.policy import load_policy
from tests.harness import Gateway, make_settings, start_gateway, stored_card

IDENTITY_SECRET = "webchat-identity-secret-for-cards-0123"


def card_for(channel: ChannelKind, external_id: str, profile: CustomerProfile) -> ContextCard:
    customer = Customer(key=f"{channel.value}:{external_id}", channel=channel, external_id=external_id,
                        profile=profile)
    conv = Conversation(id="conv_test", customer=customer)
    conv.messages.append(Message(id="m1", direction=Direction.INBOUND, channel=channel, text="I was charged twice"))
    policy = load_policy()
    scores = ColdStartScorer().score("I was charged twice", policy.skill_keywords())
    conv.scores = scores
    return ContextCard(conv, decide(conv, scores, policy), scores)


def customer_field(card: ContextCard) -> str:
    blocks = card.to_dicts()
    for block in blocks:
        parsed = Block.parse(block)  # still valid Block Kit
        assert parsed is not None and parsed.to_dict()
    text: str = blocks[1]["fields"][0]["text"]
    return text


def test_an_anonymous_visitors_typed_name_and_email_are_marked_unverified() -> None:
    text = customer_field(card_for(ChannelKind.WEBCHAT, "v-" + "1" * 32,
                                   CustomerProfile(name="Alice Visitor", email="alice@example.com")))
    assert text == "*Customer*\nAlice Visitor (unverified)\nalice@example.com (unverified)"


def test_a_signed_web_chat_user_is_said_to_be_signed_in() -> None:
    text = customer_field(card_for(ChannelKind.WEBCHAT, "user:42",
                                   CustomerProfile(name="Jane <@U1>", email="jane@example.com")))
    assert "signed-in user 42" in text
    assert "jane@example.com (unverified)" in text  # the page passes it beside the signature, not in it
    assert "<@U1>" not in text  # still escaped


def test_api_and_sms_details_are_shown_as_they_are() -> None:
    api = customer_field(card_for(ChannelKind.API, "c1", CustomerProfile(name="Eve", email="eve@example.com",
                                                                          tier="gold")))
    assert api == "*Customer*\nEve\neve@example.com · tier gold"
    sms = customer_field(card_for(ChannelKind.SMS, "+4917012345678", CustomerProfile(phone="+4917012345678")))
    assert "unverified" not in sms


@pytest.fixture
async def card_gw(redis: aioredis.Redis, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                  ) -> AsyncIterator[Gateway]:
    monkeypatch.setenv("WEBCHAT_IDENTITY_SECRET", IDENTITY_SECRET)
    gw = await start_gateway(make_settings(redis_url, tmp_path))
    yield gw
    await gw.close()


async def posted_card_text(gw: Gateway, identity: dict[str, Any]) -> str:
    """A visitor starts a session with `identity` and writes; the text of the card the desk got for it."""
    async with gw.session.post(f"{gw.url}/webchat/session", json={"identity": identity},
                               headers={"Origin": gw.url}) as resp:
        assert resp.status == 200, await resp.text()
        session = await resp.json()
    async with gw.session.ws_connect(f"{gw.url}/webchat/ws?token={session['token']}&since=0",
                                     headers={"Origin": gw.url}) as ws:
        await ws.send_json({"type": "message", "client_id": "c1", "text": "I was charged twice on my invoice"})
        card, conv_id = await stored_card(gw, "support-billing")
    assert conv_id == session["conversation_id"]
    return json.dumps(card["blocks"])


async def test_the_card_posted_for_a_web_chat_visitor_says_their_email_is_unverified(card_gw: Gateway) -> None:
    text = await posted_card_text(card_gw, {"name": "Alice Visitor", "email": "alice.visitor@example.com"})
    assert "alice.visitor@example.com (unverified)" in text and "Alice Visitor (unverified)" in text


async def test_the_card_posted_for_a_signed_web_chat_user_names_the_signed_id(card_gw: Gateway) -> None:
    text = await posted_card_text(card_gw, {"user_id": "42", "user_hash": tokens.identity_hash(IDENTITY_SECRET, "42"),
                                            "name": "Jane Doe", "email": "jane@example.com"})
    assert "signed-in user 42" in text
