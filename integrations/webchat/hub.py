"""Wake-ups for chat sockets: one pub/sub connection per web process instead of one blocked XREAD per socket.

A blocking XREAD per socket holds a Redis connection per open chat (a thousand chats, a thousand
connections, per web process). Instead every publish also PUBLISHes on `sb:webchat:wake:<conversation>`,
this hub subscribes to the conversations that have a socket here, and a woken socket reads its stream
without blocking. Pub/sub is fire-and-forget, so sockets also poll every few seconds: a lost wake-up
delays a frame, it never loses one (the stream is the source of truth).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

log = structlog.get_logger(__name__)

WAKE_PREFIX = "sb:webchat:wake:"
IDLE_CHANNEL = f"{WAKE_PREFIX}-"
"""Always subscribed, so the pub/sub connection exists before the first socket arrives."""


def wake_channel(conversation_id: str) -> str:
    return f"{WAKE_PREFIX}{conversation_id}"


class WakeHub:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self.waiters: dict[str, set[asyncio.Event]] = {}
        self.pubsub: Any = None
        self.task: asyncio.Task[None] | None = None
        self.lock = asyncio.Lock()

    async def watch(self, conversation_id: str) -> asyncio.Event:
        event = asyncio.Event()
        async with self.lock:
            await self._ensure_started()
            waiters = self.waiters.setdefault(conversation_id, set())
            waiters.add(event)
            if len(waiters) == 1:
                with contextlib.suppress(RedisError, OSError):
                    await self.pubsub.subscribe(wake_channel(conversation_id))
        return event

    async def unwatch(self, conversation_id: str, event: asyncio.Event) -> None:
        async with self.lock:
            waiters = self.waiters.get(conversation_id)
            if waiters is None:
                return
            waiters.discard(event)
            if not waiters:
                del self.waiters[conversation_id]
                if self.pubsub is None:
                    return
                with contextlib.suppress(RedisError, OSError):
                    await self.pubsub.unsubscribe(wake_channel(conversation_id))

    async def _ensure_started(self) -> None:
        if self.task is None or self.task.done():
            self.pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            await self.pubsub.subscribe(IDLE_CHANNEL)
            self.task = asyncio.create_task(self._listen())

    def _wake_all(self) -> None:
        for waiters in self.waiters.values():
            for event in waiters:
                event.set()

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
                    for event in self.waiters.get(channel.removeprefix(WAKE_PREFIX), ()):
                        event.set()
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
