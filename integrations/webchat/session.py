"""`POST /webchat/session`: who is chatting, which conversation, and a short-lived socket token.

An anonymous visitor is known by a resume secret kept in the browser and sent only in this request's body
(see `tokens.py`); their visitor id is a hash of it (`v-` + 32 hex), so it can never collide with a
host-signed `user:<id>` identity and knowing it gets nobody back into the conversation. A claimed user id
without a valid hash is refused, never downgraded silently. The token answered points to a session record
kept here for its lifetime (`keys.webchat_session`), which is what holds the conversation, customer id, name and email:
the token itself goes into the socket handshake and must carry none of them.
Sessions are counted per client address (limits.WindowRate) before anything else touches Redis.
"""

from __future__ import annotations

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

    resume: str | None = Field(default=None, pattern=tokens.RESUME_PATTERN)
    """The resume secret a previous answer gave this browser: the only way back into an anonymous conversation."""
    visitor_id: str | None = Field(default=None, pattern=tokens.VISITOR_PATTERN)
    """Sent by widgets from before resume secrets. It proves nothing (it rode in socket URLs and is shown on
    cards), so alone it starts a new visitor and conversation; accepted rather than refused so such a widget
    still chats."""
    identity: IdentityIn | None = None


RESERVATION_TTL_S = 86400


def reservation_key(customer_id: str) -> str:
    return keys.customer_conversation(f"{ChannelKind.WEBCHAT.value}:{customer_id}")


SESSION_SLACK_S = 5
"""The session record outlives its token's `exp` by this much, so a token checked at its last second still
finds it; `exp` itself is what refuses a late token."""


INDEX_TTL_S = 86400 + SESSION_SLACK_S
"""How long a conversation's index of session records outlives its newest entry: the longest any record lives
(`WEBCHAT_TOKEN_TTL` is at most a day), so processes with different TTLs never let it go before a record it lists."""
INDEX_SKEW_S = 60
"""Entries are forgotten this long after their expiry, so a writer whose clock runs ahead drops no live one."""


async def save_session(redis: aioredis.Redis, sid: str, claims: tokens.SessionClaims, ttl_s: int) -> None:
    """The record, and its place in the conversation's index (`keys.webchat_sessions`), through which an erasure
    finds and deletes it; the index forgets records that have expired."""
    lifetime = ttl_s + SESSION_SLACK_S
    index, now = keys.webchat_sessions(claims.cid), time.time()
    async with redis.pipeline(transaction=True) as pipe:
        pipe.set(keys.webchat_session(sid), claims.model_dump_json(exclude_none=True), ex=lifetime)
        pipe.zremrangebyscore(index, "-inf", now - INDEX_SKEW_S)
        pipe.zadd(index, {sid: now + lifetime})
        pipe.expire(index, INDEX_TTL_S)
        await pipe.execute()


async def load_session(redis: aioredis.Redis, sid: str) -> tokens.SessionClaims | None:
    """The record, or None when it expired or never existed. Raises RedisError/OSError."""
    raw = await redis.get(keys.webchat_session(sid))
    if raw is None:
        return None
    try:
        return tokens.SessionClaims.model_validate_json(raw)
    except ValidationError:
        return None


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
        resume: str | None = None
        if identity.user_id is None:
            resume = body.resume or tokens.new_resume_secret()
            customer_id = tokens.visitor_for(resume)
            if body.visitor_id is not None and body.resume is None:
                # A bare visitor id is what leaked (logged socket URLs carried it): it opens a new conversation,
                # never the transcript it names. A widget from before resume secrets lands here.
                log.info("webchat_visitor_id_not_proven")
        else:
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
        sid = tokens.new_sid()
        try:
            claims = tokens.SessionClaims(cid=await self._conversation_for(customer_id), vid=customer_id,
                                          name=profile.name, email=profile.email)
            await save_session(self.redis, sid, claims, self.config.token_ttl_s)
        except (RedisError, OSError) as exc:
            return _unavailable(exc, headers)
        exp = int(time.time()) + self.config.token_ttl_s
        log.info("webchat_session", conversation_id=claims.cid, verified=identity.user_id is not None)
        return web.json_response(
            {
                "conversation_id": claims.cid,
                # The customer id, for display and scripts: no longer a credential (`resume` is).
                "visitor_id": customer_id if resume is not None else None,
                "resume": resume,
                "token": tokens.issue(self.key, tokens.TokenClaims(sid=sid, exp=exp)),
                "expires_at": exp,
                "ws_path": "/webchat/ws",
                "ws_protocol": tokens.PROTOCOL,
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
