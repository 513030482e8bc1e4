"""Worker memory: RSS of a real worker process as it routes messages, plus the per-message hot path in-process.

Usage: python bench/memory.py [--worker-messages 1000000] [--waves 10] [--hot-messages 1000000] [--bound-mb 256]
1. A real `switchboard worker` routes waves of messages (Lua ingest → Redis stream → worker → emulator card);
   its RSS (VmRSS from /proc) is sampled after each wave. The emulator keeps only its newest messages per
   channel, so a million cards fit in this machine's memory (the emulator is not what is measured).
2. The per-message CPU path of a worker (score with the online learners, `decide()`, render the card)
   runs in this process on synthetic messages with unique words (so any vocabulary- or text-keyed cache
   would grow), sampling RSS every step.
For each part: RSS at the start and end, the growth per 100,000 messages over the second half (after
warm-up), and whether the last sample is within the stated bound. A full million takes about 40 minutes
here (one worker, ~400 routed/s with ingest on the same two cores); smaller runs extrapolate linearly.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import redis_server
from bench.e2e import TEXTS, settled, stack
from gateway.domain import ChannelKind, InboundMessage
from gateway.store import ConversationStore

WORDS = ("invoice refund charged error crash login parcel tracking account delete hello please urgent now "
         "angry unacceptable payment app order delivery password email broken slow").split()


def rss_mb(pid: int | None = None) -> float:
    status = Path(f"/proc/{pid or 'self'}/status").read_text()
    line = next(x for x in status.splitlines() if x.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def report(label: str, samples: list[tuple[int, float]], bound_mb: float) -> None:
    first, last = samples[0], samples[-1]
    mid = samples[len(samples) // 2]
    per_100k = (last[1] - mid[1]) / max(1, last[0] - mid[0]) * 100_000
    projected = last[1] + per_100k * max(0, 1_000_000 - last[0]) / 100_000
    verdict = "within" if max(rss for _, rss in samples) <= bound_mb else "OVER"
    print(f"{label}: RSS {first[1]:.1f} MB after {first[0]:,} → {last[1]:.1f} MB after {last[0]:,} messages; "
          f"second-half growth {per_100k:+.1f} MB per 100k; at 1,000,000: {projected:.0f} MB "
          f"({'measured' if last[0] >= 1_000_000 else 'linear projection'}); peak {verdict} the "
          f"{bound_mb:.0f} MB bound")


async def ingest_direct(redis_url: str, run: str, n: int, partitions: int, concurrency: int = 32) -> None:
    """Straight through the gateway's ingest script (the HTTP edge is measured elsewhere): a million
    HTTP requests from this same box would cost more time than the routing being measured."""
    redis = aioredis.from_url(redis_url)
    store = ConversationStore(redis, partitions)
    queue = iter(range(n))

    async def client() -> None:
        for i in queue:
            await store.ingest(InboundMessage(channel=ChannelKind.API, customer_id=f"{run}-c{i}",
                                              message_id=f"{run}-m{i}", text=TEXTS[i % len(TEXTS)]))

    await asyncio.gather(*(client() for _ in range(concurrency)))
    await redis.aclose()


def worker_part(total: int, waves: int, partitions: int = 8) -> list[tuple[int, float]]:
    """One real worker routes `total` messages in `waves`; its RSS after each wave."""
    samples: list[tuple[int, float]] = []
    keep = ("--max-messages-per-channel", "20000")  # the emulator's memory is not what is measured
    with redis_server(fsync="everysec") as redis_url, stack(redis_url, 0, partitions, keep) as (_, _, env):
        proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "worker"], env={**os.environ, **env},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            per_wave = total // waves
            start = time.perf_counter()
            for wave in range(waves):
                asyncio.run(ingest_direct(redis_url, f"mem{wave}", per_wave, partitions))
                asyncio.run(settled(redis_url, timeout=3600))
                samples.append((per_wave * (wave + 1), rss_mb(proc.pid)))
                rate = samples[-1][0] / (time.perf_counter() - start)
                print(f"  worker: {samples[-1][0]:>9,} routed, RSS {samples[-1][1]:6.1f} MB "
                      f"({rate:,.0f} msg/s incl. ingest)", flush=True)
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    return samples


def hot_path_part(total: int, step: int) -> list[tuple[int, float]]:
    from gateway.domain import ChannelKind, Conversation, Customer, Direction, Message, new_id
    from integrations.slack.card import ContextCard
    from learners.service import LearnerScorer
    from router.decide import decide
    from router.policy import load_policy

    policy, scorer = load_policy(), LearnerScorer()
    seeds, skills = policy.skill_keywords(), tuple(policy.skills)
    rng = random.Random(1)
    samples: list[tuple[int, float]] = []
    start = time.perf_counter()
    for i in range(1, total + 1):
        # A never-seen word per message: a cache keyed by text or token would grow without bound.
        text = " ".join(rng.choice(WORDS) for _ in range(10)) + f" ref{i} user{i % 9973}"
        conv = Conversation(
            id=new_id("conv"), customer=Customer(key=f"api:c{i}", channel=ChannelKind.API, external_id=f"c{i}"),
            messages=[Message(id=new_id("msg"), direction=Direction.INBOUND, channel=ChannelKind.API, text=text)],
        )
        conv.scores = scorer.score(text, seeds)
        decision = decide(conv, conv.scores, policy)
        if decision.channel:
            ContextCard(conv, decision, conv.scores, [], None, skills).to_dicts()
        if i % step == 0:
            samples.append((i, rss_mb()))
            print(f"  hot path: {i:>9,} messages, RSS {samples[-1][1]:6.1f} MB, "
                  f"{i / (time.perf_counter() - start):,.0f} msg/s", flush=True)
    return samples


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker-messages", type=int, default=6000)
    ap.add_argument("--waves", type=int, default=6)
    ap.add_argument("--hot-messages", type=int, default=150_000)
    ap.add_argument("--bound-mb", type=float, default=256.0, help="the RSS bound a worker must stay within")
    args = ap.parse_args()
    worker = worker_part(args.worker_messages, args.waves)
    hot = hot_path_part(args.hot_messages, max(1, args.hot_messages // 6))
    report("worker process (real routing)", worker, args.bound_mb)
    report("hot path in-process (score+decide+card)", hot, args.bound_mb)


if __name__ == "__main__":
    main()
