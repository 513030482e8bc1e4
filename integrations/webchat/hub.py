"""Live frames for chat sockets: one pub/sub connection per web process, not one blocked XREAD per socket.

A blocking XREAD per socket holds a Redis connection per open chat (a thousand chats, a thousand
connections, per web process). Instead every publish also PUBLISHes `"<seq> <frame>"` on
`sb:webchat:wake:<conversation>`; this hub subscribes to the conversations that have a socket here and
hands each frame to their sockets. Pub/sub is fire-and-forget, so a socket that sees a gap in seq (or
hears nothing for a few seconds) reads the stream itself: a lost publish delays a frame, never loses one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

log = structlog.get_logger(__name__)

WAKE_PREFIX = "sb:webchat:wake:"
IDLE_CHANNEL = f"{WAKE_PREFIX}-"
"""Always subscribed, so the pub/sub connection exists before the first socket arrives."""


QUEUE_MAX = 256
"""A socket this far behind reads the stream instead (the gap in seq tells it to)."""

Live = tuple[int, dict[str, Any]]


def wake_channel(conversation_id: str) -> str:
    return f"{WAKE_PREFIX}{conversation_id}"


def parse(data: bytes | str) -> Live | None:
    raw = data.decode() if isinstance(data, bytes) else str(data)
    seq, _, frame = raw.partition(" ")
    try:
        return int(seq), json.loads(frame)
    except ValueError:
        return None


def offer(queue: asyncio.Queue[Live | None], item: Live | None) -> None:
    with contextlib.suppress(asyncio.QueueFull):
        queue.put_nowait(item)


class WakeHub:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self.waiters: dict[str, set[asyncio.Queue[Live | None]]] = {}
        self.subscribed: set[str] = set()
        """Conversations whose channel is known to be subscribed. Deciding by this, not by "first watcher",
        means a subscribe that failed or was cancelled is retried by the next socket instead of leaving the
        conversation on the 5 s poll for as long as any socket for it stays open."""
        self.pubsub: Any = None
        self.task: asyncio.Task[None] | None = None
        self.lock = asyncio.Lock()

    async def watch(self, conversation_id: str) -> asyncio.Queue[Live | None]:
        """Frames published from now on (None = "something may have been missed: read the stream").

        Cancellation-safe: a socket that closes while its SUBSCRIBE is in flight leaves no watcher behind
        (the caller never got the queue, so it could not unwatch it).
        """
        event: asyncio.Queue[Live | None] = asyncio.Queue(maxsize=QUEUE_MAX)
        self.waiters.setdefault(conversation_id, set()).add(event)
        try:
            async with self.lock:
                await self._ensure_started()
                await self._subscribe(conversation_id)
        except BaseException:
            self._forget(conversation_id, event)
            raise
        return event

    async def unwatch(self, conversation_id: str, event: asyncio.Queue[Live | None]) -> None:
        if not self._forget(conversation_id, event):
            return
        async with self.lock:
            if conversation_id in self.waiters or conversation_id not in self.subscribed:
                return  # a new watcher came meanwhile, or the channel was never subscribed
            self.subscribed.discard(conversation_id)
            if self.pubsub is None:
                return
            with contextlib.suppress(RedisError, OSError):
                await self.pubsub.unsubscribe(wake_channel(conversation_id))

    def _forget(self, conversation_id: str, event: asyncio.Queue[Live | None]) -> bool:
        """Drop one watcher without awaiting (so it happens even under cancellation); True if it was the last."""
        waiters = self.waiters.get(conversation_id)
        if waiters is None:
            return False
        waiters.discard(event)
        if waiters:
            return False
        del self.waiters[conversation_id]
        return True

    async def _subscribe(self, conversation_id: str) -> None:
        if self.pubsub is None or conversation_id in self.subscribed:
            return
        try:
            await self.pubsub.subscribe(wake_channel(conversation_id))
        except (RedisError, OSError) as exc:
            log.warning("webchat_wake_subscribe_failed", conversation_id=conversation_id, error=str(exc))
            return
        self.subscribed.add(conversation_id)

    async def _ensure_started(self) -> None:
        """Start the listener; if Redis is down, sockets poll until a later `watch` starts it."""
        if self.task is not None and not self.task.done():
            return
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        wanted = set(self.waiters)
        try:
            await pubsub.subscribe(IDLE_CHANNEL, *(wake_channel(c) for c in wanted))
        except (RedisError, OSError) as exc:
            log.warning("webchat_wake_listener_unavailable", error=str(exc))
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()
            return
        self.pubsub = pubsub
        self.subscribed = wanted
        self.task = asyncio.create_task(self._listen())

    def _wake_all(self) -> None:
        for waiters in self.waiters.values():
            for queue in waiters:
                offer(queue, None)

    async def _listen(self) -> None:
        failures = 0
        while True:
            try:
                async for message in self.pubsub.listen():
                    failures = 0
                    if message.get("type") != "message":
                        continue
                    channel = message["channel"]
                    channel = channel.decode() if isinstance(channel, bytes) else str(channel)
                    live = parse(message["data"])
                    for queue in self.waiters.get(channel.removeprefix(WAKE_PREFIX), ()):
                        offer(queue, live)
                await asyncio.sleep(0.1)  # listen() ended (no subscriptions left): do not spin
            except (RedisError, OSError) as exc:
                failures += 1
                log.warning("webchat_wake_listener_failed", error=str(exc), attempt=failures)
                self._wake_all()  # anything published meanwhile is read by the woken sockets
                await asyncio.sleep(min(0.2 * 2**failures, 5.0))

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None
        if self.pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await self.pubsub.aclose()
            self.pubsub = None
        self.subscribed.clear()
