"""The in-memory workspace behind the emulator.

Everything lives in plain dicts shaped like Slack's own JSON so the Web API layer can hand
copies straight back to clients, and so tests can assert on exactly what Slack would show.
All mutation is synchronous: aiohttp runs handlers on one event loop and nothing here awaits,
so each Web API call is atomic without locks.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import math
import re
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .config import EmulatedUser, EmulatorConfig

if TYPE_CHECKING:
    from .oauth import Grant


class SlackError(Exception):
    """A Slack-style failure; the app layer turns it into ``{"ok": false, "error": ...}``.

    Raised rather than returned so handlers stay linear and validation helpers can bail out
    from any depth, exactly where the real API would reject the call.
    """

    def __init__(
        self, error: str, *, status: int = 200, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(error)
        self.error = error
        self.status = status
        self.headers = headers or {}
        self.extra = extra


@dataclass(frozen=True)
class RecordedCall:
    """One Web API call as the emulator saw it, so tests can assert on what the gateway sent.

    The response is kept as the JSON bytes that went out (serialised once, for the wire and for this
    record) and parsed only when a test looks: copying every answer cost more than answering. Bytes, not
    text: decoding each answer cost time, and a card with an emoji made a str four bytes per character.
    """

    method: str
    params: dict[str, Any]
    response_body: bytes
    at: float
    status: int = 200

    @property
    def response_text(self) -> str:
        return self.response_body.decode()

    @property
    def response(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.response_body)
        return parsed


@dataclass
class _Fault:
    status: int
    remaining: int
    retry_after: int | None


@dataclass
class Channel:
    """A public or private channel; ``messages`` holds top-level posts and thread replies in ts order."""

    id: str
    name: str
    created: int
    is_private: bool = False
    creator: str = ""
    messages: list[dict[str, Any]] = field(default_factory=list)
    by_ts: dict[str, dict[str, Any]] = field(default_factory=dict)

    def as_slack(self, *, is_general: bool = False, num_members: int = 0) -> dict[str, Any]:
        """Slack's conversation object, trimmed to the fields clients actually read."""
        empty_topic = {"value": "", "creator": "", "last_set": 0}
        return {
            "id": self.id,
            "name": self.name,
            "name_normalized": self.name,
            "is_channel": not self.is_private,
            "is_group": self.is_private,
            "is_im": False,
            "is_mpim": False,
            "is_private": self.is_private,
            "is_archived": False,
            "is_general": is_general,
            "is_member": True,
            "is_shared": False,
            "is_ext_shared": False,
            "is_org_shared": False,
            "created": self.created,
            "creator": self.creator,
            "unlinked": 0,
            "topic": dict(empty_topic),
            "purpose": dict(empty_topic),
            "num_members": num_members,
        }


# The shape of trigger ids this emulator issues; only those are checked strictly, so hand-written
# ids in older tests ("123.456") keep working while a stale desk trigger fails like on Slack.
_TRIGGER_RE = re.compile(r"^\d+\.\d+\.[0-9a-f]{32}$")


def is_top_level(message: dict[str, Any]) -> bool:
    """What conversations.history shows: thread parents, plain posts and broadcast replies."""
    thread_ts = message.get("thread_ts")
    return thread_ts is None or thread_ts == message["ts"] or message.get("subtype") == "thread_broadcast"


@functools.lru_cache(maxsize=1024)
def stable_channel_id(name: str) -> str:
    """Derive the id from the name so ids survive restarts and tests can hard-code them.

    Cached: a channel given by name was hashed again on every post to it.
    """
    digest = hashlib.sha1(name.encode("utf-8"), usedforsecurity=False).hexdigest()
    return "C" + digest[:10].upper()


