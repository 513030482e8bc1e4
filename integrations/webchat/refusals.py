"""Refusing a socket without letting the refusals cost more than the sockets they refuse.

A refused socket is upgraded so the widget can read why (see `Refusals.refuse`), so each one holds a file
descriptor and a handler until its close handshake ends, and none of them counts against a socket cap: one token
reused by a script that neither reads nor answers the close used to hold as many refused sockets as it opened,
2 s each, whatever the process cap. So:

- refusals in flight have their own small per-process budget; past it the answer is a plain HTTP 429 (503 for a
  busy process) with `Connection: close`, not upgraded. A browser cannot read that status, so the widget takes
  it for a bad token and backs off; only a flood of refusals gets this answer.
- a refused socket waits only briefly for the client's close reply: a browser answers at once, a script never.
- the warning is sampled, or a flood of refusals is a flood of log lines: the first of each kind (scope, or
  "overflow" for the plain answers) is logged in full, then one line with the counts per period while it lasts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from typing import Any

import structlog
from aiohttp import web

from integrations.webchat.limits import Refusal, Scope
from integrations.webchat.protocol import error_frame
from integrations.webchat.tokens import PROTOCOL

log = structlog.get_logger(__name__)

REFUSALS_IN_FLIGHT = 32
"""Refused sockets one process keeps upgraded at once; with REFUSAL_CLOSE_S that is ~128 refusals a second that
the widget can read, far more than honest widgets need (they wait `retry_after` before trying again)."""
REFUSAL_CLOSE_S = 0.25
"""How long a refused socket waits for the client's close reply before the connection is dropped anyway."""
REFUSAL_LOG_S = 10.0
"""While refusals go on, one line with their counts per this many seconds."""


class SampledWarning:
    """`event` for the first occurrence of each kind, then `summary` with the counts once per `every_s`.

    Counts are logged by a timer, not by the next occurrence, so the tail of a flood is not lost when it stops;
    a period with nothing to count ends the flood and the next occurrence is logged in full again.
    """

    def __init__(self, event: str, summary: str, every_s: float) -> None:
        self.event = event
        self.summary = summary
        self.every_s = every_s
        self.logged: set[str] = set()
        self.counts: Counter[str] = Counter()
        self.timer: asyncio.TimerHandle | None = None

    def __call__(self, kind: str, **context: Any) -> None:
        if self.timer is None:
            self.timer = asyncio.get_running_loop().call_later(self.every_s, self._tick)
        if kind in self.logged:
            self.counts[kind] += 1
        else:
            self.logged.add(kind)
            log.warning(self.event, **context)

    def _tick(self) -> None:
        if not self.counts:
            self.timer = None
            self.logged.clear()
            return
        self._flush()
        self.timer = asyncio.get_running_loop().call_later(self.every_s, self._tick)

    def _flush(self) -> None:
        log.warning(self.summary, counts=dict(self.counts), every_s=self.every_s)
        self.counts.clear()

    def close(self) -> None:
        """On shutdown: log what was counted so far, and leave no timer on a loop that is going away."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.counts:
            self._flush()
        self.logged.clear()


class Refusals:
    """Answers sockets the limits refuse; one per process (per mounted app)."""

    def __init__(self, in_flight: int = REFUSALS_IN_FLIGHT, close_s: float = REFUSAL_CLOSE_S,
                 log_every_s: float = REFUSAL_LOG_S) -> None:
        self.limit = in_flight
        self.close_s = close_s
        self.in_flight = 0
        self.warn = SampledWarning("webchat_socket_refused", "webchat_sockets_refused", log_every_s)

    async def refuse(self, request: web.Request, refusal: Refusal, **context: str) -> web.StreamResponse:
        """Upgrade, say why, close; or, past the budget, a plain HTTP answer on a connection closed behind it.

        A browser never shows a page the status of a refused handshake: the widget would only see "closed before
        it opened", take it for a bad token and ask for a new session, spending the session budget in a loop.
        A close code and an error frame it can read tell it to wait `retry_after` instead.
        """
        upgraded = self.in_flight < self.limit
        self.warn(refusal.scope.value if upgraded else "overflow", scope=refusal.scope.value, error=refusal.error,
                  upgraded=upgraded, **context)
        if not upgraded:
            return self.plain(refusal)
        self.in_flight += 1  # taken and given back synchronously around the awaits: no two can take the last one
        try:
            # The widget offers the token as a subprotocol: a browser fails a handshake that answers none of
            # the offered ones, and the widget would never read why it was refused.
            ws = web.WebSocketResponse(timeout=self.close_s, protocols=(PROTOCOL,))
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.prepare(request)
                frame = error_frame(refusal.error, refusal.message, retry_after=refusal.retry_after)
                await ws.send_str(json.dumps(frame, separators=(",", ":")))
                await ws.close(code=refusal.close_code, message=refusal.error.encode())
            return ws
        finally:
            self.in_flight -= 1

    @staticmethod
    def plain(refusal: Refusal) -> web.Response:
        """The refusal as HTTP, for clients past the budget; `Connection: close` so it holds no descriptor after."""
        status = 503 if refusal.scope is Scope.PROCESS else 429
        body = {"error": refusal.error, "message": refusal.message, "retry_after": refusal.retry_after}
        resp = web.json_response(body, status=status, headers={"Retry-After": str(refusal.retry_after)})
        resp.force_close()
        return resp

    def close(self) -> None:
        self.warn.close()
