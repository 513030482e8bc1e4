"""`GET /webchat/ws?since=<seq>` (token in `Sec-WebSocket-Protocol`, see endpoint.py): one WebSocket per conversation.

Two loops share the socket: the reader pushes frames from the conversation's Redis stream (so replies
written by workers in other processes arrive), and the receiver handles the client's frames. A client
message is acknowledged only after the durable ingest, which is what lets the widget re-send anything
unacknowledged after a drop, and the store's per-message-id dedupe keeps that re-send from doubling.
Sockets are capped per visitor, client address and process, and idle or dead ones are closed (limits.py);
refusing one has its own budget (refusals.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
import structlog
from aiohttp import WSCloseCode, WSMsgType, web
from pydantic import ValidationError
from redis.exceptions import RedisError

from gateway import csat
from gateway.domain import MAX_TEXT, ChannelKind, CustomerProfile, InboundMessage, Message
from gateway.domain import Direction as Dir
from gateway.store import Accepted
from integrations.webchat import outbox, tokens
from integrations.webchat.config import WebchatConfig
from integrations.webchat.hub import Live, WakeHub
from integrations.webchat.limits import IDLE, IdleTimer, WindowRate, message_key
from integrations.webchat.outbox import MOVED, Moved, StreamBroken, fatal
from integrations.webchat.protocol import CLIENT_FRAME, Csat, Ping, SendMessage, Typing, error_frame
from integrations.webchat.session import reservation_key

log = structlog.get_logger(__name__)

Ingest = Callable[[InboundMessage], Awaitable[Accepted]]
MAX_FRAME_BYTES = 64 * 1024
FRAME_SLACK = 50
"""Frames of any kind allowed per socket per rate window on top of 5× the message limit; past that the
socket is closed (typing floods, scripted abuse) — the message rate limit alone only answers errors."""
TYPING_TTL_S = 6
POLL_S = 5.0
"""Fallback stream read when nothing is published (pub/sub may drop a message; the stream never does)."""
BATCH = 100


class ChatSocket:
    """One connected widget; lives exactly as long as its WebSocket."""

    def __init__(
        self, ws: web.WebSocketResponse, claims: tokens.SessionClaims, redis: aioredis.Redis, ingest: Ingest,
        config: WebchatConfig, hub: WakeHub,
    ) -> None:
        self.hub = hub
        self.ws = ws
        self.redis = redis
        self.ingest = ingest
        self.config = config
        self.customer_id = claims.vid
        self.profile = CustomerProfile(name=claims.name, email=claims.email)
        self.conversation_id = claims.cid
        self.lock = asyncio.Lock()
        self.reader: asyncio.Task[None] | None = None
        self.stopping = False
        self.kept = False
        """whether the session's conversation reservation was made permanent (after the first message)"""
        self.frames: deque[float] = deque()
        self.rate = WindowRate(redis, message_key, config.rate_messages, config.rate_window_s)
        self.last_typing = 0.0
        self.log = log.bind(conversation_id=claims.cid)
        self.handlers: dict[type, Callable[[Any], Awaitable[None]]] = {
            SendMessage: self.on_message, Typing: self.on_typing, Csat: self.on_csat, Ping: self.on_ping,
        }

    async def send(self, frame: dict[str, Any]) -> None:
        if self.ws.closed:
            return
        async with self.lock:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.ws.send_str(json.dumps(frame, separators=(",", ":")))

    async def run(self, since: int) -> None:
        try:
            since = await self.resume_point(self.conversation_id, since)
        except StreamBroken:
            await self.broken()
            return
        # idle_timeout tells the widget how often to ping while its page is visible.
        await self.send({"type": "hello", "conversation_id": self.conversation_id, "since": since,
                         "idle_timeout": self.config.idle_timeout_s})
        self.follow(self.conversation_id, since)
        idle = IdleTimer(self.config.idle_timeout_s, self.idle_close)
        try:
            async for msg in self.ws:
                if msg.type is WSMsgType.TEXT:
                    idle.touch()
                    if not self.within_budget():
                        await self.send(error_frame("too_many_frames", "too many frames; reconnect later"))
                        await self.ws.close(code=1008, message=b"too many frames")
                        break
                    await self.dispatch(msg.data)
                elif msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                    break
        finally:
            await idle.stop()
            await self.stop_reader()

    async def idle_close(self) -> None:
        self.log.info("webchat_socket_idle", idle_timeout=self.config.idle_timeout_s)
        await self.ws.close(code=IDLE, message=b"idle")

    def within_budget(self) -> bool:
        limit, window = 5 * self.config.rate_messages + FRAME_SLACK, float(self.config.rate_window_s)
        now = time.monotonic()
        self.frames.append(now)
        while self.frames and now - self.frames[0] > window:
            self.frames.popleft()
        return len(self.frames) <= limit

    async def dispatch(self, data: str) -> None:
        try:
            frame = CLIENT_FRAME.validate_json(data)
        except ValidationError as exc:
            problems = [{"field": ".".join(map(str, e["loc"])), "problem": e["msg"]} for e in exc.errors()[:5]]
            await self.send(error_frame("invalid_frame", "the frame is not valid", details=problems))
            return
        await self.handlers[type(frame)](frame)

    # --- outbound: the conversation's stream -> socket -------------------------------------------

    def follow(self, conversation_id: str, since: int) -> None:
        self.stopping = False
        self.conversation_id = conversation_id
        self.log = log.bind(conversation_id=conversation_id)
        self.reader = asyncio.create_task(self.pump(conversation_id, since))

    async def stop_reader(self) -> None:
        self.stopping = True
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.reader
            self.reader = None

    async def resume_point(self, conversation_id: str, since: int) -> int:
        """`since`, or 0 when it is past the end of this conversation's stream.

        A seq past the end was not issued for this conversation: the widget kept the previous conversation's
        position after another tab started a new one, and resuming from it would skip the new stream's first
        frames. The hello frame tells the widget the seq actually used.
        """
        if since == 0:
            return 0
        try:
            top = await outbox.last_seq(self.redis, conversation_id)
        except (RedisError, OSError) as exc:
            if fatal(exc):
                raise StreamBroken(str(exc)) from exc
            return since  # cannot check now: catch_up retries the read itself
        if since > top:
            self.log.warning("webchat_since_reset", since=since, last_seq=top)
            return 0
        return since

    async def broken(self) -> None:
        await self.send(error_frame("stream_unavailable", "this conversation cannot be read; reconnect later"))
        await self.ws.close(code=WSCloseCode.INTERNAL_ERROR, message=b"stream unavailable")

    async def pump(self, conversation_id: str, after: int) -> None:
        live = await self.hub.watch(conversation_id)  # before the first read, so nothing falls in between
        try:
            await self.follow_stream(conversation_id, after, live)
        except StreamBroken:
            await self.broken()
        except Moved as moved:  # another tab of this visitor started a new conversation: follow it here too
            await self.send({"type": "conversation", "conversation_id": moved.conversation_id})
            self.follow(moved.conversation_id, 0)
        finally:
            await self.hub.unwatch(conversation_id, live)

    async def follow_stream(self, conversation_id: str, after: int, live: asyncio.Queue[Live | None]) -> None:
        after = await self.catch_up(conversation_id, after)
        while not self.ws.closed and not self.stopping:
            item: Live | None = None
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow our cancellation when an item
            # lands at the same moment, leaving the handler alive until the next poll.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(POLL_S):
                    item = await live.get()
            if item is None or item[0] > after + 1:  # poll, lost publish, or overflow: read the stream
                after = await self.catch_up(conversation_id, after)
            elif item[0] == after + 1:
                await self.push(conversation_id, *item)
                after = item[0]

    async def catch_up(self, conversation_id: str, after: int) -> int:
        """Push everything after `after` from the stream; returns the last seq pushed.

        Connection trouble is retried with back-off; an error reply is not (it repeats forever and the socket
        would never get another frame), it raises StreamBroken.
        """
        failures = 0
        while not self.ws.closed and not self.stopping:
            try:
                frames = await outbox.read(self.redis, conversation_id, after, count=BATCH)
            except (RedisError, OSError) as exc:
                if fatal(exc):
                    self.log.error("webchat_stream_broken", error=str(exc), after=after)
                    raise StreamBroken(str(exc)) from exc
                failures += 1
                self.log.warning("webchat_stream_read_failed", error=str(exc), attempt=failures)
                await asyncio.sleep(min(0.2 * 2**failures, 5.0))
                continue
            for seq, frame in frames:
                await self.push(conversation_id, seq, frame)
                after = seq
            if len(frames) < BATCH:
                break
        return after

    async def push(self, conversation_id: str, seq: int, frame: dict[str, Any]) -> None:
        if frame.get("type") == MOVED:
            if frame.get("conversation_id") not in (None, conversation_id):
                raise Moved(str(frame["conversation_id"]))
            return
        if frame.get("type") == "status" and "eta_minutes" not in frame:
            frame = {**frame, "eta_minutes": await self.eta(conversation_id)}
        await self.send({**frame, "seq": seq})

    async def eta(self, conversation_id: str) -> int | None:
        try:
            raw = await self.redis.get(outbox.eta_key(conversation_id))
            return int(raw) if raw is not None else None
        except (RedisError, OSError, ValueError):
            return None

    # --- inbound: client frames ----------------------------------------------------------------

    async def on_message(self, frame: SendMessage) -> None:
        cid = frame.client_id
        if len(frame.text) > MAX_TEXT:
            await self.send(error_frame(
                "message_too_long", f"messages can be at most {MAX_TEXT} characters", client_id=cid, limit=MAX_TEXT,
            ))
            return
        try:
            # Counted in Redis, per visitor: reconnecting does not reset the budget.
            retry_after = await self.rate.retry_after(self.customer_id)
        except (RedisError, OSError):
            await self.unavailable(cid)
            return
        if retry_after:
            await self.send(error_frame(
                "rate_limited",
                f"at most {self.config.rate_messages} messages every {self.config.rate_window_s} s; "
                f"this one will be sent again in {retry_after} s",
                client_id=cid, retry_after=retry_after,
            ))
            return
        try:
            inbound = InboundMessage(
                channel=ChannelKind.WEBCHAT, customer_id=self.customer_id,
                message_id=f"{self.customer_id}/{cid}", text=frame.text, customer=self.profile,
            )
        except ValidationError:
            await self.send(error_frame("invalid_message", "the message is empty", client_id=cid))
            return
        try:
            accepted = await self.ingest(inbound)
            # The echo is what the widget's history is rebuilt from after a reload, so it is stored before the
            # ack too: a failure here is answered "unavailable", the widget re-sends, the store answers
            # "duplicate" and the echo's dedupe id keeps it to one frame.
            echo = Message(id=accepted.message_id, direction=Dir.INBOUND, channel=ChannelKind.WEBCHAT,
                           text=inbound.text, author=self.profile.name, at=inbound.received_at)
            await outbox.publish(self.redis, accepted.conversation_id, outbox.message_frame(echo, "in", cid),
                                 dedupe_id=accepted.message_id)
        except (RedisError, OSError) as exc:
            # Any Redis error, not only connection trouble: READONLY during a failover or OOM used to escape
            # and kill the socket without a word, and the widget reconnected and re-sent blindly.
            self.log.error("ingest_unavailable", error=str(exc), error_type=type(exc).__name__)
            await self.unavailable(cid)
            return
        if not self.kept:
            with contextlib.suppress(RedisError, OSError):
                await self.redis.persist(reservation_key(self.customer_id))
                self.kept = True
        if accepted.conversation_id != self.conversation_id:
            await self.stop_reader()
            previous = self.conversation_id
            await self.send({"type": "conversation", "conversation_id": accepted.conversation_id})
            self.follow(accepted.conversation_id, 0)  # after the frame: the widget resets its seq on it
            # The visitor's other tabs and devices follow the old stream and ping, so they never reconnect:
            # told there, they move too (agent replies in the new conversation showed only after they typed).
            with contextlib.suppress(RedisError, OSError):
                await outbox.publish(self.redis, previous, {"type": MOVED, "conversation_id": accepted.conversation_id},
                                     dedupe_id=f"moved:{accepted.conversation_id}")
        await self.send({
            "type": "ack", "client_id": cid, "message_id": accepted.message_id,
            "conversation_id": accepted.conversation_id, "duplicate": accepted.duplicate,
        })
        self.log.info("message_accepted", channel="webchat", message_id=accepted.message_id,
                      duplicate=accepted.duplicate)

    async def unavailable(self, client_id: str) -> None:
        await self.send(error_frame(
            "unavailable", "storage is unavailable; the message will be sent again", client_id=client_id,
            retry_after=2,
        ))

    async def on_typing(self, frame: Typing) -> None:
        now = time.monotonic()
        if frame.typing and now - self.last_typing < 1.0:
            return
        self.last_typing = now if frame.typing else 0.0
        with contextlib.suppress(RedisError, OSError):
            if frame.typing:
                await self.redis.set(outbox.typing_key(self.conversation_id), self.customer_id, ex=TYPING_TTL_S)
            else:
                await self.redis.delete(outbox.typing_key(self.conversation_id))

    async def on_csat(self, frame: Csat) -> None:
        """Counted once per request (see `csat.widget_rating`); the answer carries the rating that is kept, so
        a second or re-sent rating is not shown to the customer as if it had replaced the first."""
        try:
            rated = await csat.widget_rating(self.redis, self.conversation_id, frame.score, {
                "score": frame.score, "at": int(time.time()), "customer": self.customer_id,
                "comment": (frame.comment or "").strip(),
            })
        except (RedisError, OSError):
            await self.send(error_frame("unavailable", "your rating could not be saved; please try again"))
            return
        self.log.info("webchat_csat", score=frame.score, counted=rated.counted, kept=rated.score)
        if rated.counted:
            try:
                # In the stream so a reload (which replays the csat_request) and the customer's other tabs hide
                # the prompt instead of asking again. Only for a rating that counted: one that did not changes
                # nothing another tab should show.
                await outbox.publish(self.redis, self.conversation_id, {"type": "csat_rated", "score": rated.score})
            except (RedisError, OSError) as exc:
                self.log.warning("webchat_csat_rated_unpublished", error=str(exc))
        await self.send({"type": "csat_ack", "score": rated.score, "counted": rated.counted})

    async def on_ping(self, frame: Ping) -> None:
        await self.send({"type": "pong"})
