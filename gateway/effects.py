"""Exactly-once side effects on top of at-least-once delivery.

Before an outside call (posting a card, a thread message) we write a `pending` marker; after it we
write the result. A worker that finds a marker still `pending` crashed mid-call, so it first asks the
outside system whether the effect already happened (Slack message metadata) before doing it again.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline as RedisPipeline

_PENDING = "pending:"


class Effects:
    def __init__(
        self, redis: aioredis.Redis, key: str, known: dict[str, str] | None = None, *, fresh: bool = False,
        since: float | None = None,
    ) -> None:
        """`known`: the log as read with the conversation (`ConversationStore.snapshot`), so checking
        an effect costs no round trip. Only this worker writes it while it holds the partition.

        `fresh`: the work's first delivery (a new stream entry). Nothing can have been done for it
        yet, so no `pending` marker is written, one round trip fewer per outside call. If we crash,
        the entry comes back as a redelivery (`since`: when it was queued), and then an effect with
        no result at all is treated as possibly done since that time and looked up first, as a
        marker would have made us do.
        """
        self.redis = redis
        self.key = key
        self.known = known
        self.fresh = fresh and known is not None
        self.since = since
        self.unsaved: dict[str, str] = {}

    async def get(self, name: str) -> str | None:
        if self.known is not None:
            return self.known.get(name)
        raw = await self.redis.hget(self.key, name)
        return raw.decode() if isinstance(raw, bytes) else raw

    async def _set(self, name: str, value: str) -> None:
        await self.redis.hset(self.key, name, value)
        if self.known is not None:
            self.known[name] = value

    async def once(
        self,
        name: str,
        do: Callable[[], Awaitable[str]],
        find: Callable[[float], Awaitable[str | None]],
        *,
        deferred: bool = False,
    ) -> tuple[str, bool]:
        """Result of the effect and whether this call performed it.

        `deferred`: keep the result for the caller's final write (`stage`) instead of a round trip of
        its own. Only for effects `find` can look up: until that write lands the log holds a
        `pending` marker or (first delivery) nothing, and a worker that takes the entry over finds
        the effect instead of repeating it.
        """
        current = await self.get(name)
        if current is not None and not current.startswith(_PENDING):
            return current, False
        maybe_since = float(current.removeprefix(_PENDING)) if current is not None else self.since
        if maybe_since is not None:
            found = await find(maybe_since)
            if found is not None:
                await self._set(name, found)
                return found, False
        if not self.fresh:
            await self._set(name, pending_now())
        result = await do()
        if deferred:
            self.unsaved[name] = result
            if self.known is not None:
                self.known[name] = result
        else:
            await self._set(name, result)
        return result, True

    def stage_pending(self, pipe: RedisPipeline, name: str) -> None:
        """Mark `name` as started on the caller's MULTI, so that the step deciding an effect is ours and the
        effect's marker land together: a crash after it redoes the effect instead of forgetting it."""
        marker = pending_now()
        pipe.hset(self.key, name, marker)
        if self.known is not None:
            self.known[name] = marker

    def stage(self, pipe: RedisPipeline) -> None:
        """Queue the deferred results on the caller's MULTI (again, if a WATCH made it retry)."""
        if self.unsaved:
            pipe.hset(self.key, mapping=dict(self.unsaved))  # type: ignore[arg-type]


def pending_now() -> str:
    return f"{_PENDING}{time.time():.6f}"


async def never_found(since: float) -> str | None:
    """For effects nobody can be asked about (a customer channel's sent message, a thread note, a template):
    nothing is found, so a crash mid-call may do it once more."""
    return None
