"""Worker scale-out: the same backlog drained by 1, 2 and 4 worker processes against one Redis.

Usage: python bench/workers.py [--messages 3000] [--partitions 8]
The backlog is ingested through the real HTTP API first (no worker running), then N workers start;
throughput is cards per second between the first and the last card (start-up excluded), and the
wall time from spawning the workers to the last card (start-up included). Every process (web,
emulator, Redis, N workers) shares this machine's cores, so this shows contention, not a cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import redis_server
from bench.e2e import SECRET, body, cards, settled, stack
from integrations.webhook.signature import sign


async def ingest(url: str, run: str, n: int, concurrency: int = 64) -> None:
    sem = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession() as session:

        async def one(i: int) -> None:
            raw = body(run, i)
            headers = {"Content-Type": "application/json", "X-Switchboard-Signature": sign(SECRET, raw)}
            async with sem, session.post(f"{url}/v1/messages", data=raw, headers=headers) as resp:
                assert resp.status == 202, await resp.text()

        await asyncio.gather(*(one(i) for i in range(n)))


async def drain(api: str, redis_url: str, known: int, n: int, timeout: float = 300.0) -> list[float]:  # noqa: ASYNC109
    """Card timestamps of this run (cards beyond those already on the emulator), once all n are there.

    Waits on Redis (every entry acknowledged) and reads the emulator once: paging its history while the
    workers run would take CPU from the very processes being measured."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            await settled(redis_url, max(0.0, deadline - time.monotonic()))
            found = sorted((await cards(session, api)).values())
            if len(found) >= known + n or time.monotonic() > deadline:
                return found[known:]
            await asyncio.sleep(0.5)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=6000)
    ap.add_argument("--partitions", type=int, default=8)
    args = ap.parse_args()
    rows = []
    for n_workers in (1, 2, 4):
        with redis_server() as redis_url, stack(redis_url, 0, args.partitions) as (url, api, env):
            asyncio.run(ingest(url, f"w{n_workers}", args.messages))
            spawned = time.time()
            procs = [subprocess.Popen([sys.executable, "-m", "gateway.cli", "worker"], env={**os.environ, **env},
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                     for _ in range(n_workers)]
            try:
                ts = asyncio.run(drain(api, redis_url, 0, args.messages))
            finally:
                for p in procs:
                    p.terminate()
                for p in procs:
                    p.wait(timeout=20)
            steady = len(ts) / (ts[-1] - ts[0]) if len(ts) > 1 else 0.0
            wall = len(ts) / (ts[-1] - spawned) if ts else 0.0
            rows.append((n_workers, len(ts), steady, wall))
            print(f"{n_workers} worker(s): {len(ts)} cards, {steady:6.0f} cards/s first→last card, "
                  f"{wall:6.0f} cards/s incl. start-up")
    base = rows[0][2] or 1.0
    print("scaling vs 1 worker: " + ", ".join(f"{n}→{s / base:.2f}x" for n, _, s, _ in rows))


if __name__ == "__main__":
    main()
