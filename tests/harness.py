"""A real gateway for tests: aiohttp on a free port, real Redis, the Slack emulator mounted, a worker task."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from gateway import keys
from gateway.app import EMULATOR, create_app
from gateway.bot_followup import BotFollowUp
from gateway.policy_admin import Change, PolicyAdmin
from gateway.runtime import Runtime, build_runtime
from gateway.scheduler import ManualClock
from gateway.settings import Settings, load_settings
from gateway.worker import BACKOFF_BASE_S, BACKOFF_CAP_S, Worker
from integrations.slack.emulator import EMULATOR_STATE, EmulatorState
from integrations.webhook.signature import sign
from tests.conftest import free_port

API_SECRET = "test-api-secret-0123456789"


def make_settings(redis_url: str, data_dir: Path, **extra: Any) -> Settings:
    return load_settings(
        redis_url=redis_url,
        port=free_port(),
        data_dir=data_dir,
        api_secret=API_SECRET,
        partitions=4,
        lease_ms=1500,
        reclaim_idle_ms=500,
        **{"slack_channel_rate": 100.0, **extra},
    )


@dataclass
class Gateway:
    settings: Settings
    rt: Runtime
    runner: web.AppRunner
    app: web.Application
    session: aiohttp.ClientSession
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    worker_task: asyncio.Task[None] | None = None
    worker: Worker | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.port}"

    @property
    def slack(self) -> EmulatorState:
        """The mounted emulator's workspace (local mode only)."""
        return self.app[EMULATOR][EMULATOR_STATE]

    async def post_message(
        self, payload: dict[str, Any] | bytes, secret: str = API_SECRET, headers: dict[str, str] | None = None,
        timestamp: int | None = None,
    ) -> tuple[int, dict[str, Any]]:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        hdrs = {"Content-Type": "application/json", "X-Switchboard-Signature": sign(secret, body, timestamp)}
        hdrs.update(headers or {})
        async with self.session.post(f"{self.url}/v1/messages", data=body, headers=hdrs) as resp:
            return resp.status, await resp.json()

    def start_worker(self, backoff: tuple[float, float] | None = None) -> None:
        self.worker = Worker(self.rt.redis, self.rt.pipeline, self.settings.partitions, self.settings.lease_ms, 500,
                             backoff=backoff or (BACKOFF_BASE_S, BACKOFF_CAP_S))
        self.worker_task = asyncio.create_task(self.worker.run(self.stop))

    async def stop_worker(self) -> None:
        self.stop.set()
        if self.worker_task is not None:
            await asyncio.wait_for(self.worker_task, timeout=30)
        self.worker_task = None
        self.stop.clear()

    async def close(self) -> None:
        self.stop.set()
        if self.worker_task is not None:
            await asyncio.wait_for(self.worker_task, timeout=30)
        await self.session.close()
        await self.runner.cleanup()
        await self.rt.close()


async def start_gateway(settings: Settings, with_worker: bool = True, ensure_channels: bool = True) -> Gateway:
    rt = await build_runtime(settings, allow_embedded=False)
    app = create_app(rt)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", settings.port).start()
    if ensure_channels:
        await rt.desk.ensure_channels(rt.policy.channels())
    gw = Gateway(settings, rt, runner, app, aiohttp.ClientSession())
    if with_worker:
        gw.start_worker()
    return gw


async def post_on_another_partition(gw: Gateway, than: str, text: str, prefix: str, same: bool = False) -> str:
    """Post new customers' first messages until one lands on another partition than conversation `than` (`same`:
    on the same one); its conversation id. Partitions follow the person id the ingest draws, not the customer id,
    so a test that needs two partitions asks Redis where each went (the misses stay queued on theirs)."""
    taken = await gw.rt.redis.get(keys.conversation_partition(than))
    for i in range(64):
        status, body = await gw.post_message({"customer_id": f"{prefix}-{i}", "message_id": "m1", "text": text})
        assert status == 202, body
        if (await gw.rt.redis.get(keys.conversation_partition(body["conversation_id"])) == taken) is same:
            return str(body["conversation_id"])
    raise AssertionError(f"no customer landed {'on' if same else 'off'} the partition of {than}")


