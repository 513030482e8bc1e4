"""Sustained: a fixed rate of customer messages for a minute or more, and whether routing keeps up.

Usage: python bench/sustained.py [--rate 1000] [--seconds 60] [--workers 2] [--partitions 32]

`bench/e2e.py`'s closed loop is a burst of 3,000 messages: it says how fast the stack goes, not that it can
go on at that pace. Here the load is offered at a constant rate (open loop, as customers arrive) for the
whole run, and once a second the backlog is read from Redis: entries accepted but not yet routed into a
card, over every partition. A rate is sustained when that backlog stays bounded (it does not grow with the
run's length) and every accepted message has its card: the last line says "kept up" when the backlog as sending
stops is at most one second of messages and none is missing. Per 10 s window it prints messages sent, cards
posted, the backlog at the window's end and the ingest-to-card p50/p99 of the messages sent in it; then
CPU per routed message by process, as e2e.py does.

Same stack as e2e.py: the emulator, web and workers as their own processes, with the load generator and
Redis (fsync always), all on the same 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import time
from pathlib import Path

import aiohttp
import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import LOAD, by_role, cpu_seconds, pct, redis_server, spent, wait_port
from bench._http import run_uvloop
from bench.e2e import accepted, bare_ceiling, open_loop_to, prepared, shared_out, stack, wait_cards, warm_up
from gateway import keys
from gateway.streams import partitions_in_use

WINDOW_S = 10.0
IN_FLIGHT = 512
"""Requests the generator keeps open at most; past it sends fall behind the schedule, and `sent/s` shows it."""


async def backlog(client: aioredis.Redis, streams: list[str]) -> int:
    """Entries accepted and not yet acknowledged (so not yet carded), over every partition."""
    async with client.pipeline(transaction=False) as pipe:
        for key in streams:
            pipe.xinfo_groups(key)
        answers = await pipe.execute()
    return sum(int(g.get("lag") or 0) + int(g.get("pending") or 0) for groups in answers for g in groups)


CpuSample = tuple[float, dict[str, float]]


async def offer(url: str, rate: float, requests: list[bytes], redis_url: str, cpu: list[CpuSample],
                rewriting: list[float]) -> tuple[dict[str, float], list[tuple[float, int]], float]:
    """Send `requests` at `rate`/s; returns (conversation → time due, backlog samples, sent/s), and
    appends CPU seconds by process at each window's start to `cpu`, and to `rewriting` each second in which Redis
    was rewriting its append-only file (a forked child on the same cores, counted as Redis's once it exits)."""
    samples: list[tuple[float, int]] = []
    sender = open_loop_to(url, IN_FLIGHT)
    probe = aioredis.from_url(redis_url)
    streams = [keys.inbound_stream(p) for p in range(await partitions_in_use(probe))]
    done = asyncio.Event()

    async def sample() -> None:
        while not done.is_set():
            samples.append((time.time(), await backlog(probe, streams)))
            persistence = await probe.info("persistence")
            if persistence.get("aof_rewrite_in_progress") or persistence.get("rdb_bgsave_in_progress"):
                rewriting.append(time.time())
            if len(samples) % int(WINDOW_S) == 1:  # each window's start (the first sample is the run's)
                cpu.append((time.time(), cpu_seconds()))
            await asyncio.sleep(1.0)

    sampler = asyncio.create_task(sample())
    try:
        achieved = await sender.run(requests, rate)
    finally:
        done.set()
        await sampler
        sender.close()
        await probe.aclose()
    return accepted(sender, len(requests)), samples, achieved


ROLES = (("gateway.cli worker", "worker"), ("gateway.cli web", "web"), ("redis-server", "redis"),
         ("emulator", "emulator"), (LOAD, "load"))


def cpu_by_window(found: dict[str, float], cpu: list[CpuSample]) -> None:
    """CPU ms per card posted in each window, by process: a cost that grows with the run shows here."""
    print(f"{'window':>10} {'cards':>6} {'ms/card':>8} " + " ".join(f"{short:>8}" for _, short in ROLES))
    for (t0, c0), (t1, c1) in itertools.pairwise(cpu):
        n = sum(1 for ts in found.values() if t0 <= ts < t1)
        if not n:
            continue
        per = {role: (c1.get(role, 0.0) - c0.get(role, 0.0)) / n * 1000 for role, _ in ROLES}
        print(f"{f'{t0 - cpu[0][0]:.0f}-{t1 - cpu[0][0]:.0f} s':>10} {n:6d} {sum(per.values()):8.2f} "
              + " ".join(f"{per[role]:8.2f}" for role, _ in ROLES))


def report(sent: dict[str, float], found: dict[str, float], samples: list[tuple[float, int]], rate: float,
           rewriting: list[float]) -> None:
    start = min(sent.values())
    windows = int(max(sent.values()) - start) // int(WINDOW_S) + 1
    print(f"{'window':>10} {'sent/s':>8} {'cards/s':>8} {'backlog':>8} {'p50 ms':>8} {'p99 ms':>8} {'AOF rewrite':>12}")
    for w in range(windows):
        lo, hi = start + w * WINDOW_S, start + (w + 1) * WINDOW_S
        mine = [c for c, t in sent.items() if lo <= t < hi]
        lat = [(found[c] - sent[c]) * 1000 for c in mine if c in found]
        carded = sum(1 for ts in found.values() if lo <= ts < hi)
        at_end = [b for t, b in samples if t < hi]
        print(f"{f'{w * WINDOW_S:.0f}-{(w + 1) * WINDOW_S:.0f} s':>10} {len(mine) / WINDOW_S:8.0f} "
              f"{carded / WINDOW_S:8.0f} {at_end[-1] if at_end else 0:8d} "
              f"{pct(lat, 0.5) if lat else float('nan'):8.1f} {pct(lat, 0.99) if lat else float('nan'):8.1f} "
              f"{sum(1 for t in rewriting if lo <= t < hi):10d} s")
    lat = [(found[c] - t) * 1000 for c, t in sent.items() if c in found]
    span = max(found[c] for c in sent if c in found) - start
    half = len(samples) // 2
    first, second = max((b for _, b in samples[:half]), default=0), max((b for _, b in samples[half:]), default=0)
    print(f"offered {rate:.0f} msg/s: routed {len(lat) / span:.0f} msg/s over {span:.1f} s, {len(lat)} of {len(sent)} "
          f"accepted messages carded ({len(sent) - len(lat)} missing); backlog max {first} in the first half, "
          f"{second} in the second; ingest-to-card p50 {pct(lat, 0.5):.1f} ms, p99 {pct(lat, 0.99):.1f} ms, "
          f"max {max(lat):.1f} ms")
    last = samples[-1][1] if samples else 0
    verdict = "kept up" if last <= rate and len(lat) == len(sent) else "fell behind"
    print(f"{verdict}: backlog {last} when sending stopped ({last / rate:.1f} s of messages at this rate; kept up "
          f"means at most 1 s and every accepted message carded)")


async def run(url: str, api: str, rate: float, requests: list[bytes], redis_url: str, cpu: list[CpuSample],
              rewriting: list[float]) -> tuple[dict[str, float], dict[str, float], list[tuple[float, int]], float]:
    sent, samples, achieved = await offer(url, rate, requests, redis_url, cpu, rewriting)
    async with aiohttp.ClientSession() as session:
        found = await wait_cards(session, api, set(sent), timeout=300, redis_url=redis_url)
    return sent, found, samples, achieved


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--partitions", type=int, default=32)
    args = ap.parse_args()
    with redis_server() as redis_url:
        # The machine's speed of the moment: the same kind of machine varies by a third from hour to hour.
        print(f"bare aiohttp+XADD ceiling {bare_ceiling(redis_url, 4.0, 64):.0f} req/s (same Redis, fsync always)")
        sustain(redis_url, args)


def sustain(redis_url: str, args: argparse.Namespace) -> None:
    with stack(redis_url, args.workers, args.partitions) as (url, api, _):
        wait_port(int(url.rsplit(":", 1)[1]))
        run_uvloop(shared_out(redis_url, min(args.workers, args.partitions), args.partitions))
        run_uvloop(warm_up(url, api))
        requests = prepared(url, args.rate, int(args.rate * args.seconds), "sus")
        before = cpu_seconds()
        cpu: list[CpuSample] = []
        rewriting: list[float] = []
        sent, found, samples, achieved = run_uvloop(run(url, api, args.rate, requests, redis_url, cpu, rewriting))
        used = spent(before, cpu_seconds())
        print(f"{args.workers} workers, {args.partitions} partitions; sent {achieved:.0f} msg/s of {args.rate:.0f}")
        report(sent, found, samples, args.rate, rewriting)
        cpu_by_window(found, cpu)
        n = sum(1 for c in sent if c in found)
        print(f"CPU per routed message: {sum(used.values()) / n * 1000:.2f} ms in all = " + by_role(used, n))


if __name__ == "__main__":
    main()
