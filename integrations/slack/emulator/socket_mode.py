"""Socket Mode, emulated: `apps.connections.open` hands out a WebSocket URL on this app, and while a
client is connected every event, interaction and slash command travels over it as a Slack envelope
instead of an HTTP POST, and waits for the client's ack (with its optional response payload).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import structlog
from aiohttp import WSMsgType, web

from .state import EmulatorState, SlackError

log = structlog.get_logger(__name__)

ENVELOPE_TYPES = {"block_actions": "interactive", "view_submission": "interactive",
                  "event_callback": "events_api", "slash_command": "slash_commands"}


class SocketHub:
    def __init__(self) -> None:
        self.clients: list[web.WebSocketResponse] = []
        self.pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.prefix = "/"

    @property
    def connected(self) -> bool:
        return any(not ws.closed for ws in self.clients)

    async def deliver(self, kind: str, payload: dict[str, Any], wait_s: float) -> tuple[int, str]:
        """Send one envelope to the newest live connection and wait for its ack, as Slack does."""
        ws = next(w for w in reversed(self.clients) if not w.closed)
        envelope_id = uuid.uuid4().hex
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[envelope_id] = future
        await ws.send_json({"envelope_id": envelope_id, "type": ENVELOPE_TYPES.get(kind, kind),
                            "payload": payload, "accepts_response_payload": kind != "event_callback",
                            "retry_attempt": 0, "retry_reason": ""})
        try:
            ack = await asyncio.wait_for(future, wait_s)
        except TimeoutError:
            return 0, ""
        finally:
            self.pending.pop(envelope_id, None)
        body = ack.get("payload")
        return 200, json.dumps(body) if body else ""


SOCKETS: web.AppKey[SocketHub] = web.AppKey("emulator_sockets", SocketHub)


def connections_open(state: EmulatorState, request: web.Request, token: str | None) -> dict[str, Any]:
    """Only an app-level token may open a connection, like Slack's `connections:write` scope."""
    if not token:
        raise SlackError("not_authed")
    if token != state.config.app_token:
        raise SlackError("invalid_auth")
    scheme = "wss" if request.scheme == "https" else "ws"
    hub = request.app[SOCKETS]
    return {"ok": True, "url": f"{scheme}://{request.host}{hub.prefix}socket?ticket={uuid.uuid4().hex}"}


async def socket_endpoint(request: web.Request) -> web.WebSocketResponse:
    hub = request.app[SOCKETS]
    ws = web.WebSocketResponse(heartbeat=30)
    await ws.prepare(request)
    hub.clients.append(ws)
    await ws.send_json({"type": "hello", "num_connections": len(hub.clients),
                        "debug_info": {"host": "emulator", "approximate_connection_time": 18060},
                        "connection_info": {"app_id": "A0SWITCHBD"}})
    log.info("slack_emulator.socket_connected", clients=len(hub.clients))
    try:
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            future = hub.pending.get(str(data.get("envelope_id")))
            if future is not None and not future.done():
                future.set_result(data)
    finally:
        hub.clients.remove(ws)
    return ws


async def close_sockets(app: web.Application) -> None:
    """Server-side close on shutdown (aiohttp's recommended pattern), as Slack drops its sockets."""
    for ws in list(app[SOCKETS].clients):
        await ws.close(code=1001, message=b"server shutdown")
