"""Does the Redis behind `REDIS_URL` keep what the gateway acknowledges?

A customer's message is answered 202 only once it is in a Redis stream, and that promise is only as good as
Redis's persistence. A Redis run with its defaults (no append-only file, or snapshots every few minutes at most)
loses every message, conversation and claim written since its last snapshot when it restarts, and the gateway
cannot tell until then (`redis_state_lost`). So each process asks once at start and says so loudly, naming the
fix. `serve`'s own redis-server is always append-only with fsync on every write, and is not asked.

Managed Redis services often refuse `CONFIG`; `INFO persistence` is asked first and is allowed almost
everywhere. Nothing here stops start-up: a team may knowingly run a replica set with its own guarantees.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

log = structlog.get_logger(__name__)

LOSES: dict[str, str] = {
    "always": "nothing acknowledged",
    "everysec": "up to the last second of acknowledged messages if the Redis host itself crashes",
    "no": "up to about 30 s of acknowledged messages if the Redis host crashes (the OS decides when to write)",
}
"""What a crash loses, by `appendfsync`, when the append-only file is on."""
FIX = "set `appendonly yes` (and `appendfsync everysec` or `always`) on that Redis"


async def persistence(redis: aioredis.Redis) -> str | None:
    """"aof <appendfsync>", "none", or None when Redis would not say."""
    try:
        info: dict[str, Any] = await redis.info("persistence")
    except RedisError:
        return None
    if str(info.get("aof_enabled", "0")) != "1":
        return "none"
    try:
        fsync = (await redis.config_get("appendfsync")).get("appendfsync")
    except RedisError:  # CONFIG renamed or refused: on, but how often it syncs is unknown
        fsync = None
    return f"aof {fsync.decode() if isinstance(fsync, bytes) else fsync or 'unknown'}"


async def warn_if_forgetful(redis: aioredis.Redis) -> str | None:
    """Log what this Redis would lose in a crash; returns what `persistence` found."""
    found = await persistence(redis)
    if found is None:
        log.warning("redis_persistence_unknown",
                    message="Redis refused INFO persistence; make sure it keeps an append-only file", hint=FIX)
    elif found == "none":
        log.error("redis_not_persistent",
                  message="Redis keeps no append-only file: a Redis restart loses every message acknowledged "
                  "since its last snapshot (all of them, if it takes none), and the conversations and claims",
                  hint=FIX)
    else:
        fsync = found.removeprefix("aof ")
        log.info("redis_persistence", appendfsync=fsync, crash_loses=LOSES.get(fsync, "unknown"))
    return found
