"""`/metrics` on a tiny aiohttp app: helpers feed the families, queue gauges come from real Redis streams.

Lives with the fault suite because its point is the same: an operator must see a backlog (no worker)
and a drained queue (worker back) without trusting the process that might be the one failing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from gateway import metrics
from gateway.metrics import MetricsSource, reason_kind
from learners.service import LearnerScorer
from tests.conftest import free_port
from tests.faults.cluster import Cluster
from tests.faults.load import run_load
from tests.harness import eventually, make_settings, start_gateway


@pytest.fixture
async def scrape(redis: aioredis.Redis) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    app = web.Application()
    metrics.mount(app, MetricsSource(redis, 4, LearnerScorer()))
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    async with aiohttp.ClientSession() as session:
        yield f"http://127.0.0.1:{port}/metrics", session
    await runner.cleanup()


async def samples(session: aiohttp.ClientSession, url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    async with session.get(url) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def test_reason_kinds_are_bounded() -> None:
    assert reason_kind("keyword 'unacceptable'") == "keyword"
    assert reason_kind("VIP tier gold") == "vip"
    assert reason_kind("urgency 0.91 ≥ 0.80") == "urgency"
    assert reason_kind("handoff: bot answer not delivered (x)") == "handoff"
    assert reason_kind("customer asked for a human twice") == "asked_for_human"
    assert reason_kind("reopened: previous agent U1 available") == "previous_agent"
    assert reason_kind("jane@example.com says hi 4111111111111111") == "other"


async def test_helpers_show_up_with_labels(scrape: tuple[str, aiohttp.ClientSession]) -> None:
    url, session = scrape
    before = await samples(session, url)
    metrics.message_in("api")
    metrics.message_in("api", duplicate=True)
    metrics.decision("human", ["VIP tier gold", "skill billing 0.80"])
    metrics.sla_breach("warn")
    metrics.claimed("billing", "1.0", now=31.0)
    with metrics.slack_call("chat.postMessage"):
        pass
    resp = AsyncSlackResponse(client=None, http_verb="POST", api_url="x", req_args={},
                              data={"ok": False, "error": "ratelimited"}, headers={}, status_code=429)
    with pytest.raises(SlackApiError), metrics.slack_call("chat.postMessage"):
        raise SlackApiError("ratelimited", resp)
    with pytest.raises(OSError), metrics.channel_call("api"):
        raise OSError("callback down")
    after = await samples(session, url)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("switchboard_messages_in_total", channel="api", duplicate="false") == 1
    assert grew("switchboard_messages_in_total", channel="api", duplicate="true") == 1
    assert grew("switchboard_decisions_total", route="human", reason_kind="vip") == 1
    assert grew("switchboard_sla_breaches_total", step="warn") == 1
    assert grew("switchboard_claim_latency_seconds_count", skill="billing") == 1
    assert grew("switchboard_claim_latency_seconds_sum", skill="billing") == 30.0
    assert grew("switchboard_slack_call_seconds_count", method="chat.postMessage") == 2
    assert grew("switchboard_slack_call_errors_total", method="chat.postMessage", error="ratelimited") == 1
    assert grew("switchboard_customer_channel_errors_total", channel="api") == 1
    assert value(after, "switchboard_learner_weight", learner="skill") == 0.0
    assert value(after, "switchboard_learner_fallback", learner="skill") == 0.0
    assert ("switchboard_learner_labels_seen", frozenset({("learner", "skill")})) in after


async def test_queue_depth_and_lag_follow_the_real_streams(
    redis: aioredis.Redis, redis_url: str, tmp_path: Path, scrape: tuple[str, aiohttp.ClientSession]
) -> None:
    url, session = scrape
    gw = await start_gateway(make_settings(redis_url, tmp_path), with_worker=False)
    try:
        for i in range(6):
            status, _ = await gw.post_message({"customer_id": f"mx-{i}", "message_id": f"m-{i}", "text": "refund?"})
            assert status == 202
        found = await samples(session, url)
        depth = sum(value(found, "switchboard_queue_depth", partition=str(p)) for p in range(4))
        assert depth == 6
        assert max(value(found, "switchboard_queue_lag_seconds", partition=str(p)) for p in range(4)) >= 0.0
        assert value(found, "switchboard_dead_letters") == 0
        gw.start_worker()

        async def drained() -> bool:
            now = await samples(session, url)
            return all(value(now, "switchboard_queue_depth", partition=str(p)) == 0 for p in range(4)) and all(
                value(now, "switchboard_queue_lag_seconds", partition=str(p)) == 0 for p in range(4))

        await eventually(drained, timeout=20)
    finally:
        await gw.close()


async def test_scrape_survives_redis_outage(redis_url: str) -> None:
    dead = aioredis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.2)
    app = web.Application()
    metrics.mount(app, MetricsSource(dead, 2))
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with aiohttp.ClientSession() as session:
            found = await samples(session, f"http://127.0.0.1:{port}/metrics")
        assert value(found, "switchboard_metrics_scrape_errors_total") >= 1
    finally:
        await runner.cleanup()
        await dead.aclose()


async def test_a_worker_process_serves_its_own_metrics(cluster: Cluster) -> None:
    """Procfile layout: decisions, worker entries and SLA breaches happen in the worker process, and the web
    process's `/metrics` cannot see them; SWITCHBOARD_METRICS_PORT gives the worker its own."""
    await cluster.start_web()
    port = free_port()
    cluster.start_worker("w1", SWITCHBOARD_METRICS_PORT=str(port))
    result = await run_load(cluster, customers=3, per_customer=1, tag="mx")
    await cluster.drained()
    url = f"http://127.0.0.1:{port}/metrics"

    async def counted() -> dict[tuple[str, frozenset[tuple[str, str]]], float] | None:
        try:
            found = await samples(cluster.session, url)
        except aiohttp.ClientError:
            return None
        return found if value(found, "switchboard_worker_entries_total", result="acked") >= 3 else None

    found = await eventually(counted, timeout=20)
    assert sum(v for (name, _), v in found.items() if name == "switchboard_decisions_total") >= len(result.accepted)
    on_web = await samples(cluster.session, f"{cluster.url}/metrics")
    assert value(on_web, "switchboard_worker_entries_total", result="acked") == 0  # why the worker needs its own
