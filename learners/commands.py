"""`switchboard train` and `switchboard evaluate`: warm start from history, and honest replay.

`evaluate` is test-then-train: every message is predicted before it is learned, so the learning
curve is what production would have seen. File order is kept unless `--shuffle`, because a file
sorted by label (banking77's is) is a worst case worth seeing, not hiding.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import random
import shutil
import statistics
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.embedded_redis import EmbeddedRedis
from gateway.redis_conn import shown
from gateway.serve_lock import lock_holder
from gateway.settings import ConfigError, load_settings
from learners import report, snapshot
from learners.sentiment import CLASSES
from learners.skill import SkillLearner
from learners.urgency import LEVELS, urgency_target

log = structlog.get_logger("learners.commands")

CHECKPOINTS = (500, 1000, 2000, 5000)
TRAINABLE = ("skill", "sentiment", "urgency")


class LockKeeper:
    """Renews the snapshot lock while `train` works, so a long file is not mistaken for a dead writer.

    Why: the lock's TTL is short so that a crashed learner process is replaced quickly, and training a
    large file on the event loop blocks for much longer than that. Renewing at a third of the TTL leaves
    two renewals' slack. A renewal that fails means another writer may already hold the lock: `train`
    must stop at once rather than learn for minutes and then be refused at publish.
    """

    def __init__(self, lock: snapshot.RedisLock) -> None:
        self.lock = lock
        self.every = lock.ttl_ms / 3000
        self.last = time.monotonic()

    async def keep(self, force: bool = False) -> str | None:
        """None while the lock is ours (renewed if due, or `force`d); otherwise why it was lost."""
        if not force and time.monotonic() - self.last < self.every:
            return None
        try:
            renewed = await self.lock.renew()
        except RedisError as exc:
            return f"renewing it failed ({type(exc).__name__}: {exc})"
        if not renewed:
            return f"it expired or another writer took it (TTL {self.lock.ttl_ms / 1000:g}s)"
        self.last = time.monotonic()
        return None


class Progress:
    """A plain stderr progress bar; redrawn at most ~20 times a second so it costs nothing."""

    def __init__(self, total: int, label: str) -> None:
        self.total, self.label, self.last = max(1, total), label, 0.0

    def update(self, done: int) -> None:
        now = time.monotonic()
        if done < self.total and now - self.last < 0.05:
            return
        self.last = now
        filled = int(30 * done / self.total)
        sys.stderr.write(f"\r{self.label} [{'#' * filled}{'.' * (30 - filled)}] {done}/{self.total}")
        if done >= self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def read_rows(path: str, text_col: str, label_col: str) -> list[tuple[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = {text_col, label_col} - set(reader.fieldnames or ())
        if missing:
            raise SystemExit(f"{path}: no column(s) {', '.join(sorted(missing))}; has {reader.fieldnames}")
        return [(r[text_col], r[label_col]) for r in reader if r[text_col].strip() and r[label_col].strip()]


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else 0.0


def evaluate(args: argparse.Namespace) -> int:
    rows = read_rows(args.train, args.text_column, args.label_column)
    if args.shuffle:
        random.Random(args.seed).shuffle(rows)
    if args.limit:
        rows = rows[: args.limit]
    learner = SkillLearner()
    learner.tracker.log_drift = False
    correct, recent = 0, []
    cumulative_pts: list[tuple[int, float]] = []
    recent_pts: list[tuple[int, float]] = []
    predict_us: list[float] = []
    learn_us: list[float] = []
    every = max(1, len(rows) // 200)
    bar = Progress(len(rows), "evaluate")
    for i, (text, label) in enumerate(rows, 1):
        t0 = time.perf_counter()
        pred = learner.predict_one(text)
        t1 = time.perf_counter()
        learner.learn_one(text, label, y_pred=pred)
        t2 = time.perf_counter()
        predict_us.append((t1 - t0) * 1e6)
        learn_us.append((t2 - t1) * 1e6)
        hit = pred == label
        correct += hit
        recent.append(hit)
        if i % every == 0 or i == len(rows):
            window = recent[-500:]
            cumulative_pts.append((i, correct / i))
            recent_pts.append((i, sum(window) / len(window)))
        if i in CHECKPOINTS:
            print(f"after {i}: accuracy={correct / i:.4f} last500={sum(recent[-500:]) / len(recent[-500:]):.4f}")
        bar.update(i)
    n = len(rows)
    print(
        f"final ({n}): accuracy={correct / max(1, n):.4f} classes={len(learner.classes)} "
        f"drift_alarms={learner.tracker.drift_alarms}"
    )
    print(f"predict_us median={statistics.median(predict_us):.0f} p99={_pct(predict_us, 0.99):.0f}")
    print(f"learn_us median={statistics.median(learn_us):.0f} p99={_pct(learn_us, 0.99):.0f}")
    summary: dict[str, Any] = {
        "train file": args.train,
        "messages": n,
        "order": f"shuffled (seed {args.seed})" if args.shuffle else "file order",
        "prequential accuracy": f"{correct / max(1, n):.4f}",
        "predict µs (median / p99)": f"{statistics.median(predict_us):.0f} / {_pct(predict_us, 0.99):.0f}",
        "learn µs (median / p99)": f"{statistics.median(learn_us):.0f} / {_pct(learn_us, 0.99):.0f}",
    }
    holdout: float | None = None
    if args.test:
        test = read_rows(args.test, args.text_column, args.label_column)
        hits = sum(learner.predict_one(text) == label for text, label in test)
        holdout = hits / max(1, len(test))
        majority = Counter(label for _, label in test).most_common(1)[0][1] / max(1, len(test))
        summary |= {"test file": args.test, "holdout accuracy": f"{holdout:.4f}", "majority class": f"{majority:.4f}"}
        print(f"majority_class={majority:.4f}")
    if args.report:
        Path(args.report).write_text(
            report.render("Switchboard learner evaluation", summary, cumulative_pts, recent_pts, holdout),
            encoding="utf-8",
        )
        print(f"report={args.report}")
    if holdout is not None:
        print(f"holdout_accuracy={holdout:.4f}")
    return 0


def _label(learner: str, raw: str) -> Any:
    """Map a CSV label to the learner's class; ValueError for a row that cannot be used."""
    value = raw.strip().lower()
    if learner == "sentiment":
        if value not in CLASSES:
            raise ValueError(f"sentiment label {raw!r} is not one of {CLASSES}")
        return value
    if learner == "urgency":
        # The Resolve form's levels keep their figures ("high" is 0.75, not "urgent"); yes/no is a binary
        # "urgent?" column; a number is the figure itself (see `learners.urgency`).
        if value in LEVELS:
            return LEVELS[value]
        if value in {"true", "yes"}:
            return 1.0
        if value in {"false", "no"}:
            return 0.0
        return urgency_target(float(value))
    return value


