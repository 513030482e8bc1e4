"""Twilio's Messages API on a free port: creates messages as told by a script, lists what it created."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from aiohttp import web

MESSAGES = "/2010-04-01/Accounts/{sid}/Messages.json"
TAKEN_THEN_502 = -502
"""Script code: Twilio queues the message, then a proxy answers 502 (the sender never sees the sid)."""
TAKEN_THEN_HANG = -1
"""Script code: Twilio queues the message, then the answer never comes (the sender times out)."""


@dataclass
class StandIn:
    """Answers from `script` (status codes, or the codes above) first, then 201; records every request."""

    url: str
    script: list[int] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)
    created: list[dict[str, str]] = field(default_factory=list)
    """Every message taken, as Twilio's list shows it (oldest first here; the list answers newest first)."""
    lookups: int = 0
    retry_after: str | None = None
    """Sent with a 429."""
    list_status: int = 200
    """Anything else: the list fails (Twilio down for reads too)."""
    """Sent with a 429."""

    def mount(self, app: web.Application) -> None:
        app.router.add_post(MESSAGES, self.messages)
        app.router.add_get(MESSAGES, self.listing)

    def _take(self, form: dict[str, Any]) -> str:
        sid = f"SM{len(self.calls):032d}"
        self.created.append({"sid": sid, "to": str(form.get("To")), "from": str(form.get("From")),
                             "body": str(form.get("Body")), "direction": "outbound-api", "status": "queued",
                             "date_created": format_datetime(datetime.now(UTC).replace(microsecond=0))})
        return sid

    async def messages(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        self.calls.append({"path": request.path, "auth": request.headers.get("Authorization"), "form": form})
        if len(str(form.get("Body", "")).encode("utf-16-le")) // 2 > 1600:  # Twilio counts UTF-16 units
            return web.json_response({"code": 21617, "message": "The concatenated message body exceeds the 1600 "
                                      "character limit.", "status": 400}, status=400)
        status = self.script.pop(0) if self.script else 201
        if status == 201:
            return web.json_response({"sid": self._take(form), "status": "queued"}, status=201)
        if status == TAKEN_THEN_502:
            self._take(form)
            return web.Response(status=502, text="Bad Gateway")
        if status == TAKEN_THEN_HANG:
            self._take(form)
            await asyncio.sleep(3600)
        body = {"code": 21211, "message": "The 'To' number is not a valid phone number.", "status": status}
        headers = {"Retry-After": self.retry_after} if status == 429 and self.retry_after else {}
        return web.json_response(body, status=status, headers=headers)

    async def listing(self, request: web.Request) -> web.Response:
        """`GET Messages.json?To=&From=&PageSize=`, newest first, as Twilio answers it."""
        self.lookups += 1
        if self.list_status != 200:
            return web.json_response({"code": 20500, "message": "Internal error"}, status=self.list_status)
        q = request.query
        found = [m for m in reversed(self.created)
                 if m["to"] == q.get("To", m["to"]) and m["from"] == q.get("From", m["from"])]
        return web.json_response({"messages": found[: int(q.get("PageSize", "50"))]})
