"""`POST /webchat/session`: who is chatting, which conversation, and a short-lived socket token.

The visitor id is a random secret kept in the browser; it is the only thing that ties a browser to its
conversation, so it must look random (`v-` + 32 hex) and can never collide with a host-signed
`user:<id>` identity. A claimed user id without a valid hash is refused, never downgraded silently.
Sessions are counted per client address (limits.WindowRate) before anything else touches Redis.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import redis.asyncio as aioredis
import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from redis.exceptions import RedisError

from gateway import keys
from gateway.domain import ChannelKind, CustomerProfile, Identifier, new_id
from integrations.webchat import tokens
from integrations.webchat.clientip import ClientAddress
from integrations.webchat.config import WebchatConfig
from integrations.webchat.limits import WindowRate, session_key
from integrations.webchat.origins import OriginPolicy
from integrations.webchat.refusals import REFUSAL_LOG_S, SampledWarning

log = structlog.get_logger(__name__)


class IdentityIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    user_id: Identifier | None = None
    user_hash: str | None = Field(default=None, max_length=128, pattern=r"^[0-9a-fA-F]+$")
    email: str | None = Field(default=None, max_length=320)
    name: str | None = Field(default=None, max_length=200)


class SessionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    visitor_id: str | None = Field(default=None, pattern=r"^v-[0-9a-f]{32}$")
    identity: IdentityIn | None = None


RESERVATION_TTL_S = 86400


def reservation_key(customer_id: str) -> str:
    return keys.customer_conversation(f"{ChannelKind.WEBCHAT.value}:{customer_id}")


def new_visitor_id() -> str:
    return f"v-{secrets.token_hex(16)}"


def cors_headers(request: web.Request, policy: OriginPolicy) -> dict[str, str]:
    origin = request.headers.get("Origin")
    if not origin or not policy.allows(origin, request):
        return {}
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Methods": "POST, OPTIONS",
        "Access-Control-Allow-Headers": "Content-Type",
        "Access-Control-Max-Age": "600",
        "Vary": "Origin",
    }


def _error(status: int, code: str, message: str, headers: dict[str, str], **extra: Any) -> web.Response:
    return web.json_response({"error": code, "message": message, **extra}, status=status, headers=headers)


def _unavailable(exc: BaseException, headers: dict[str, str]) -> web.Response:
    log.error("webchat_session_unavailable", error=str(exc))
    resp = _error(503, "unavailable", "storage is unavailable; retry later", headers)
    resp.headers["Retry-After"] = "2"
    return resp


class SessionEndpoint:
    def __init__(
        self, redis: aioredis.Redis, config: WebchatConfig, key: bytes, policy: OriginPolicy, client: ClientAddress
    ) -> None:
        self.redis = redis
        self.config = config
        self.key = key
        self.policy = policy
        self.client = client
        self.rate = WindowRate(redis, session_key, config.session_rate, config.session_window_s)
        # Sampled: a script hammering the endpoint was one warning line per refused request.
        self.rate_limited = SampledWarning("webchat_session_rate_limited", "webchat_sessions_rate_limited",
                                           REFUSAL_LOG_S)

    async def close(self, app: web.Application) -> None:
        self.rate_limited.close()

    async def preflight(self, request: web.Request) -> web.Response:
        headers = cors_headers(request, self.policy)
        return web.Response(status=204 if headers else 403, headers=headers)

    async def create(self, request: web.Request) -> web.Response:
        headers = cors_headers(request, self.policy)
        origin = request.headers.get("Origin")
        if origin and not headers:
            return _error(403, "origin_not_allowed", "this site may not start a chat", {})
        refused = await self._over_rate(request, headers)
        if refused is not None:
            return refused
        try:
            raw = await request.read()
            body = SessionIn.model_validate_json(raw or b"{}")
        except ValidationError as exc:
            details = [{"field": ".".join(map(str, e["loc"])) or "body", "problem": e["msg"]} for e in exc.errors()]
            return _error(400, "invalid_session", "the session request is not valid", headers, details=details)
        identity = body.identity or IdentityIn()
        customer_id = body.visitor_id or new_visitor_id()
        if identity.user_id is not None:
            secret = self.config.identity_secret
            if secret is None or not identity.user_hash or not tokens.identity_ok(
                secret.get_secret_value(), identity.user_id, identity.user_hash
            ):
                log.warning("webchat_identity_refused", remote=request.remote)
                return _error(401, "bad_identity", "user_hash does not match user_id", headers)
            customer_id = tokens.signed_customer_id(identity.user_id)
        try:
            profile = CustomerProfile(name=identity.name, email=identity.email)
        except ValidationError as exc:
            details = [{"field": ".".join(map(str, e["loc"])), "problem": e["msg"]} for e in exc.errors()]
            return _error(400, "invalid_session", "the identity is not valid", headers, details=details)
        try:
            conversation_id = await self._conversation_for(customer_id)
        except (RedisError, OSError) as exc:
            return _unavailable(exc, headers)
        exp = int(time.time()) + self.config.token_ttl_s
        claims = tokens.SessionClaims(cid=conversation_id, vid=customer_id, exp=exp, name=profile.name,
                                      email=profile.email)
        log.info("webchat_session", conversation_id=conversation_id, verified=identity.user_id is not None)
        return web.json_response(
            {
                "conversation_id": conversation_id,
                "visitor_id": body.visitor_id or (customer_id if customer_id.startswith("v-") else None),
                "token": tokens.issue(self.key, claims),
                "expires_at": exp,
                "ws_path": "/webchat/ws",
            },
            headers=headers,
        )

    async def _over_rate(self, request: web.Request, headers: dict[str, str]) -> web.Response | None:
        """429 once this client address has started its budget of sessions in the window, else None.

        Counted before the body is read, so malformed requests spend the budget too: each one costs us as much.
        """
        client = self.client(request)
        try:
            wait = await self.rate.retry_after(client)
        except (RedisError, OSError) as exc:
            return _unavailable(exc, headers)
        if not wait:
            return None
        self.rate_limited("session", client=client, retry_after=wait)
        resp = _error(429, "too_many_sessions", f"too many chat sessions from this address; retry in {wait} s",
                      headers, retry_after=wait)
        resp.headers["Retry-After"] = str(wait)
        return resp

    async def _conversation_for(self, customer_id: str) -> str:
        """Reserve the conversation id the store's ingest will use, so the socket can follow it at once.

        The store maps customer → conversation with SET-if-absent semantics in its Lua script; writing
        that mapping first (NX) is exactly what a first message would do, just earlier. The reservation
        expires unless a message arrives (the socket makes it permanent then), so sessions that never
        chat leave nothing behind.
        """
        key = reservation_key(customer_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(key, new_id("conv"), nx=True, ex=RESERVATION_TTL_S)
            pipe.get(key)
            _, current = await pipe.execute()
        return current.decode() if isinstance(current, bytes) else str(current)
