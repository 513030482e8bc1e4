"""Agents at work in fault scenarios: claim each conversation's card and reply in its thread, with every
Slack event delivered three times (Slack retries an event it thinks went unanswered)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from gateway import keys
from tests.faults.cluster import SLACK_SECRET, Cluster
from tests.slack_requests import SlackSender

AGENTS = ("U0ALICE", "U0BOB", "U0CAROL")
"""Per-agent capacity is 5 open conversations: replies are spread over three."""


def card_for(cluster: Cluster, conv_id: str) -> tuple[str, dict]:
    for channel in cluster.state.channels.values():
        for m in channel.messages:
            meta = m.get("metadata") or {}
            if meta.get("event_type") == "switchboard_card" and meta["event_payload"]["conversation_id"] == conv_id:
                return channel.id, m
    raise AssertionError(f"no card for {conv_id}")


async def until(check: Callable[[], object], timeout: float = 20.0) -> None:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met"
        await asyncio.sleep(0.05)


async def reply_to_each(cluster: Cluster, conversations: dict[str, str]) -> dict[str, str]:
    """`conversations`: a label → conversation id. An agent claims each card and replies in its thread;
    returns reply text → conversation id."""
    slack = SlackSender(cluster.session, f"{cluster.url}/slack/events", SLACK_SECRET)
    replies: dict[str, str] = {}
    for n, (label, conv_id) in enumerate(sorted(conversations.items())):
        agent = AGENTS[n % len(AGENTS)]
        channel, card = card_for(cluster, conv_id)
        status, _ = await slack.click(agent, channel, card, {"type": "button", "action_id": "sb_claim",
                                                                 "value": conv_id})
        assert status == 200
        deadline = time.monotonic() + 10
        while await cluster.redis.get(keys.claim(conv_id)) is None:  # bolt acks before the claim lands
            assert time.monotonic() < deadline, "claim never recorded"
            await asyncio.sleep(0.02)
        text = f"refund issued for {label}"
        # The agent's message must exist in the workspace: the gateway reacts to it once delivered.
        ts = cluster.state.next_ts()
        cluster.state.add_message(cluster.state.channel(channel),
                                  {"type": "message", "user": agent, "text": text, "ts": ts}, card["ts"])
        event = {"type": "message", "channel": channel, "user": agent, "text": text, "ts": ts,
                 "thread_ts": card["ts"], "event_ts": ts, "channel_type": "channel"}
        for retry in (None, 1, 2):  # Slack re-sends the same event_id with X-Slack-Retry-Num
            status, _ = await slack.event(event, event_id=f"Ev{label.replace('-', '').upper()}", retry=retry)
            assert status == 200
        replies[text] = conv_id
    return replies


def lost_and_doubled(replies: dict[str, str], received: list[str]) -> tuple[list[str], list[str]]:
    """Replies that never reached the customer, and those that reached them more than once. Only the replies:
    our own notices (a bot hand-off's) say the same words to every customer."""
    lost = [t for t in replies if t not in received]
    doubled = [t for t in replies if received.count(t) > 1]
    return lost, doubled