async def forget(gw: Gateway, ref: str, **extra: Any) -> dict[str, Any]:
    """`DELETE /v1/customers/<ref>` signed as an API client signs it (`extra`: `deep`); its report, 200 asserted."""
    signed = json.dumps({"customer": ref, **extra}).encode()
    async with gw.session.delete(f"{gw.url}/v1/customers/{ref}", data=signed,
                                 headers={"X-Switchboard-Signature": sign(API_SECRET, signed)}) as r:
        report: dict[str, Any] = await r.json()
        assert r.status == 200, report
    return report


async def eventually(check: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:  # noqa: ASYNC109
    """Poll until `check()` (sync or async) returns a truthy value; fail with the last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s (last value: {last!r})")


async def bot_answered(gw: Gateway, customer_id: str) -> tuple[BotFollowUp, ManualClock, str]:
    """A routine question the bot answers, its silence check on a manual clock: (check, clock, conv id)."""
    follow = gw.rt.pipeline.bot_followup
    assert follow is not None
    follow.clock = clock = ManualClock(time.time())
    status, body = await gw.post_message(
        {"customer_id": customer_id, "message_id": "m1", "text": "How long does shipping usually take?"})
    assert status == 202
    conv_id = str(body["conversation_id"])

    async def automated() -> bool:  # the worker saves the state just after the answer goes out
        conv = await gw.rt.store.load(conv_id)
        return conv is not None and conv.state.value == "automated"

    await eventually(automated)
    return follow, clock, conv_id


async def serve_app(app: web.Application) -> tuple[str, web.AppRunner]:
    """A stand-in server (a provider's API, a test app) on a free loopback port; caller cleans up."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return f"http://127.0.0.1:{port}", runner


async def transcript_of(redis: Any, customer_key: str) -> list[dict[str, Any]]:
    """The stored transcript of a channel customer's current conversation."""
    conv = await redis.get(keys.customer_conversation(customer_key))
    if conv is None:
        return []
    conv_id = conv.decode() if isinstance(conv, bytes) else conv
    return [json.loads(x) for x in await redis.lrange(keys.transcript(conv_id), 0, -1)]


async def outcomes(redis: Any) -> list[dict[str, Any]]:
    """Every outcome published so far, oldest first, as the learner reads them."""
    return [json.loads(fields[b"data"]) for _, fields in await redis.xrange("sb:outcomes")]


def cards(state: EmulatorState, channel: str) -> list[dict[str, Any]]:
    return [m for m in state.messages(channel) if (m.get("metadata") or {}).get("event_type") == "switchboard_card"]


async def sla_on_manual_clock(gw: Gateway) -> ManualClock:
    """The SLA ladder on a clock the test moves, counting around the clock: the default policy's business
    hours would stop it whenever the suite runs outside them (business time is tested on its own)."""
    clock = ManualClock(time.time())
    gw.rt.sla.clock = clock
    calendar = Change("sla clock calendar", lambda p: p.with_changes(
        escalation={**p.escalation.model_dump(mode="json"), "clock": "calendar"}))
    await PolicyAdmin(gw.rt.redis, gw.rt.policies).apply(calendar, "U0TEST")
    await gw.rt.policies.current(force=True)
    return clock


async def stored_card(gw: Gateway, channel: str) -> tuple[dict[str, Any], str]:
    """The channel's one card and its conversation's id, once the conversation is stored with it: the card is
    posted a moment before the worker saves the conversation, and an agent's click in between finds none."""
    (card,) = await eventually(lambda: cards(gw.slack, channel))
    conv_id: str = card["metadata"]["event_payload"]["conversation_id"]

    async def stored() -> bool:
        conv = await gw.rt.store.load(conv_id)
        return bool(conv and conv.card_ts)

    await eventually(stored)
    return card, conv_id
