"""SIGKILL the learner mid-update: every outcome it had learned but not yet snapshotted is learned again by
the next leader (entries are acknowledged only once a published snapshot contains them)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import redis.asyncio as aioredis

from gateway.domain import Outcome
from learners.outcomes import OUTCOMES_STREAM, publish_outcome
from learners.service import LearnerScorer
from tests.faults import ledger
from tests.harness import eventually

N = 40


def spawn(redis_url: str, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "REDIS_URL": redis_url, "SWITCHBOARD_LOG_FORMAT": "json",
           "SWITCHBOARD_DATA_DIR": str(log.parent)}
    return subprocess.Popen([sys.executable, "-m", "gateway.cli", "learner"], env=env, stdout=subprocess.DEVNULL,
                            stderr=log.open("wb"))


async def _pending(redis: aioredis.Redis) -> int:
    try:
        return int((await redis.xpending(OUTCOMES_STREAM, "learners"))["pending"])
    except Exception:
        return 0


async def test_learner_killed_mid_update_loses_no_outcome(
    redis: aioredis.Redis, redis_url: str, tmp_path: Path
) -> None:
    first = spawn(redis_url, tmp_path / "first.log")
    second: subprocess.Popen[bytes] | None = None
    try:
        await eventually(lambda: b"learner_leader" in (tmp_path / "first.log").read_bytes(), timeout=20)
        for i in range(N):
            await publish_outcome(redis, Outcome(conversation_id=f"conv_{i}", kind="resolved", final_skill="billing",
                                                 text=f"I was charged twice on invoice {i}"))

        async def all_read() -> bool:
            return await _pending(redis) == N

        await eventually(all_read, timeout=20)  # learned, not yet in a snapshot, so still pending
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)

        second = spawn(redis_url, tmp_path / "second.log")
        await eventually(lambda: b"learner_leader" in (tmp_path / "second.log").read_bytes(), timeout=40)
        second.send_signal(signal.SIGTERM)  # a clean stop publishes the final snapshot
        assert second.wait(timeout=20) == 0
        scorer = LearnerScorer()
        assert await scorer.refresh(redis)
        seen = scorer.health()["skill"]["labels_seen"]
        ledger.record("learner SIGKILL mid-update", N, N - seen, max(0, seen - N), "re-learned from pending entries")
        assert seen == N
        assert await _pending(redis) == 0
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
