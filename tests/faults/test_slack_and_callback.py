"""Slack answering 500, 429 with Retry-After and timing out; the customer's callback failing then recovering;
duplicate deliveries from the API client and from Slack's event retries."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from gateway import keys
from tests.conftest import Callback
from tests.faults import ledger
from tests.faults.cluster import SLACK_SECRET, Cluster, audit
from tests.faults.load import run_load
from tests.slack_requests import SlackSender


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


async def test_slack_500_429_and_timeouts(cluster: Cluster) -> None:
    # Production lease (15 s), as a deployment would run it.
    cluster.extra_env["SWITCHBOARD_LEASE_MS"] = "15000"
    await cluster.start_web()
    cluster.state.fail_next("chat.postMessage", status=500, count=5)
    cluster.state.fail_next("chat.postMessage", status=429, count=2, retry_after=1)
    cluster.state.fail_next("conversations.history", status=503, count=2)
    cluster.stall_s, cluster.stall_calls = 10.5, 1  # longer than the Slack client's 10 s timeout
    cluster.start_worker("w1")
    cluster.start_worker("w2")
    result = await run_load(cluster, customers=12, per_customer=2, tag="sl")
    await cluster.drained(timeout=60)
    found = await audit(cluster, result.accepted)
    errors = sum(1 for c in cluster.state.calls if c.status >= 429)
    ledger.record("Slack 500 / 429 Retry-After / timeout", found.messages, len(found.lost), len(found.duplicated),
                  f"{errors} failed Slack calls absorbed")
    assert errors >= 7
    assert found.lost == [] and found.duplicated == []


async def test_callback_down_then_up_and_duplicate_deliveries(cluster: Cluster, callback: Callback) -> None:
    cluster.extra_env["SWITCHBOARD_API_CALLBACK_URL"] = callback.url
    await cluster.start_web()
    cluster.start_worker("w1")
    # API retries: every message is sent three times at once, and once more after it was routed.
    result = await run_load(cluster, customers=6, per_customer=1, tag="cb")
    again = await asyncio.gather(*(cluster.post(f"cb-cust-{i}", f"cb-c{i}-m0", "I was charged twice on my invoice")
                                   for i in range(6) for _ in range(3)))
    assert all(status == 202 and body["duplicate"] for status, body in again)
    await cluster.drained()
    slack = SlackSender(cluster.session, f"{cluster.url}/slack/events", SLACK_SECRET)
    callback.fail_with = 503
    replies: dict[str, str] = {}
    for n, (mid, conv_id) in enumerate(sorted(result.accepted.items())):
        agent = ("U0ALICE", "U0BOB", "U0CAROL")[n % 3]  # per-agent capacity is 5 open conversations
        channel, card = card_for(cluster, conv_id)
        status, _ = await slack.click(agent, channel, card, {"type": "button", "action_id": "sb_claim",
                                                                 "value": conv_id})
        assert status == 200
        deadline = time.monotonic() + 10
        while await cluster.redis.get(keys.claim(conv_id)) is None:  # bolt acks before the claim lands
            assert time.monotonic() < deadline, "claim never recorded"
            await asyncio.sleep(0.02)
        text = f"refund issued for {mid}"
        # The agent's message must exist in the workspace: the gateway reacts to it once delivered.
        ts = cluster.state.next_ts()
        cluster.state.add_message(cluster.state.channel(channel),
                                  {"type": "message", "user": agent, "text": text, "ts": ts}, card["ts"])
        event = {"type": "message", "channel": channel, "user": agent, "text": text, "ts": ts,
                 "thread_ts": card["ts"], "event_ts": ts, "channel_type": "channel"}
        for retry in (None, 1, 2):  # Slack re-sends the same event_id with X-Slack-Retry-Num
            status, _ = await slack.event(event, event_id=f"Ev{mid.replace('-', '').upper()}", retry=retry)
            assert status == 200
        replies[text] = conv_id
    await until(lambda: sum(1 for c in cluster.state.calls_to("chat.postMessage")
                            if "Not delivered" in str(c.params.get("text"))) >= 1, timeout=20)
    callback.fail_with = None
    await until(lambda: len(callback.received) >= len(replies), timeout=30)
    await asyncio.sleep(1.0)
    await cluster.drained()
    got = [r["text"] for r in callback.received]
    lost = [t for t in replies if t not in got]
    dup = [t for t in set(got) if got.count(t) > 1]
    found = await audit(cluster, result.accepted)
    ledger.record("callback 503 then up; API + Slack retries", found.messages + len(replies) + len(again),
                  len(lost) + len(found.lost), len(dup) + len(found.duplicated),
                  f"{len(replies)} agent replies, each event sent 3x; 18 API resends")
    assert found.lost == [] and found.duplicated == []
    assert lost == [] and dup == []
