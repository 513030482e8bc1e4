"""Prometheus metrics: one private registry, named helpers for the few call sites, and `GET /metrics`.

Why a private `CollectorRegistry`: tests and `serve` build several apps in one interpreter; the global
default registry would refuse duplicate names and mix runs. Why helpers instead of raw metric calls at
the sites: label values must stay low-cardinality (a reason string carries numbers and customer words),
so they are normalised here, once.

Queue depth and lag are not counted by hand: they are read from Redis (XINFO GROUPS / XPENDING) when
Prometheus scrapes, so every web process reports the same truth about the shared streams, and a dead
worker cannot leave a stale gauge behind. Counters live in the process that does the work: in a split
deployment scrape the web process and every worker (`start_metrics_server` in the worker).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import redis.asyncio as aioredis
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from redis.exceptions import RedisError

from gateway import keys
from gateway.queues import read_queue

REGISTRY = CollectorRegistry(auto_describe=True)

_FAST = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_HUMAN = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 4 * 3600.0)

MESSAGES_IN = Counter(
    "switchboard_messages_in_total", "Customer messages accepted (stored and queued), by channel and duplicate flag.",
    ["channel", "duplicate"], registry=REGISTRY,
)
DECISIONS = Counter(
    "switchboard_decisions_total", "Routing decisions by route and the kind of their first reason.",
    ["route", "reason_kind"], registry=REGISTRY,
)
SLACK_CALLS = Histogram(
    "switchboard_slack_call_seconds", "Slack Web API call latency by method.", ["method"], buckets=_FAST,
    registry=REGISTRY,
)
SLACK_ERRORS = Counter(
    "switchboard_slack_call_errors_total", "Slack Web API calls that failed, by method and error.",
    ["method", "error"], registry=REGISTRY,
)
CHANNEL_CALLS = Histogram(
    "switchboard_customer_channel_call_seconds", "Latency of deliveries to customers (API callback, Twilio, ...).",
    ["channel"], buckets=_FAST, registry=REGISTRY,
)
CHANNEL_ERRORS = Counter(
    "switchboard_customer_channel_errors_total", "Deliveries to customers that failed, by channel.",
    ["channel"], registry=REGISTRY,
)
CLAIM_LATENCY = Histogram(
    "switchboard_claim_latency_seconds", "Seconds from a card being posted to an agent claiming it, by skill.",
    ["skill"], buckets=_HUMAN, registry=REGISTRY,
)
SLA_BREACHES = Counter(
    "switchboard_sla_breaches_total", "SLA ladder steps fired (warn, escalate, leads, nudge, reassign).",
    ["step"], registry=REGISTRY,
)
WORKER_ENTRIES = Counter(
    "switchboard_worker_entries_total", "Stream entries a worker finished: acked, failed (retried) or dead-lettered.",
    ["result"], registry=REGISTRY,
)
QUEUE_DEPTH = Gauge(
    "switchboard_queue_depth", "Entries of a partition not yet acknowledged (undelivered + pending).",
    ["partition"], registry=REGISTRY,
)
QUEUE_PENDING = Gauge(
    "switchboard_queue_pending", "Entries delivered to a worker but not acknowledged yet.", ["partition"],
    registry=REGISTRY,
)
LAG = Gauge(
    "switchboard_queue_lag_seconds", "Age of the oldest unacknowledged entry of a partition (0 when drained).",
    ["partition"], registry=REGISTRY,
)
DEAD_LETTERS = Gauge("switchboard_dead_letters", "Entries in the dead-letter stream.", registry=REGISTRY)
LEARNER_ACCURACY = Gauge(
    "switchboard_learner_rolling_accuracy", "Rolling accuracy of each online learner.", ["learner"],
    registry=REGISTRY,
)
LEARNER_WEIGHT = Gauge(
    "switchboard_learner_weight", "Weight of the model against the cold-start rules (0 = rules only).",
    ["learner"], registry=REGISTRY,
)
LEARNER_FALLBACK = Gauge(
    "switchboard_learner_fallback", "1 while a learner is below its accuracy floor and ignored.", ["learner"],
    registry=REGISTRY,
)
LEARNER_LABELS = Gauge("switchboard_learner_labels_seen", "Labels each learner has seen.", ["learner"],
                       registry=REGISTRY)
LEARNER_LEADER = Gauge(
    "switchboard_learner_leader", "1 while this learner process holds the snapshot lock, 0 on standby.",
    registry=REGISTRY,
)
LEARNER_OUTCOMES = Counter(
    "switchboard_learner_outcomes_total", "Outcomes this learner process consumed: learned, nothing to learn, parked.",
    ["result"], registry=REGISTRY,
)
LEARNER_PUBLISHED = Gauge(
    "switchboard_learner_last_publish_timestamp_seconds", "When this learner process last published a snapshot.",
    registry=REGISTRY,
)
LEARNER_VERSION = Gauge(
    "switchboard_learner_published_version", "The snapshot version this learner process last published.",
    registry=REGISTRY,
)
SCRAPE_ERRORS = Counter(
    "switchboard_metrics_scrape_errors_total", "Scrapes whose Redis read failed (queue gauges kept stale).",
    registry=REGISTRY,
)

# First words of the router's reasons → a bounded label. Anything new shows up as "other", never
# as a fresh time series per customer phrase.
_REASON_KINDS: tuple[tuple[str, str], ...] = (
    ("handoff", "handoff"),
    ("keyword", "keyword"),
    ("vip", "vip"),
    ("urgency", "urgency"),
    ("sentiment", "sentiment"),
    ("customer asked", "asked_for_human"),
    ("customer repeated", "repeated"),
    ("bot handed off", "bot_handoff"),
    ("bot answer", "bot_failed"),
    ("outside business hours", "after_hours"),
    ("automation paused", "automation_paused"),
    ("automation off", "automation_off"),
    ("automation success", "automation_score"),
    ("transferred", "transfer"),
    ("skill", "skill"),
)
_KNOWN_ROUTES = frozenset({"automation", "human"})


def reason_kind(reason: str) -> str:
    """A bounded label for a human-readable reason such as "urgency 0.91 ≥ 0.80"."""
    low = reason.strip().lower()
    for prefix, kind in _REASON_KINDS:
        if low.startswith(prefix):
            return kind
    if "previous agent" in low:
        return "previous_agent"
    return "other"


@functools.cache
def _child(metric: Any, *values: str) -> Any:
    """`metric.labels(...)`, kept: it takes a lock and checks the names on every call, several times per routed
    message. Only for labels of a bounded set (methods, channels, routes, results), so the cache is too."""
    return metric.labels(*values)


def message_in(channel: str, duplicate: bool = False) -> None:
    _child(MESSAGES_IN, channel, "true" if duplicate else "false").inc()


def decision(route: str, reasons: list[str] | tuple[str, ...]) -> None:
    _child(DECISIONS, route if route in _KNOWN_ROUTES else "other",
           reason_kind(reasons[0]) if reasons else "none").inc()


def _error_label(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    data = getattr(response, "data", None)
    if isinstance(data, Mapping) and isinstance(data.get("error"), str):
        return str(data["error"])[:40]
    status = getattr(response, "status_code", None)
    return f"http_{status}" if status else exc.__class__.__name__


@contextmanager
def slack_call(method: str) -> Iterator[None]:
    """Times one Slack Web API call; an exception is counted by Slack's error code and re-raised."""
    start = time.perf_counter()
    try:
        yield
    except Exception as exc:
        SLACK_ERRORS.labels(method=method, error=_error_label(exc)).inc()
        raise
    finally:
        _child(SLACK_CALLS, method).observe(time.perf_counter() - start)


