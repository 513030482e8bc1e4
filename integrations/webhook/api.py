"""`POST /v1/messages`: the signed JSON API for customer messages.

Order matters: size limit, signature, validation, durable write, and only then 202. Anything that
fails before the write is answered with a clear error and nothing is stored.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import aiohttp
import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from redis.exceptions import RedisError

from gateway.domain import MAX_TEXT, ChannelKind, CustomerProfile, Identifier, InboundMessage, clean_text, utcnow
from gateway.store import Accepted
from integrations.body import read_limited
from integrations.webhook.signature import HEADER, SignatureError, verify
from integrations.webhook.untrusted import UNREADABLE_BODY

log = structlog.get_logger(__name__)


class ApiMessageIn(BaseModel):
    """The public request body; extra fields are refused so typos are caught, not ignored."""

    model_config = ConfigDict(extra="forbid")

    customer_id: Identifier
    message_id: Identifier
    text: str = Field(max_length=MAX_TEXT)
    customer: CustomerProfile = Field(default_factory=CustomerProfile)

    @field_validator("text")
    @classmethod
    def _text(cls, v: str) -> str:
        return clean_text(v)

    def to_inbound(self) -> InboundMessage:
        """Already validated field by field, so construct without a second validation pass (hot path)."""
        return InboundMessage.model_construct(
            channel=ChannelKind.API, customer_id=self.customer_id, message_id=self.message_id, text=self.text,
            customer=self.customer, received_at=utcnow(),
        )


def error(status: int, code: str, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": code, "message": message, **extra}, status=status)


def unavailable(message: str) -> web.Response:
    """503 with Retry-After: the caller's request was fine, our storage (or Slack) was not."""
    resp = error(503, "unavailable", message)
    resp.headers["Retry-After"] = "2"
    return resp


def validation_details(exc: ValidationError) -> list[dict[str, str]]:
    return [{"field": ".".join(str(x) for x in e["loc"]) or "body", "problem": e["msg"]} for e in exc.errors()]


async def limited_body(request: web.Request, max_body: int) -> bytes | web.Response:
    """The body, or the answer refusing it: 413 when it is (or says it is) too large, 400 when it cannot be
    read (a broken Content-Encoding)."""
    if request.content_length is not None and request.content_length > max_body:
        return _too_large(max_body)
    try:
        body = await read_limited(request, max_body)
    except UNREADABLE_BODY:
        return error(400, "unreadable_body", "request body could not be read")
    return _too_large(max_body) if body is None else body


def _too_large(max_body: int) -> web.Response:
    """Built only when needed: it was built for every request (a JSON encode and a Response, ~8 µs, measured)."""
    return error(413, "body_too_large", f"request body must be at most {max_body} bytes")


Ingest = Callable[[InboundMessage], Awaitable[Accepted]]


def make_handler(secret: str, ingest: Ingest, max_body: int) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def post_message(request: web.Request) -> web.Response:
        body = await limited_body(request, max_body)
        if isinstance(body, web.Response):
            return body
        try:
            verify(secret, request.headers.get(HEADER), body)
        except SignatureError as exc:
            log.warning("api_signature_rejected", reason=str(exc), remote=request.remote)
            return error(401, "bad_signature", str(exc))
        try:
            payload = json.loads(body.decode("utf-8"))
        except UnicodeDecodeError:
            return error(400, "invalid_utf8", "request body must be UTF-8 encoded JSON")
        except (json.JSONDecodeError, RecursionError):
            return error(400, "invalid_json", "request body must be a JSON object")
        try:
            inbound = ApiMessageIn.model_validate(payload).to_inbound()
        except ValidationError as exc:
            return error(400, "invalid_message", "the message is not valid", details=validation_details(exc))
        try:
            accepted = await ingest(inbound)
        except (RedisError, OSError) as exc:  # a failover's READONLY or an OOM too: nothing was stored
            log.error("ingest_unavailable", error=str(exc))
            return unavailable("storage is unavailable; retry later, nothing was stored")
        log.info(
            "message_accepted",
            conversation_id=accepted.conversation_id,
            message_id=accepted.message_id,
            channel="api",
            duplicate=accepted.duplicate,
        )
        return web.json_response(
            {
                "status": "accepted",
                "conversation_id": accepted.conversation_id,
                "message_id": accepted.message_id,
                "duplicate": accepted.duplicate,
            },
            status=202,
        )

    return post_message


class ForgetIn(BaseModel):
    """The signed body of an erasure: which customer it is for (the path must say the same)."""

    model_config = ConfigDict(extra="forbid")

    customer: str = Field(min_length=3, max_length=300)
    deep: bool = False


class Forgetter(Protocol):
    async def forget(self, ref: str, requested_by: str, deep: bool = False) -> Any: ...


FORGET_MAX_BODY = 4096


def make_forget_handler(secret: str, eraser: Forgetter) -> Callable[[web.Request], Awaitable[web.Response]]:
    """`DELETE /v1/customers/{ref}`: erase a person (right to erasure). Signed like every API call; the
    signed body names the customer, and its timestamp binds the request to its moment.

    Every failure is an answer the caller can act on (400, 401, 413, 404, 503), never a 500: an erasure
    request is a legal obligation, and "internal error" does not tell the caller whether to send it again."""

    async def forget(request: web.Request) -> web.Response:
        body = await limited_body(request, FORGET_MAX_BODY)
        if isinstance(body, web.Response):
            return body
        try:
            verify(secret, request.headers.get(HEADER), body)
        except SignatureError as exc:
            return error(401, "bad_signature", str(exc))
        ref = request.match_info["ref"]
        if not 3 <= len(ref) <= 300 or (":" not in ref and not ref.startswith("per_")):
            return error(400, "invalid_customer", "give an identity like api:<customer_id>, email:<address>, "
                         "phone:+<E.164>, sms:+<number>, webchat:<visitor> or a person id per_…")
        try:
            signed = ForgetIn.model_validate_json(body)
        except ValidationError:
            signed = None
        if signed is None or signed.customer != ref:
            # The signature covers the body only: without the customer in it, one captured erase request
            # could erase anyone for the next five minutes.
            return error(401, "bad_signature", f'the signed body must be {{"customer": "{ref}"}}')
        deep = signed.deep or request.query.get("deep", "") in ("1", "true", "yes")
        try:
            report = await eraser.forget(ref, requested_by="api", deep=deep)
        except (RedisError, aiohttp.ClientError, OSError) as exc:  # READONLY, OOM, unreachable; Slack away
            log.error("erasure_unavailable", error=f"{type(exc).__name__}: {exc}")
            return unavailable("storage or Slack is unavailable and the erasure did not finish; send it again")
        if report.person is None:
            return error(404, "unknown_customer", f"no customer is known as {ref}")
        return web.json_response({"status": "forgotten", **report.as_dict()})

    return forget
