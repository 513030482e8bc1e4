"""`switchboard train` keeps the snapshot lock for as long as it trains, and stops once it loses it.

Why these matter: the lock's TTL is short (a dead learner is replaced quickly), while a large history
file trains for minutes. A train that never renewed was refused at publish after all that work, and a
standby learner process could take over and write snapshots meanwhile. The TTL is shrunk here and each
row slowed down, instead of training a large file.
"""

from __future__ import annotations

import csv
import functools
import time
from pathlib import Path
from typing import Any

import pytest
import redis as syncredis

from learners import commands, snapshot
from learners.sentiment import SentimentLearner

ROWS = 120
ROW_SECONDS = 0.005
"""120 rows at 5 ms each train for ~0.6 s: four times the 150 ms TTL below."""


def history(tmp_path: Path) -> Path:
    path = tmp_path / "tickets.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["body", "mood"])
        w.writerows(
            (f"message number {i} was {'great' if i % 2 else 'awful'}", ["positive", "negative"][i % 2 == 0])
            for i in range(ROWS)
        )
    return path


def slow_training(monkeypatch: pytest.MonkeyPatch, ttl_ms: int, on_row: Any = None) -> list[int]:
    """Short lock TTL and a slow `learn_one`; returns the list that counts rows learned."""
    monkeypatch.setattr(snapshot, "RedisLock", functools.partial(snapshot.RedisLock, ttl_ms=ttl_ms))
    learned: list[int] = []
    original = SentimentLearner.learn_one

    def learn_one(self: SentimentLearner, x: Any, y: Any, y_pred: Any = None) -> None:
        time.sleep(ROW_SECONDS)
        learned.append(1)
        if on_row is not None:
            on_row(len(learned))
        original(self, x, y, y_pred)

    monkeypatch.setattr(SentimentLearner, "learn_one", learn_one)
    return learned


def train(path: Path, redis_url: str) -> int:
    return commands.main(
        [
            "train",
            str(path),
            "--text-column",
            "body",
            "--label-column",
            "mood",
            "--learner",
            "sentiment",
            "--redis-url",
            redis_url,
        ]
    )


def test_training_longer_than_the_lock_ttl_still_publishes(
    sync_redis: syncredis.Redis, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    learned = slow_training(monkeypatch, ttl_ms=150)
    started = time.monotonic()
    rc = train(history(tmp_path), redis_url)
    out = capsys.readouterr()
    assert time.monotonic() - started > 0.15 * 3  # the run really outlived the TTL several times over
    assert rc == 0, out.err
    assert len(learned) == ROWS
    assert "published snapshot version=1" in out.out
    assert sync_redis.hget(snapshot.SNAPSHOT_KEY, "sentiment") is not None
    assert sync_redis.get(snapshot.LOCK_KEY) is None  # released at the end


def test_losing_the_lock_stops_training_at_once_and_publishes_nothing(
    sync_redis: syncredis.Redis, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def standby_takes_over(n: int) -> None:
        if n == 20:  # as if the lock had expired and a standby learner process had claimed it
            sync_redis.set(snapshot.LOCK_KEY, "standby-token", px=60_000)

    learned = slow_training(monkeypatch, ttl_ms=150, on_row=standby_takes_over)
    rc = train(history(tmp_path), redis_url)
    err = capsys.readouterr().err
    assert rc == 1
    assert "lost sb:learners:lock after" in err and "nothing published" in err
    assert len(learned) < 40  # stopped within a renewal period (50 ms = ~10 rows), not after all 120
    assert sync_redis.hget(snapshot.SNAPSHOT_KEY, "sentiment") is None
    assert sync_redis.get(snapshot.LOCK_KEY) == b"standby-token"  # the new holder's lock is left alone