def _lost(why: str, done: int, total: int) -> int:
    sys.stderr.write("\n")
    print(
        f"lost {snapshot.LOCK_KEY} after {done} of {total} rows: {why}; stopped, nothing published. "
        "Stop the learner process (or wait for it) and run train again",
        file=sys.stderr,
    )
    return 1


@contextlib.asynccontextmanager
async def redis_target(explicit: str | None) -> AsyncIterator[tuple[str, str]]:
    """The Redis `train` writes to and how to name it to the operator; `ConfigError` when there is none.

    The server's own rule (environment, then `.env`); in local mode, the data folder's private Redis,
    opened here. A fixed localhost:6379 default trained some other Redis and reported success. A
    running `serve` is refused rather than waited for: its learner holds the snapshot lock for as long
    as it runs, and its Redis is reachable only while it does.
    """
    if explicit:
        yield explicit, f"{shown(explicit)} (--redis-url)"
        return
    settings = load_settings()
    if settings.redis_url:
        yield settings.redis_url, f"{shown(settings.redis_url)} (REDIS_URL)"
        return
    folder = settings.data_dir.resolve()
    holder = lock_holder(settings.data_dir)
    if holder is not None and "serve" in holder:
        raise ConfigError(
            f"configuration error: REDIS_URL: not set, and {holder} is running on {folder}, whose learner holds "
            "the model snapshots: "
            "stop it, run train again (it then opens that folder's Redis itself), and start serve again"
        )
    if holder is not None:
        raise ConfigError(f"configuration error: REDIS_URL: not set, and {holder} is using {folder}; wait for it, "
                          "then retry")
    if shutil.which("redis-server") is None:
        raise ConfigError(
            "configuration error: REDIS_URL: not set, and local mode keeps no models without redis-server; "
            "install redis-server or set REDIS_URL"
        )
    embedded = EmbeddedRedis(settings.data_dir, role="train")
    await embedded.start()
    try:
        yield embedded.url, f"local mode's Redis in {folder / 'redis'}"
    finally:
        await embedded.stop()




async def _train(args: argparse.Namespace) -> int:
    rows = read_rows(args.file, args.text_column, args.label_column)
    named = "--redis-url" if args.redis_url else "REDIS_URL"
    try:
        async with redis_target(args.redis_url) as (url, target):
            try:
                return await _train_into(args, rows, url, target)
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                # The lock or the snapshot is written to Redis, so nothing was published; a traceback from
                # inside redis-py told the operator less than this line does.
                print(f"configuration error: {named}: cannot reach {shown(url)} ({str(exc).rstrip('.')}); "
                      "nothing trained", file=sys.stderr)
                return 2
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2


