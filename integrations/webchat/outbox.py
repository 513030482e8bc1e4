"""The per-conversation outbound stream that carries everything the widget is shown.

Workers (which call `WebchatChannel.send`) run in other processes than the web process holding the
WebSocket, so the only shared medium is Redis: frames are appended to `sb:webchat:out:<conversation>`
with an integer id `<seq>-1`, and each socket reads from the seq its client last saw. That same id is
what makes resume-after-disconnect exact: nothing the client missed is skipped, nothing is replayed twice.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.exceptions import ClusterDownError, RedisError, ResponseError, TryAgainError

from gateway import csat
from gateway.domain import ChannelKind, Conversation, Message, utcnow
from gateway.ports import Delivery
from integrations.webchat.hub import wake_channel

log = structlog.get_logger(__name__)

PREFIX = "sb:webchat:"
KEEP = 1000
"""Frames kept per conversation; a client further behind than this reloads history from seq 0."""
TTL_S = 30 * 86400

# Seq = max(counter + 1, last stream id + 1) so a lost counter can never make XADD go backwards.
# A frame with a dedupe id is appended once: a worker that resends after a crash gets the first seq back.
_PUBLISH = """
if ARGV[2] ~= '' then
  local seen = redis.call('GET', KEYS[3])
  if seen then return tonumber(seen) end
end
local n = redis.call('INCR', KEYS[2])
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if last[1] then
  local top = tonumber(string.match(last[1][1], '^(%d+)'))
  if top >= n then n = top + 1; redis.call('SET', KEYS[2], n) end
end
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], n .. '-1', 'f', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
if ARGV[2] ~= '' then redis.call('SET', KEYS[3], n, 'EX', ARGV[4]) end
redis.call('PUBLISH', ARGV[5], n .. ' ' .. ARGV[1])
return n
"""


def out_stream(conversation_id: str) -> str:
    return f"{PREFIX}out:{conversation_id}"


def seq_key(conversation_id: str) -> str:
    return f"{PREFIX}seq:{conversation_id}"


def sent_key(conversation_id: str, frame_id: str) -> str:
    return f"{PREFIX}sent:{conversation_id}:{frame_id}"


def eta_key(conversation_id: str) -> str:
    return f"{PREFIX}eta:{conversation_id}"


def typing_key(conversation_id: str) -> str:
    return f"{PREFIX}typing:{conversation_id}"


def csat_key(conversation_id: str) -> str:
    return f"sb:csat:{conversation_id}"


async def publish(
    redis: aioredis.Redis, conversation_id: str, frame: dict[str, Any], dedupe_id: str | None = None
) -> int:
    """Append a frame for the widget; returns its seq (the first one, if `dedupe_id` was seen before)."""
    result = await redis.eval(
        _PUBLISH,
        3,
        out_stream(conversation_id),
        seq_key(conversation_id),
        sent_key(conversation_id, dedupe_id or "-"),
        json.dumps(frame, separators=(",", ":")),
        dedupe_id or "",
        KEEP,
        TTL_S,
        wake_channel(conversation_id),
    )
    return int(result)


async def read(
    redis: aioredis.Redis, conversation_id: str, after: int, block_ms: int | None = None, count: int = 100
) -> list[tuple[int, dict[str, Any]]]:
    """Frames with seq > `after` (without `block_ms`: at once, possibly none)."""
    reply: Any = await redis.xread({out_stream(conversation_id): f"{after}-1"}, count=count, block=block_ms)
    streams = list(reply.items()) if isinstance(reply, dict) else (reply or [])  # RESP3 / RESP2
    frames: list[tuple[int, dict[str, Any]]] = []
    for _stream, entries in streams:
        for entry_id, fields in entries:
            raw_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
            raw = fields.get(b"f") or fields.get("f")
            if raw is None:
                continue
            frames.append((int(raw_id.split("-", 1)[0]), json.loads(raw)))
    return frames


async def last_seq(redis: aioredis.Redis, conversation_id: str) -> int:
    """The newest frame's seq (0 for an empty or expired stream): no client can have seen anything past it.

    Read from the stream, not the counter: `_PUBLISH` lets the stream run ahead of a lost counter.
    """
    entries: Any = await redis.xrevrange(out_stream(conversation_id), "+", "-", count=1)
    if not entries:
        return 0
    raw_id = entries[0][0]
    return int((raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)).split("-", 1)[0])


class StreamBroken(Exception):
    """Redis refused to read a conversation's stream (not a blip): retrying cannot help."""


