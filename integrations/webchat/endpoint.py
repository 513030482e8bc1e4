"""`GET /webchat/ws`: the door to a chat socket. Origin, token (and the session record it points to), resume
point and socket slots are checked before the upgrade, so a refused visitor costs a plain HTTP answer, not a
socket."""

from __future__ import annotations

import weakref

import redis.asyncio as aioredis
import structlog
from aiohttp import WSCloseCode, hdrs, web
from redis.exceptions import RedisError

from integrations.webchat import tokens
from integrations.webchat.clientip import ClientAddress
from integrations.webchat.config import WebchatConfig
from integrations.webchat.hub import WakeHub
from integrations.webchat.limits import Scope, SocketSlots, socket_cap
from integrations.webchat.origins import OriginPolicy
from integrations.webchat.refusals import Refusals
from integrations.webchat.session import load_session
from integrations.webchat.ws import MAX_FRAME_BYTES, ChatSocket, Ingest

log = structlog.get_logger(__name__)

MAX_SINCE = 2**63 - 1
"""A stream id part is a 64-bit integer; past this Redis refuses every read ("Invalid stream ID")."""


class SocketEndpoint:
    def __init__(
        self, redis: aioredis.Redis, ingest: Ingest, config: WebchatConfig, key: bytes, policy: OriginPolicy,
        client: ClientAddress,
    ) -> None:
        self.redis = redis
        self.ingest = ingest
        self.config = config
        self.key = key
        self.policy = policy
        self.hub = WakeHub(redis)
        self.open: weakref.WeakSet[web.WebSocketResponse] = weakref.WeakSet()
        self.client = client
        self.refusals = Refusals()
        self.slots = SocketSlots({Scope.PROCESS: socket_cap(config.max_sockets),
                                  Scope.VISITOR: config.sockets_per_visitor, Scope.ADDRESS: config.sockets_per_ip})

    async def close_all(self, app: web.Application) -> None:
        """On shutdown say "going away" (1001) so widgets reconnect elsewhere instead of waiting on a dead socket."""
        for ws in list(self.open):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")
        await self.hub.close()
        self.refusals.close()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if not self.policy.allows(request.headers.get("Origin"), request):
            log.warning("webchat_origin_refused", origin=request.headers.get("Origin"))
            return web.json_response({"error": "origin_not_allowed", "message": "this site may not chat"}, status=403)
        claims = await self._session(request)
        if isinstance(claims, web.Response):
            return claims
        try:
            since = int(request.query.get("since", "0"))
            if not 0 <= since <= MAX_SINCE:
                raise ValueError
        except ValueError:
            return web.json_response(
                {"error": "bad_since", "message": f"since must be a seq from 0 to {MAX_SINCE}"}, status=400
            )
        client = self.client(request)
        owners = {Scope.PROCESS: "", Scope.VISITOR: claims.vid, Scope.ADDRESS: client}
        refusal = self.slots.take(owners)
        if refusal is not None:
            return await self.refusals.refuse(request, refusal, client=client, conversation_id=claims.cid)
        try:
            # The heartbeat pings every heartbeat_s and drops a peer that does not answer within half of it:
            # a vanished laptop or phone otherwise holds its socket and its slots until TCP gives up (hours).
            ws = web.WebSocketResponse(heartbeat=float(self.config.heartbeat_s), max_msg_size=MAX_FRAME_BYTES,
                                       protocols=(tokens.PROTOCOL,))
            await ws.prepare(request)
            self.open.add(ws)
            log.info("webchat_connected", conversation_id=claims.cid, since=since)
            await ChatSocket(ws, claims, self.redis, self.ingest, self.config, self.hub).run(since)
            log.info("webchat_disconnected", conversation_id=claims.cid)
            return ws
        finally:
            self.slots.give_back(owners)

    async def _session(self, request: web.Request) -> tokens.SessionClaims | web.Response:
        """The session the handshake's token points to, or the answer refusing it.

        The widget offers the token as a subprotocol (`Sec-WebSocket-Protocol`), which proxies and access logs
        do not record the way they record a URL; `?token=` is still read for widgets loaded before that and for
        scripts. Either way the token holds only a record id and an expiry: the record, kept for the token's
        lifetime, holds the conversation and who the visitor is.
        """
        offered = request.headers.get(hdrs.SEC_WEBSOCKET_PROTOCOL)
        token = tokens.token_from_protocols(offered)
        if token is not None and tokens.PROTOCOL not in {p.strip() for p in (offered or "").split(",")}:
            # aiohttp logs the offered subprotocols, token included, when none of them is ours.
            return web.json_response({"error": "bad_protocol", "message": f"offer {tokens.PROTOCOL}"}, status=400)
        try:
            signed = tokens.verify(self.key, token or request.query.get("token"))
        except tokens.TokenError as exc:
            return web.json_response({"error": "bad_token", "message": str(exc)}, status=401)
        try:
            claims = await load_session(self.redis, signed.sid)
        except (RedisError, OSError) as exc:
            log.error("webchat_session_unavailable", error=str(exc))
            return web.json_response({"error": "unavailable", "message": "storage is unavailable; retry later"},
                                     status=503, headers={"Retry-After": "2"})
        if claims is None:
            return web.json_response({"error": "bad_token", "message": "token expired"}, status=401)
        return claims
