"""Shared pieces for the `/switchboard` tests: a gateway with the commands wired, a slash-command caller
that reads the answer from the emulator's response_url, and conversations stored with known content.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

import gateway.app as gateway_app
from gateway import keys
from gateway.domain import (
    ChannelKind,
    Conversation,
    ConversationState,
    Customer,
    Direction,
    Message,
    Scores,
    new_id,
)
from gateway.store import ConversationStore
from integrations.slack import commands
from integrations.slack.emulator.deskweb import DESK
from router.decide import decide
from router.policy import Policy
from tests.harness import Gateway, eventually, make_settings, start_gateway
from tests.slack_requests import SlackSender

LEAD = "U0LEAD"
NOON_WEDNESDAY = datetime(2026, 11, 18, 11, 0, tzinfo=UTC)  # 12:00 in Berlin: inside business hours


async def commands_gateway(redis_url: str, tmp_path: Path, **settings: Any
                           ) -> Gateway:
    """The real gateway, as `gateway/app.py` wires it (the commands are registered on its bolt app)."""
    gw = await start_gateway(make_settings(redis_url, tmp_path, **settings))
    assert commands.registered(gw.app[gateway_app.BOLT])
    return gw


@pytest.fixture
async def cmd_gw(redis: aioredis.Redis, redis_url: str, tmp_path: Path) -> AsyncIterator[Gateway]:
    gw = await commands_gateway(redis_url, tmp_path)
    yield gw
    await gw.close()


@dataclass
class Slash:
    """`/switchboard …` as a user types it; returns the response_url body the gateway posted."""

    gw: Gateway
    command: str = "/switchboard"

    @property
    def sender(self) -> SlackSender:
        return SlackSender(self.gw.session, f"{self.gw.url}/slack/events", self.gw.rt.slack.signing_secret)

    def response_url(self, user: str, channel_id: str) -> str:
        return self.gw.app[gateway_app.EMULATOR][DESK]._response_target(channel_id=channel_id, user_id=user)

    async def __call__(self, text: str, user: str = LEAD, channel: str = "support-leads") -> dict[str, Any]:
        channel_id = self.gw.slack.channel_id(channel)
        url = self.response_url(user, channel_id)
        rid = url.rsplit("/", 1)[-1]
        status, body = await self.sender.slash(user, self.command, text, channel_id, url)
        assert status == 200, body
        found = await eventually(lambda: [r for r in self.gw.slack.responses if r["id"] == rid], timeout=15)
        assert "error" not in found[0], found[0]
        return dict(found[0]["body"])

    async def text(self, text: str, user: str = LEAD) -> str:
        return str((await self(text, user))["text"])

    async def click_apply(self, user: str, token: str, channel: str = "support-leads") -> dict[str, Any]:
        channel_id = self.gw.slack.channel_id(channel)
        url = self.response_url(user, channel_id)
        rid = url.rsplit("/", 1)[-1]
        payload = {
            "type": "block_actions", "user": {"id": user, "username": user.lower(), "team_id": "T0SWITCHBD"},
            "api_app_id": "A0SWITCHBD", "token": "legacy", "team": {"id": "T0SWITCHBD", "domain": "x"},
            "container": {"type": "message", "message_ts": "1.000001", "channel_id": channel_id,
                          "is_ephemeral": True},
            "channel": {"id": channel_id, "name": channel}, "trigger_id": "1.abc", "response_url": url,
            "actions": [{"type": "button", "action_id": "sb_policy_apply", "value": token, "block_id": "b",
                         "action_ts": "1.2"}],
        }
        status, body = await self.sender.interaction(payload)
        assert status == 200, body
        found = await eventually(lambda: [r for r in self.gw.slack.responses if r["id"] == rid], timeout=15)
        return dict(found[0]["body"])


def apply_token(body: dict[str, Any]) -> str:
    for block in body.get("blocks") or []:
        for el in block.get("elements") or []:
            if el.get("action_id") == "sb_policy_apply":
                return str(el["value"])
    raise AssertionError(f"no Apply button in {json.dumps(body)[:500]}")


async def store_conversation(
    store: ConversationStore, text: str, scores: Scores, *, policy: Policy, at: datetime = NOON_WEDNESDAY,
    tier: str | None = None, resolved_after: timedelta | None = None, reply_after: timedelta | None = None,
    recent: bool = True,
) -> Conversation:
    """A routed conversation written the way the pipeline writes one (hash fields, transcript, sb:recent)."""
    cid = new_id("conv")
    customer = Customer.model_validate({"key": f"api:{cid}", "channel": ChannelKind.API, "external_id": cid,
                                        "profile": {"tier": tier} if tier else {}})
    conv = Conversation(id=cid, customer=customer, created_at=at)
    msg = Message(id=new_id("msg"), direction=Direction.INBOUND, channel=ChannelKind.API, text=text, at=at)
    await store.append(conv, msg)
    decision = decide(conv, scores, policy, None, at)
    conv.scores, conv.decision, conv.skill = scores, decision, decision.skill
    conv.state = ConversationState.WAITING if decision.route.value == "human" else ConversationState.AUTOMATED
    if decision.route.value == "human":
        conv.slack_channel, conv.card_ts = "C0X", "1.0001"
    if reply_after is not None:
        reply = Message(id=f"out-{new_id('r')}", direction=Direction.OUTBOUND, channel=ChannelKind.API, text="On it",
                        author="Jane", at=at + reply_after)
        await store.append(conv, reply)
    if resolved_after is not None:
        conv.state, conv.resolved_at = ConversationState.RESOLVED, at + resolved_after
    await store.save(conv, "id", "customer", "state", "created_at", "resolved_at", "skill", "scores", "decision",
                     "slack_channel", "card_ts")
    if recent:
        await store.redis.lpush(keys.RECENT, cid)
    return conv


def scores(skill: str, *, auto: float = 0.9, urgency: float = 0.1, sentiment: float = 0.0) -> Scores:
    dist = {s: 0.02 for s in ("billing", "technical", "shipping", "account", "general")}
    dist[skill] = 0.92
    return Scores(sentiment=sentiment, urgency=urgency, skill=dist, automation_success=auto)
