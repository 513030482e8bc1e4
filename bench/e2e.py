"""End to end: customer messages through `POST /v1/messages` into cards on the Slack emulator.

Usage: python bench/e2e.py [--workers 2] [--seconds 4] [--concurrency 64]
Prints the same run's bare aiohttp+XADD ceiling, the sustained routed rate (closed loop, every message
a card), then p50/p95/p99 ingest-to-card latency under open-loop load at 50 %, 80 % and 100 % of that
rate and at 200 msg/s. Ingest-to-card = card `ts` (the emulator's clock at chat.postMessage) minus the
moment the POST was due (in the open loop: a request waiting for the generator's connection waits on the clock);
same host, same clock.

The emulator runs as its own process (Slack is outside the gateway); every process shares the 2 cores.
Automation is off so every message is a card, and the desk's per-channel pacing is raised to its 1,000/s
maximum (real Slack allows ~1/s per channel: with it the desk, not the gateway, is the bottleneck; at 100/s
the five channels still capped each worker near 400 cards/s with a core to spare).

32 stream partitions, not the default 8: a worker works its partitions at once, each in order, and each message
holds its partition for three round trips (Redis, Slack, Redis) and an fsync, so with 8 the run measured the
partitions' latency (~800/s with CPU idle), not the gateway's CPU. `--partitions 8` shows it.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import aiohttp
import redis.asyncio as aioredis
from yarl import URL

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import by_role, cpu_seconds, free_port, pct, process, redis_server, spent, wait_port
from bench._http import Client, OpenLoop, request, run_uvloop
from bench.ingest import BARE, SECRET, load
from gateway import keys
from gateway.streams import partitions_in_use
from integrations.webhook.signature import sign

CHANNELS = ("support-billing", "support-technical", "support-shipping", "support-account", "support-general")
TEXTS = (
    "I was charged twice on my invoice, please refund the payment",
    "the app crashes with an error when I login, not working",
    "where is my parcel? the tracking for my order says nothing",
    "please delete my account profile and verify my email",
    "hello, I have a question about your opening hours",
)
TOKEN = "xoxb-emulator"


@contextmanager
def stack(redis_url: str, workers: int, partitions: int = 8, emulator_args: tuple[str, ...] = ()
          ) -> Iterator[tuple[str, str, dict[str, str]]]:
    """Emulator, web and `workers` worker processes against one Redis; yields (web url, emulator api, env)."""
    emu_port, web_port = free_port(), free_port()
    data = tempfile.mkdtemp(prefix="sb-e2e-")
    env = {"REDIS_URL": redis_url, "PORT": str(web_port), "SWITCHBOARD_API_SECRET": SECRET,
           "SWITCHBOARD_LOG_FORMAT": "json", "SWITCHBOARD_LOG_LEVEL": "warning", "SWITCHBOARD_DATA_DIR": data,
           "SLACK_API_URL": f"http://127.0.0.1:{emu_port}/api/", "SWITCHBOARD_AUTOMATION": "off",
           "SLACK_CHANNEL_RATE": "1000", "SWITCHBOARD_PARTITIONS": str(partitions)}
    with ExitStack() as es:
        es.enter_context(process([sys.executable, "-m", "integrations.slack.emulator", "--port", str(emu_port),
                                  *emulator_args], emu_port))
        es.enter_context(process([sys.executable, "-m", "gateway.cli", "web"], web_port, env))
        for _ in range(workers):
            es.enter_context(spawn_worker(env))
        yield f"http://127.0.0.1:{web_port}", f"http://127.0.0.1:{emu_port}/api/", env


@contextmanager
def spawn_worker(env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "worker"], env={**os.environ, **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def body(run: str, i: int) -> bytes:
    return json.dumps({"customer_id": f"{run}-c{i}", "message_id": f"{run}-m{i}",
                       "text": TEXTS[i % len(TEXTS)]}).encode()


async def cards(session: aiohttp.ClientSession, api: str) -> dict[str, float]:
    """conversation_id → card ts (seconds) for every card on the emulator, all pages."""
    out: dict[str, float] = {}
    for channel in CHANNELS:
        cursor = ""
        while True:
            params = {"channel": channel, "limit": "1000", "include_all_metadata": "true", "cursor": cursor}
            async with session.post(f"{api}conversations.history", data=params,
                                    headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
                page = await resp.json()
            for m in page.get("messages", []):
                meta = m.get("metadata") or {}
                if meta.get("event_type") == "switchboard_card":
                    out[meta["event_payload"]["conversation_id"]] = float(m["ts"])
            cursor = (page.get("response_metadata") or {}).get("next_cursor") or ""
            if not cursor:
                break
    return out


async def settled(redis_url: str, timeout: float) -> None:  # noqa: ASYNC109
    """Every stream entry read and acknowledged (so every card posted): a cheap poll of Redis instead of
    paging the emulator's whole history, which cost the shared cores more than the routing it measured."""
    client = aioredis.from_url(redis_url)
    deadline = time.monotonic() + timeout
    try:
        # The partitions' streams by name: a SCAN of the whole keyspace every 0.2 s cost Redis about a
        # tenth of the CPU it spent on the routing being measured.
        streams = [keys.inbound_stream(p) for p in range(await partitions_in_use(client))]
        while time.monotonic() < deadline:
            busy = 0
            for key in streams:
                for group in await client.xinfo_groups(key):
                    busy += int(group.get("lag") or 0) + int(group.get("pending") or 0)
            if busy == 0:
                return
            await asyncio.sleep(0.2)
    finally:
        await client.aclose()