@contextmanager
def channel_call(channel: str) -> Iterator[None]:
    """Times one delivery attempt to a customer channel; raised exceptions count as errors."""
    start = time.perf_counter()
    try:
        yield
    except Exception:
        CHANNEL_ERRORS.labels(channel=channel).inc()
        raise
    finally:
        _child(CHANNEL_CALLS, channel).observe(time.perf_counter() - start)


def channel_failed(channel: str) -> None:
    """For senders that report failure as a value (`Delivery(ok=False)`) instead of raising."""
    CHANNEL_ERRORS.labels(channel=channel).inc()


def claimed(skill: str | None, card_ts: str | None, now: float | None = None) -> None:
    """Card ts is Slack's own post time, so no extra bookkeeping is needed to know when it appeared."""
    if not card_ts:
        return
    try:
        posted = float(card_ts)
    except ValueError:
        return
    waited = (time.time() if now is None else now) - posted
    if waited >= 0:
        CLAIM_LATENCY.labels(skill=skill or "unknown").observe(waited)


def sla_breach(step: str) -> None:
    SLA_BREACHES.labels(step=step).inc()


def worker_entry(result: str) -> None:
    _child(WORKER_ENTRIES, result).inc()


@runtime_checkable
class HasHealth(Protocol):
    def health(self) -> Mapping[str, Mapping[str, Any]]: ...