class EmulatorState:
    """The whole emulated workspace: channels, messages, users, views, reactions and call log."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.channels: dict[str, Channel] = {}
        self.users: dict[str, EmulatedUser] = {u.id: u for u in config.users}
        self.bot_id = "B" + config.bot_user_id[1:]
        self.users.setdefault(
            config.bot_user_id,
            EmulatedUser(id=config.bot_user_id, name="switchboard", real_name="Switchboard", is_bot=True),
        )
        self.views: dict[str, dict[str, Any]] = {}
        self.sockets: Any = None
        """The Socket Mode hub; when a client is connected, requests to the app travel over it."""
        self.home_views: dict[str, dict[str, Any]] = {}
        self.ephemerals: list[dict[str, Any]] = []
        self.calls: deque[RecordedCall] = deque(maxlen=self.config.max_recorded_calls)
        # Desk side (see outbound.py/desk.py): what went to the gateway and what came back.
        self.outbound: list[Any] = []
        self.responses: list[dict[str, Any]] = []
        self.triggers: dict[str, tuple[str, float]] = {}
        self.view_errors: dict[str, dict[str, str]] = {}
        self.closed_views: set[str] = set()
        self.read_marks: dict[tuple[str, str], str] = {}
        self.oauth_grants: dict[str, Grant] = {}  # one-time OAuth codes (oauth.py)
        self.local_changes = 0
        self._faults: dict[str, deque[_Fault]] = {}
        self._next_post_at: dict[str, float] = {}
        self._last_ts_us = 0
        self._seq = 0
        for name in config.channels:
            self.create_channel(name)

    # ---- identifiers -------------------------------------------------------------------------

    def next_ts(self) -> str:
        """A fresh message ts; strictly increasing so ts doubles as a unique, sortable message key."""
        self._last_ts_us = max(time.time_ns() // 1000, self._last_ts_us + 1)
        seconds, micros = divmod(self._last_ts_us, 1_000_000)
        return f"{seconds}.{micros:06d}"

    def next_id(self, prefix: str) -> str:
        """Opaque ids for views and the like, unique within this workspace."""
        self._seq += 1
        return f"{prefix}{self._seq:09d}"

    def channel_id(self, name: str) -> str:
        """The id for a channel name (``#`` optional); an existing id is passed through unchanged."""
        if name in self.channels:
            return name
        return stable_channel_id(name.lstrip("#"))

    def issue_trigger(self, user_id: str) -> str:
        """A trigger_id for one interaction; views.open must use it within ``trigger_ttl`` seconds."""
        trigger = f"{time.time_ns() // 1000}.{self._seq}.{secrets.token_hex(16)}"
        self.triggers[trigger] = (user_id, time.monotonic() + self.config.trigger_ttl)
        return trigger

    def use_trigger(self, trigger: str) -> str:
        """Consume a trigger and return the user it belongs to ("" for ids this emulator never issued)."""
        issued = self.triggers.get(trigger)
        if issued is None:
            if _TRIGGER_RE.match(trigger):
                raise SlackError("invalid_trigger_id")
            return ""
        user_id, expires = issued
        if expires < 0:
            raise SlackError("trigger_exchanged")
        if time.monotonic() > expires:
            raise SlackError("expired_trigger_id")
        self.triggers[trigger] = (user_id, -1.0)
        return user_id

    # ---- channels and messages ---------------------------------------------------------------

    def create_channel(self, name: str, *, is_private: bool = False, creator: str = "") -> Channel:
        channel = Channel(
            id=stable_channel_id(name),
            name=name,
            created=int(time.time()),
            is_private=is_private,
            creator=creator or self.config.bot_user_id,
        )
        self.channels[channel.id] = channel
        return channel

    def channel(self, ref: str | None) -> Channel:
        """Resolve a channel by id, name or ``#name`` the way chat.postMessage does."""
        if not ref:
            raise SlackError("channel_not_found")
        found = self.channels.get(ref) or self.channels.get(stable_channel_id(ref.lstrip("#")))
        if found is None:
            raise SlackError("channel_not_found")
        return found

    def user(self, user_id: str | None) -> EmulatedUser:
        if not user_id or user_id not in self.users:
            raise SlackError("user_not_found")
        return self.users[user_id]

    def message(
        self, channel: Channel, ts: str | None, *, error: str = "message_not_found"
    ) -> dict[str, Any]:
        if not ts or ts not in channel.by_ts:
            raise SlackError(error)
        return channel.by_ts[ts]

    def add_message(self, channel: Channel, message: dict[str, Any], thread_ts: str | None) -> dict[str, Any]:
        """Store a message, threading it under its parent (a reply's ts resolves to its parent)."""
        if thread_ts:
            parent = self.message(channel, thread_ts, error="thread_not_found")
            parent_ts = parent.get("thread_ts", parent["ts"])
            parent = channel.by_ts[parent_ts]
            message["thread_ts"] = parent_ts
            message["parent_user_id"] = parent.get("user", "")
            parent["thread_ts"] = parent_ts
        channel.messages.append(message)
        channel.by_ts[message["ts"]] = message
        if thread_ts:
            self._refresh_thread(channel, message["thread_ts"])
        keep = self.config.max_messages_per_channel
        if keep is not None and len(channel.messages) > keep + keep // 10:
            # Trimmed in chunks, so the cost of dropping the oldest stays small per message.
            for old in channel.messages[: len(channel.messages) - keep]:
                channel.by_ts.pop(old["ts"], None)
            del channel.messages[: len(channel.messages) - keep]
        return message

    def remove_message(self, channel: Channel, ts: str) -> None:
        """Delete like Slack: a parent that still has replies becomes a tombstone, others vanish."""
        message = self.message(channel, ts)
        if message.get("reply_count"):
            message.update(subtype="tombstone", text="This message was deleted.", blocks=[])
            return
        channel.messages.remove(message)
        del channel.by_ts[ts]
        parent_ts = message.get("thread_ts")
        if parent_ts and parent_ts != ts and parent_ts in channel.by_ts:
            self._refresh_thread(channel, parent_ts)

    def _refresh_thread(self, channel: Channel, parent_ts: str) -> None:
        parent = channel.by_ts[parent_ts]
        replies = self._thread(channel, parent_ts)[1:]
        users = list(dict.fromkeys(r.get("user", "") for r in replies))
        if replies:
            parent.update(
                reply_count=len(replies),
                reply_users=users,
                reply_users_count=len(users),
                latest_reply=replies[-1]["ts"],
            )
        else:
            for key in ("reply_count", "reply_users", "reply_users_count", "latest_reply"):
                parent.pop(key, None)

    @staticmethod
    def _thread(channel: Channel, parent_ts: str) -> list[dict[str, Any]]:
        parent = channel.by_ts[parent_ts]
        return [parent, *(m for m in channel.messages if m.get("thread_ts") == parent_ts and m is not parent)]

    def messages(self, channel: str) -> list[dict[str, Any]]:
        """Top-level messages (what history shows), oldest first, as copies safe to mutate."""
        found = self.channel(channel)
        return copy.deepcopy([m for m in found.messages if is_top_level(m)])

    def replies(self, channel: str, thread_ts: str) -> list[dict[str, Any]]:
        """A thread as conversations.replies shows it: parent first, then replies oldest first."""
        found = self.channel(channel)
        parent = self.message(found, thread_ts, error="thread_not_found")
        return copy.deepcopy(self._thread(found, parent.get("thread_ts", parent["ts"])))

    def ephemerals_for(self, user: str) -> list[dict[str, Any]]:
        """Ephemeral messages shown to one user; they never appear in history, only here."""
        return [copy.deepcopy(e) for e in self.ephemerals if e["user"] == user]

    # ---- call log, faults and throttling -----------------------------------------------------

    def record(self, method: str, params: dict[str, Any], response_body: bytes, status: int) -> None:
        self.calls.append(RecordedCall(method, params, response_body, time.time(), status))

    def calls_to(self, method: str) -> list[RecordedCall]:
        return [c for c in self.calls if c.method == method]

    def fail_next(
        self, method: str, status: int = 500, count: int = 1, retry_after: int | None = None
    ) -> None:
        """Make the next ``count`` calls to ``method`` answer ``status`` (429 carries Retry-After).

        Lets tests prove the gateway survives Slack outages and throttling without a real Slack.
        """
        if count < 1:
            raise ValueError("count must be at least 1")
        self._faults.setdefault(method, deque()).append(_Fault(status, count, retry_after))

    def take_fault(self, method: str) -> SlackError | None:
        """Consume one injected fault for ``method``, if any is pending."""
        queue = self._faults.get(method)
        if not queue:
            return None
        fault = queue[0]
        fault.remaining -= 1
        if fault.remaining <= 0:
            queue.popleft()
        if fault.status == 429:
            wait = max(1, fault.retry_after or 1)
            return SlackError("ratelimited", status=429, headers={"Retry-After": str(wait)})
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after else None
        error = "service_unavailable" if fault.status == 503 else "internal_error"
        return SlackError(error, status=fault.status, headers=headers)

    def throttle_post(self, channel: Channel) -> None:
        """Per-channel pacing for chat.postMessage, mirroring Slack's ~1 msg/s/channel limit."""
        rate = self.config.rate_limit_per_channel
        if rate is None:
            return
        now = time.monotonic()
        allowed_at = self._next_post_at.get(channel.id, 0.0)
        if now < allowed_at:
            wait = max(1, math.ceil(allowed_at - now))
            raise SlackError("ratelimited", status=429, headers={"Retry-After": str(wait)})
        self._next_post_at[channel.id] = now + 1.0 / rate

    # ---- introspection -----------------------------------------------------------------------

    def revision(self) -> int:
        """A cheap change counter for the desk's polling: every mutation leaves a record somewhere."""
        return len(self.calls) + len(self.outbound) + len(self.responses) + self.local_changes

    def snapshot(self) -> dict[str, Any]:
        """A compact summary for the local ``GET /state`` endpoint."""
        channels = []
        for ch in self.channels.values():
            top = sum(1 for m in ch.messages if is_top_level(m))
            channels.append(
                {
                    "id": ch.id,
                    "name": ch.name,
                    "messages": top,
                    "replies": len(ch.messages) - top,
                    "is_private": ch.is_private,
                }
            )
        return {
            "team_id": self.config.team_id,
            "channels": channels,
            "users": [u.id for u in self.users.values()],
            "ephemerals": len(self.ephemerals),
            "views": len(self.views) + len(self.home_views),
            "calls": len(self.calls),
        }