MOVED = "moved"
"""Frame type on a conversation's stream: the visitor went on in another conversation (`conversation_id`).
Never sent to the widget as it is: a socket that reads it follows the new conversation instead."""


class Moved(Exception):
    def __init__(self, conversation_id: str) -> None:
        super().__init__(conversation_id)
        self.conversation_id = conversation_id


def fatal(exc: BaseException) -> bool:
    """An error reply that repeats on every retry (bad id, wrong key type), as opposed to failover noise."""
    return isinstance(exc, ResponseError) and not isinstance(exc, ClusterDownError | TryAgainError)


def message_frame(message: Message, direction: str, client_id: str | None = None) -> dict[str, Any]:
    frame: dict[str, Any] = {
        "type": "message", "direction": direction, "id": message.id, "text": message.text,
        "author": message.author, "at": message.at.isoformat(),
    }
    if client_id:
        frame["client_id"] = client_id
    return frame


class WebchatChannel:
    """`CustomerChannel` for web chat: a reply is delivered once it is in the conversation's stream."""

    kind = ChannelKind.WEBCHAT

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis

    async def send(self, conversation: Conversation, message: Message) -> Delivery:
        try:
            seq = await publish(self.redis, conversation.id, message_frame(message, "out"), dedupe_id=message.id)
        except (RedisError, OSError) as exc:
            log.warning("webchat_send_failed", conversation_id=conversation.id, error=str(exc))
            return Delivery(ok=False, error=f"redis unavailable: {exc.__class__.__name__}")
        log.info("webchat_reply_queued", conversation_id=conversation.id, message_id=message.id, seq=seq)
        return Delivery(ok=True, external_id=str(seq))

    async def waiting(self, conversation: Conversation, minutes: int) -> None:
        """Shows "a person will be with you in about N minutes" in the widget, or, for a wait of hours (the desk
        is closed), the time a person will reply by: "about 2733 minutes" says nothing to a customer."""
        await set_eta(self.redis, conversation.id, minutes, ttl_s=max(ETA_TTL_S, minutes * 60))
        await publish_status(self.redis, conversation.id, reply_by=utcnow() + timedelta(minutes=minutes))
        log.info("webchat_wait_shown", conversation_id=conversation.id, eta_minutes=minutes)

    async def ask_rating(self, conversation: Conversation, request_id: str) -> bool:
        """The widget has its own rating prompt, so no "reply 1 to 5" text is needed."""
        await request_csat(self.redis, conversation.id, request_id=request_id)
        return True


async def publish_typing(redis: aioredis.Redis, conversation_id: str, author: str, typing: bool = True) -> int:
    """Agent typing indicator (shown for a few seconds by the widget, or until `typing=False`)."""
    return await publish(
        redis, conversation_id, {"type": "typing", "author": author, "typing": typing, "at": utcnow().isoformat()}
    )


async def publish_status(
    redis: aioredis.Redis, conversation_id: str, state: str = "waiting", reply_by: datetime | None = None
) -> int:
    """"A person will be with you in about N minutes": N is read from `set_eta` when the frame is pushed.

    `reply_by` (ISO, UTC) is the moment itself: the widget counts down to it, so a page reloaded an hour later
    is not told the first N again, and a wait past the desk's opening is shown as a time of day."""
    frame: dict[str, Any] = {"type": "status", "state": state, "at": utcnow().isoformat()}
    if reply_by is not None:
        frame["reply_by"] = reply_by.isoformat()
    return await publish(redis, conversation_id, frame)


ETA_TTL_S = 3600
"""How long a wait stays shown at least; a longer one (the desk is closed) stays until it is due."""


async def set_eta(redis: aioredis.Redis, conversation_id: str, minutes: int, ttl_s: int = ETA_TTL_S) -> None:
    await redis.set(eta_key(conversation_id), int(minutes), ex=ttl_s)


async def request_csat(redis: aioredis.Redis, conversation_id: str, request_id: str | None = None) -> int:
    """Ask the widget for a rating; pass `request_id` (e.g. the resolution id) to make a retry harmless."""
    await csat.ask(redis, conversation_id, request_id or "widget")
    return await publish(
        redis, conversation_id, {"type": "csat_request", "at": utcnow().isoformat()}, dedupe_id=request_id
    )


async def customer_typing(redis: aioredis.Redis, conversation_id: str) -> bool:
    """Whether the customer typed in the last few seconds (for the agent's side)."""
    return bool(await redis.exists(typing_key(conversation_id)))
