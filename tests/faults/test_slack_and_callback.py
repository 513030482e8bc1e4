"""Slack answering 500, 429 with Retry-After and timing out; the customer's callback failing then recovering;
duplicate deliveries from the API client and from Slack's event retries."""

from __future__ import annotations

import asyncio

from tests.conftest import Callback
from tests.faults import ledger
from tests.faults.cluster import Cluster, audit
from tests.faults.desk import lost_and_doubled, reply_to_each, until
from tests.faults.load import run_load


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
    callback.fail_with = 503
    replies = await reply_to_each(cluster, result.accepted)
    await until(lambda: sum(1 for c in cluster.state.calls_to("chat.postMessage")
                            if "Not delivered" in str(c.params.get("text"))) >= 1, timeout=20)
    callback.fail_with = None
    # Every reply by its text: the callback also gets our notices (a bot hand-off's), so a count was reached
    # while the last retried reply was still waiting out its back-off.
    await until(lambda: set(replies) <= {r["text"] for r in callback.received}, timeout=30)
    await asyncio.sleep(1.0)
    await cluster.drained()
    lost, dup = lost_and_doubled(replies, [r["text"] for r in callback.received])
    said = [(r["conversation_id"], r["text"]) for r in callback.received]  # nothing else said twice to anyone
    dup += [f"{c}: {t}" for c, t in set(said) if said.count((c, t)) > 1]
    found = await audit(cluster, result.accepted)
    ledger.record("callback 503 then up; API + Slack retries", found.messages + len(replies) + len(again),
                  len(lost) + len(found.lost), len(dup) + len(found.duplicated),
                  f"{len(replies)} agent replies, each event sent 3x; 18 API resends")
    assert found.lost == [] and found.duplicated == []
    assert lost == [] and dup == []
