"""Session tokens and host-site identity hashes.

The token is stateless (HMAC-signed claims) so any web process can accept a WebSocket for a session
another process created, without a shared session table. Expiry is short because the token sits in
a URL; the widget simply asks for a new one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

from pydantic import BaseModel, ConfigDict, ValidationError

from integrations.webhook.untrusted import same_digest


class TokenError(ValueError):
    """Why a token was refused; safe to show the caller."""


class SessionClaims(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cid: str
    """conversation id the socket follows"""
    vid: str
    """customer id within the web chat channel (visitor id, or `user:<id>` when signed by the host site)"""
    exp: int
    name: str | None = None
    email: str | None = None


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue(key: bytes, claims: SessionClaims) -> str:
    body = _b64(claims.model_dump_json(exclude_none=True).encode())
    mac = _b64(hmac.new(key, body.encode(), hashlib.sha256).digest())
    return f"{body}.{mac}"


def verify(key: bytes, token: str | None, now: float | None = None) -> SessionClaims:
    if not token or token.count(".") != 1 or len(token) > 4096:
        raise TokenError("missing or malformed token")
    body, mac = token.split(".")
    expected = _b64(hmac.new(key, body.encode(), hashlib.sha256).digest())
    if not same_digest(expected, mac):  # a non-ASCII mac made compare_digest raise: a 500
        raise TokenError("token signature does not match")
    try:
        claims = SessionClaims.model_validate(json.loads(_unb64(body)))
    except (ValueError, ValidationError):
        raise TokenError("token payload is not valid") from None
    if claims.exp < (time.time() if now is None else now):
        raise TokenError("token expired")
    return claims


SIGNED_ID_MAX = 120
"""Longest user id kept as it is in `user:<id>`: a message id is `<customer id>/<client id>` and must fit the
200 characters of an identifier, so longer ids failed every message ("the message is empty")."""


def signed_customer_id(user_id: str) -> str:
    """`user:<id>` for a visitor the host site signed; a long id is replaced by a digest of itself."""
    if len(user_id) <= SIGNED_ID_MAX:
        return f"user:{user_id}"
    return f"user:sha256-{hashlib.sha256(user_id.encode()).hexdigest()}"


def identity_hash(secret: str, user_id: str) -> str:
    """What the host site's backend computes: hex HMAC-SHA256(WEBCHAT_IDENTITY_SECRET, user_id)."""
    return hmac.new(secret.encode(), user_id.encode(), hashlib.sha256).hexdigest()


def identity_ok(secret: str, user_id: str, user_hash: str) -> bool:
    return hmac.compare_digest(identity_hash(secret, user_id), user_hash.lower())