async def _train_into(args: argparse.Namespace, rows: list[tuple[str, str]], url: str, target: str) -> int:
    redis = aioredis.from_url(url)
    lock = snapshot.RedisLock(redis)
    try:
        deadline = time.monotonic() + args.lock_wait
        while not await lock.acquire():
            if time.monotonic() > deadline:
                print(
                    f"could not take {snapshot.LOCK_KEY} within {args.lock_wait}s: a learner process is "
                    "writing snapshots; stop it (or wait) and retry",
                    file=sys.stderr,
                )
                return 2
            await asyncio.sleep(0.5)
        keeper = LockKeeper(lock)  # counts from the acquisition: restoring a large snapshot takes time too
        restored = snapshot.restore(await snapshot.fetch(redis))
        for name, reason in restored.held.items():
            log.error("learner_snapshot_held", learner=name, reason=reason, during="train", action=snapshot.HOLD_HINT)
        if args.learner in restored.held:
            print(
                f"the stored {args.learner} snapshot cannot be read by this build ({restored.held[args.learner]}); "
                f"nothing trained. Run a build that reads it, or discard it first: "
                f"HDEL {snapshot.SNAPSHOT_KEY} {args.learner}",
                file=sys.stderr,
            )
            return 2
        learner = restored.learners[args.learner]
        learner.tracker.log_drift = False
        # A drift alarm means live accuracy got worse. A replay's alarms say nothing of the kind (a file
        # sorted by category, or relabelled half-way, can raise several), and counted in the snapshot they
        # were announced to the leads as "📉 Drift alarm" once serve loaded it; so the count published is
        # the one the live model had.
        live_alarms = learner.tracker.drift_alarms
        bad = 0
        bar = Progress(len(rows), f"train {args.learner}")
        for i, (text, raw) in enumerate(rows, 1):
            lost = await keeper.keep()
            if lost:
                return _lost(lost, i - 1, len(rows))
            try:
                learner.learn_one(text, _label(args.learner, raw))
            except ValueError:
                bad += 1
            bar.update(i)
        lost = await keeper.keep(force=True)  # pickling a large model for publish takes a while too
        if lost:
            return _lost(lost, len(rows), len(rows))
        learner.tracker.log_drift = True  # the live learner process should report drift again
        replay_alarms = learner.tracker.drift_alarms - live_alarms
        learner.tracker.drift_alarms = live_alarms
        # Only the trained learner: the others' blobs stay byte for byte (a held one is never replaced).
        version = await snapshot.publish(redis, {args.learner: learner}, lock)
        if version is None:
            print("lost the snapshot lock while training; nothing published", file=sys.stderr)
            return 1
        t = learner.tracker
        print(
            f"trained {args.learner} on {len(rows) - bad} rows ({bad} skipped); labels_seen={t.labels_seen} "
            f"rolling_accuracy={t.rolling_accuracy} drift_alarms={t.drift_alarms} "
            f"(replay raised {replay_alarms}, not counted)"
        )
        print(f"published snapshot version={version} to {target}")
        return 0
    finally:
        with contextlib.suppress(RedisError):  # unreachable Redis: the lock expires by itself
            await lock.release()
        await redis.aclose()


def train(args: argparse.Namespace) -> int:
    return asyncio.run(_train(args))


def register(subparsers: Any) -> None:
    """Add `train` and `evaluate` to the `switchboard` console script's subparsers."""
    t = subparsers.add_parser("train", help="warm-start a learner from a CSV of historical tickets")
    t.add_argument("file")
    t.add_argument("--text-column", default="text")
    t.add_argument("--label-column", required=True)
    t.add_argument("--learner", choices=TRAINABLE, required=True)
    t.add_argument(
        "--redis-url", default=None,
        help="default: REDIS_URL (environment or .env), else local mode's Redis in SWITCHBOARD_DATA_DIR, "
        "opened while `switchboard serve` is stopped",
    )
    t.add_argument("--lock-wait", type=float, default=30.0, help="seconds to wait for the snapshot lock")
    t.set_defaults(func=train)

    e = subparsers.add_parser("evaluate", help="test-then-train replay of a labelled CSV, with a report")
    e.add_argument("train")
    e.add_argument("--test")
    e.add_argument("--text-column", default="text")
    e.add_argument("--label-column", default="category")
    e.add_argument("--shuffle", action="store_true")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--limit", type=int, default=0, help="replay only the first N rows (after shuffling)")
    e.add_argument("--report", default="evaluate_report.html", help="HTML report path ('' to skip)")
    e.set_defaults(func=evaluate)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="switchboard")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