async def shared_out(redis_url: str, n_workers: int, partitions: int, timeout: float = 60.0) -> None:  # noqa: ASYNC109
    """Wait until every partition is leased and `n_workers` distinct workers hold them."""
    client = aioredis.from_url(redis_url)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            owners = await client.mget([keys.lease(p) for p in range(partitions)])
            if all(owners) and len(set(owners)) == n_workers:
                return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"{n_workers} workers did not share the partitions within {timeout} s")
    finally:
        await client.aclose()


async def wait_cards(session: aiohttp.ClientSession, api: str, expected: set[str], timeout: float,  # noqa: ASYNC109
                     redis_url: str | None = None) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while True:
        if redis_url:
            await settled(redis_url, max(0.0, deadline - time.monotonic()))
        found = await cards(session, api)
        if expected <= found.keys() or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.5)


def _address(url: str) -> tuple[str, int]:
    target = URL(url)
    return target.host or "127.0.0.1", target.port or 80


def _client(url: str, limit: int) -> Client:
    return Client(*_address(url), limit)


def open_loop_to(url: str, limit: int) -> OpenLoop:
    return OpenLoop(*_address(url), limit)


async def _post(client: Client, raw: bytes) -> tuple[int, dict[str, str]]:
    head = client.head("/v1/messages", {"X-Switchboard-Signature": sign(SECRET, raw)})
    status, answer = await client.post(head, raw)
    return status, json.loads(answer)


async def closed_loop(url: str, api: str, seconds: float, concurrency: int, run: str, cap: int,
                      redis_url: str | None = None) -> tuple[float, float, int, float]:
    """As fast as the stack goes: (accepted/s, routed cards/s, cards) over the whole send-to-last-card span.

    Capped at `cap` messages: ingest outruns routing by far, and a huge backlog only lengthens the drain.
    """
    counter = itertools.count()
    sent: dict[str, float] = {}
    deadline = time.perf_counter() + seconds
    client = _client(url, concurrency)

    async def one_client() -> None:
        while time.perf_counter() < deadline:
            i = next(counter)
            if i >= cap:
                return
            status, answer = await _post(client, body(run, i))
            if status == 202:
                sent[answer["conversation_id"]] = time.time()

    start_wall, start = time.time(), time.perf_counter()
    try:
        await asyncio.gather(*(one_client() for _ in range(concurrency)))
    finally:
        await client.close()
    ingest_s = time.perf_counter() - start
    async with aiohttp.ClientSession() as session:
        found = await wait_cards(session, api, set(sent), timeout=120, redis_url=redis_url)
    mine = [found[c] for c in sent if c in found]
    routed_span = max(mine) - start_wall if mine else float("inf")
    # Workers alone, once the web process is idle: what routing costs without ingest competing for CPU.
    ingest_end = start_wall + ingest_s
    after = [t for t in mine if t > ingest_end]
    drain = len(after) / (max(after) - ingest_end) if len(after) > 1 else 0.0
    return len(sent) / ingest_s, len(mine) / routed_span, len(mine), drain


def prepared(url: str, rate: float, n: int, run: str) -> list[bytes]:
    """Every request, signed for the second it is due (within the API's 300 s window), built before sending
    starts: building and signing ~20 µs each would otherwise be paid on the cores being measured."""
    shape = _client(url, 1)
    first = int(time.time())
    out = []
    for i in range(n):
        raw = body(run, i)
        signature = sign(SECRET, raw, first + int(i / rate))
        out.append(request(shape.head("/v1/messages", {"X-Switchboard-Signature": signature}), raw))
    return out


