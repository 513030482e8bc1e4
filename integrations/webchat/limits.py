"""What keeps one hostile client from exhausting a web process: sessions, sockets and idle sockets.

- Sessions per client address per window are counted in Redis: a session costs a Redis write (the
  conversation reservation) and the limit must hold however many web processes share the traffic.
- Messages per visitor per window are counted in Redis too, so a reconnect does not reset them.
- Sockets per visitor, per client address and per process are counted in this process: what runs out is this
  process's memory and file descriptors, and an in-process count costs no Redis round trip per connect and
  cannot leak when a process dies (a shared count would keep a dead process's sockets until they expired).
  Per visitor, not per token: every tab mints its own token, and anyone can mint more.
- A socket the client has sent nothing on for WEBCHAT_IDLE_TIMEOUT is closed (the widget pings while its
  page is visible). Dead peers are found sooner by the WebSocket heartbeat in ws.py.
- A refused socket costs a descriptor too; refusals have their own budget (refusals.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import resource
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import redis.asyncio as aioredis
import structlog
from aiohttp import WSCloseCode

from integrations.webchat.outbox import PREFIX

log = structlog.get_logger(__name__)

TOO_MANY = 4429
"""Close code (private range, echoing HTTP 429) for a visitor or address over its socket cap."""
IDLE = 4408
"""Close code (echoing HTTP 408) for a socket the client left idle: the widget waits for the page to be seen."""
FD_SHARE = 0.75
"""Share of the open-file limit sockets may take; Redis, Slack and accept() itself need the rest."""


def session_key(client: str, window_index: int) -> str:
    return f"{PREFIX}sessions:{client}:{window_index}"


def message_key(customer_id: str, window_index: int) -> str:
    return f"{PREFIX}rate:{customer_id}:{window_index}"


class WindowRate:
    """Fixed-window count per owner, shared by all web processes through Redis: session creations per client
    address (`session_key`), and messages per visitor (`message_key`, so reconnecting does not reset it).

    Fixed windows let a client spend up to twice the budget across a window boundary; that bounds the abuse
    just as well as a sliding window and costs one INCR.
    """

    def __init__(self, redis: aioredis.Redis, key: Callable[[str, int], str], limit: int, window_s: int) -> None:
        self.redis = redis
        self.limit = limit
        self.window_s = window_s
        self.key = key

    async def retry_after(self, owner: str) -> int:
        """Seconds until `owner` may go again (0 = now). Raises RedisError/OSError."""
        now = int(time.time())
        key = self.key(owner, now // self.window_s)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.incr(key)
            pipe.expire(key, self.window_s * 2)
            count, _ = await pipe.execute()
        if int(count) <= self.limit:
            return 0
        return self.window_s - now % self.window_s


class Scope(enum.Enum):
    """Who a socket counts against, checked in this order (the first one full names the refusal)."""

    PROCESS = "process"
    VISITOR = "visitor"
    ADDRESS = "address"


@dataclass(frozen=True)
class Refusal:
    scope: Scope
    close_code: int
    error: str
    message: str
    retry_after: int


REFUSALS: dict[Scope, Refusal] = {
    Scope.PROCESS: Refusal(Scope.PROCESS, WSCloseCode.TRY_AGAIN_LATER, "server_busy",
                           "the chat server is busy; reconnecting shortly", 5),
    Scope.VISITOR: Refusal(Scope.VISITOR, TOO_MANY, "too_many_tabs",
                           "this chat is open in too many tabs; close one to chat here", 30),
    Scope.ADDRESS: Refusal(Scope.ADDRESS, TOO_MANY, "too_many_sockets",
                           "too many chats from this network; try again later", 30),
}


def socket_cap(configured: int) -> int:
    """WEBCHAT_MAX_SOCKETS, held under a share of the open-file limit.

    Past that limit accept() and every new Redis or Slack connection fail for the whole process; refusing
    chat sockets first ("try again later") keeps the rest of the gateway working.
    """
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return configured
    cap = max(1, min(configured, int(soft * FD_SHARE)))
    if cap < configured:
        log.warning("webchat_socket_cap_lowered", configured=configured, cap=cap, open_file_limit=soft,
                    hint="raise the open-file limit (ulimit -n) to allow more chat sockets")
    return cap


class SocketSlots:
    """Open sockets per scope in this process. Taking is synchronous, so two connects cannot both get the last slot."""

    def __init__(self, caps: Mapping[Scope, int]) -> None:
        self.caps = dict(caps)
        self.held: dict[Scope, Counter[str]] = {scope: Counter() for scope in self.caps}

    def take(self, owners: Mapping[Scope, str]) -> Refusal | None:
        """One slot in every scope, or none at all (and the refusal of the first scope that is full)."""
        for scope, owner in owners.items():
            if self.held[scope][owner] >= self.caps[scope]:
                return REFUSALS[scope]
        for scope, owner in owners.items():
            self.held[scope][owner] += 1
        return None

    def give_back(self, owners: Mapping[Scope, str]) -> None:
        for scope, owner in owners.items():
            held = self.held[scope]
            held[owner] -= 1
            if held[owner] <= 0:
                del held[owner]  # a visitor or address with nothing open costs no memory


class IdleTimer:
    """Runs `on_idle` once the client has sent nothing for `timeout_s`.

    Only client frames count: pongs to the heartbeat come from the browser (or an abandoned script) by
    themselves. One timer handle per socket, re-armed lazily, rather than a task per socket.
    """

    def __init__(self, timeout_s: float, on_idle: Callable[[], Awaitable[None]]) -> None:
        self.loop = asyncio.get_running_loop()
        self.timeout_s = timeout_s
        self.on_idle = on_idle
        self.last = self.loop.time()
        self.handle = self.loop.call_at(self.last + timeout_s, self._check)
        self.task: asyncio.Task[None] | None = None

    def touch(self) -> None:
        self.last = self.loop.time()

    def _check(self) -> None:
        due = self.last + self.timeout_s
        if self.loop.time() < due:
            self.handle = self.loop.call_at(due, self._check)
            return
        self.task = asyncio.create_task(self._fire())

    async def _fire(self) -> None:
        await self.on_idle()

    async def stop(self) -> None:
        """Disarm; a close already under way is awaited so the handler never returns half-closed."""
        self.handle.cancel()
        if self.task is not None:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.task