def learner_health(scorer: HasHealth | None) -> None:
    """Copy `LearnerScorer.health()` into gauges; called at scrape time, so always current."""
    health = getattr(scorer, "health", None)
    if health is None:
        return
    for name, h in health().items():
        acc = h.get("rolling_accuracy")
        if acc is not None:
            LEARNER_ACCURACY.labels(learner=name).set(float(acc))
        LEARNER_WEIGHT.labels(learner=name).set(float(h.get("weight") or 0.0))
        LEARNER_FALLBACK.labels(learner=name).set(1.0 if h.get("fallback") else 0.0)
        LEARNER_LABELS.labels(learner=name).set(float(h.get("labels_seen") or 0))


async def sample_queues(redis: aioredis.Redis, partitions: int, now_ms: int | None = None) -> None:
    """Depth = undelivered (group lag) + pending; lag = age of the oldest entry not acknowledged."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    for p in range(partitions):
        state = await read_queue(redis, p, now)
        label = str(p)
        QUEUE_DEPTH.labels(partition=label).set(state.depth if state else 0)
        QUEUE_PENDING.labels(partition=label).set(state.pending if state else 0)
        LAG.labels(partition=label).set(state.lag_s if state else 0.0)
    DEAD_LETTERS.set(int(await redis.xlen(keys.DEAD)))


@dataclass
class MetricsSource:
    """What a scrape reads live; `scorer` is optional (the web process may not score)."""

    redis: aioredis.Redis
    partitions: int
    scorer: HasHealth | None = None

    @classmethod
    def of(cls, redis: aioredis.Redis, partitions: int, scorer: object) -> MetricsSource:
        """With the scorer's health gauges if it reports any (the learners do, the cold-start rules don't)."""
        return cls(redis, partitions, scorer if isinstance(scorer, HasHealth) else None)


METRICS_SOURCE: web.AppKey[MetricsSource] = web.AppKey("metrics_source", MetricsSource)


async def render(source: MetricsSource | None) -> bytes:
    if source is not None:
        try:
            await sample_queues(source.redis, source.partitions)
        except (RedisError, OSError):
            SCRAPE_ERRORS.inc()
        learner_health(source.scorer)
    return bytes(generate_latest(REGISTRY))


async def metrics_handler(request: web.Request) -> web.Response:
    """`GET /metrics`; a Redis outage still answers 200 with process counters (and a scrape error count)."""
    source = request.app.get(METRICS_SOURCE)
    body = await render(source)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def mount(app: web.Application, source: MetricsSource) -> None:
    """One call for any aiohttp app (the gateway, or a worker's small metrics server)."""
    app[METRICS_SOURCE] = source
    app.router.add_get("/metrics", metrics_handler)


async def start_metrics_server(source: MetricsSource, host: str, port: int) -> web.AppRunner:
    """For worker processes, which serve no HTTP otherwise; the caller cleans the runner up."""
    app = web.Application()
    mount(app, source)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
