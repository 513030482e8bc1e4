"""Worker scale-out: the same backlog drained by 1, 2 and 4 worker processes against one Redis.

Usage: python bench/workers.py [--messages 6000] [--partitions 32]
N workers start and share the partitions, are paused (SIGSTOP) while the backlog goes in through the
real HTTP API, then resumed; throughput is cards per second from the resume to the last card. Every
process (web, emulator, Redis, N workers) shares this machine's cores, so this shows contention, not a
cluster. 32 partitions as in `bench/e2e.py` (which says why): with 8, each worker waits on its few partitions'
round trips instead of using its CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import redis_server
from bench.e2e import SECRET, body, cards, settled, shared_out, stack
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
    ap.add_argument("--partitions", type=int, default=32)
    args = ap.parse_args()
    rows = []
    for n_workers in (1, 2, 4):
        with redis_server() as redis_url, stack(redis_url, 0, args.partitions) as (url, api, env):
            procs = [subprocess.Popen([sys.executable, "-m", "gateway.cli", "worker"], env={**os.environ, **env},
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                     for _ in range(n_workers)]
            try:
                # Started and holding their fair share first, then paused while the backlog goes in, so
                # the figure is N warm workers draining, not imports and hand-overs.
                asyncio.run(shared_out(redis_url, n_workers, args.partitions))
                for p in procs:
                    p.send_signal(signal.SIGSTOP)
                asyncio.run(ingest(url, f"w{n_workers}", args.messages))
                resumed = time.time()
                for p in procs:
                    p.send_signal(signal.SIGCONT)
                ts = asyncio.run(drain(api, redis_url, 0, args.messages))
            finally:
                for p in procs:
                    p.send_signal(signal.SIGCONT)
                    p.terminate()
                for p in procs:
                    p.wait(timeout=20)
            rate = len(ts) / (ts[-1] - resumed) if ts else 0.0
            rows.append((n_workers, len(ts), rate, rate))
            print(f"{n_workers} worker(s): {len(ts)} cards, {rate:6.0f} cards/s (backlog drain, warm workers)")
    base = rows[0][2] or 1.0
    print("scaling vs 1 worker: " + ", ".join(f"{n}→{s / base:.2f}x" for n, _, s, _ in rows))


if __name__ == "__main__":
    main()