def accepted(sender: OpenLoop, offered: int) -> dict[str, float]:
    """conversation id → the time each request answered 202 was due, read after the run: what a customer's client
    would parse is not the gateway's cost, and not to be paid on the cores measuring it."""
    sent = {json.loads(answer)["conversation_id"]: t for _, status, answer, t, _ in sender.answers if status == 202}
    if len(sent) < offered:
        print(f"{offered - len(sent)} of {offered} requests not accepted ({len(sender.failed)} dropped connections)")
    return sent


async def open_loop(url: str, api: str, rate: float, seconds: float, run: str, redis_url: str | None = None
                    ) -> tuple[list[float], int, float]:
    """Constant arrival rate (not closed loop, so queueing shows up in latency); returns latencies in ms."""
    requests = prepared(url, rate, int(rate * seconds), run)
    sender = open_loop_to(url, 512)
    try:
        achieved = await sender.run(requests, rate)
    finally:
        sender.close()
    sent = accepted(sender, len(requests))
    async with aiohttp.ClientSession() as session:
        found = await wait_cards(session, api, set(sent), timeout=120, redis_url=redis_url)
    latencies = [(found[c] - t) * 1000 for c, t in sent.items() if c in found]
    return latencies, len(sent) - len(latencies), achieved


def bare_ceiling(redis_url: str, seconds: float, concurrency: int) -> float:
    port = free_port()
    with process([sys.executable, "-c", BARE, str(port), redis_url], port):
        return run_uvloop(load(f"http://127.0.0.1:{port}/v1/messages", seconds, concurrency, "bare"))


async def warm_up(url: str, api: str) -> None:
    """First cards create channels and warm imports/connections; not part of any figure."""
    await open_loop(url, api, 20, 1.0, "warm")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--cap", type=int, default=3000, help="most messages in the closed-loop phase")
    ap.add_argument("--partitions", type=int, default=32, help="stream partitions (SWITCHBOARD_PARTITIONS)")
    args = ap.parse_args()
    with redis_server() as redis_url:
        bare = bare_ceiling(redis_url, args.seconds, args.concurrency)
        print(f"bare aiohttp+XADD ceiling          {bare:8.0f} req/s (same Redis, fsync always)")
        with stack(redis_url, args.workers, args.partitions) as (url, api, _):
            wait_port(int(url.rsplit(":", 1)[1]))
            run_uvloop(shared_out(redis_url, min(args.workers, args.partitions), args.partitions))
            run_uvloop(warm_up(url, api))
            before = cpu_seconds()
            accepted, routed, n, drain = run_uvloop(
                closed_loop(url, api, args.seconds, args.concurrency, "sat", args.cap, redis_url))
            used = spent(before, cpu_seconds())
            print(f"closed loop, {args.workers} workers, {args.partitions} partitions:  "
                  f"accepted {accepted:6.0f} msg/s, "
                  f"routed into cards {routed:6.0f} msg/s sustained ({n} cards); "
                  f"backlog drain after ingest stopped {drain:6.0f} msg/s")
            print(f"ratio accepted/bare ceiling        {accepted / bare:.2f}; routed/bare {routed / bare:.2f}")
            total = sum(used.values())
            print(f"CPU per routed message, closed loop ({n} cards): {total / n * 1000:.2f} ms in all "
                  f"(2 cores: at most {2 / (total / n):,.0f} msg/s if nothing else ran) = " + by_role(used, n))
            own = sum(sec for role, sec in used.items() if role in ("gateway.cli web", "gateway.cli worker",
                                                                    "redis-server"))
            print(f"gateway's own share (web + workers + Redis): {own / n * 1000:.2f} ms per message, so at most "
                  f"{2 / (own / n):,.0f} msg/s on 2 cores of its own (Slack and the load elsewhere)")
            for label, rate in (("50%", routed * 0.5), ("80%", routed * 0.8), ("100%", routed), ("200/s", 200.0)):
                run = "r" + label.replace("%", "pct").replace("/", "")  # ids allow [A-Za-z0-9_.:@+=/-] only
                lat, missing, achieved = run_uvloop(open_loop(url, api, rate, args.seconds, run, redis_url))
                if not lat:
                    print(f"open loop {label:>5}: no cards measured ({missing} missing)")
                    continue
                print(f"open loop {label:>5} = {rate:6.0f} msg/s (sent {achieved:6.0f}/s): "
                      f"p50 {pct(lat, 0.50):7.1f} ms  p95 {pct(lat, 0.95):7.1f} ms  p99 {pct(lat, 0.99):7.1f} ms"
                      f"  ({len(lat)} cards, {missing} missing)")


if __name__ == "__main__":
    main()
