"""Socket tokens, visitor resume secrets and host-site identity hashes.

Two credentials, kept apart because they live in different places:

- The resume secret (`r-` + 64 hex) is the long-lived one: it is what lets a browser come back to its
  conversation after a reload, so it is kept only in the browser (localStorage) and sent only in the body of
  `POST /webchat/session`, never in a URL. The visitor id is derived from it by a one-way hash
  (`visitor_for`), so the server stores nothing per visitor and a visitor id (shown on cards, in logs, in
  the socket's frames) cannot be turned back into the secret. The visitor id used to be the secret itself,
  and it rode in every socket URL inside the token: one access-log line gave lasting access.
- The socket token is short-lived and says nothing: HMAC-signed `{sid, exp}`, where `sid` names a session
  record in Redis holding the conversation, the customer id and the name/email (see `session.py`). A token
  seen in a log is useless after `exp`, cannot mint sessions, and carries no PII. The widget sends it in
  the `Sec-WebSocket-Protocol` header (`token_protocol`), not in the URL; `?token=` is still accepted for
  widgets loaded before the change and for scripts.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from integrations.webhook.untrusted import same_digest


class TokenError(ValueError):
    """Why a token was refused; safe to show the caller."""


SID_PATTERN = r"^[0-9a-f]{32}$"
RESUME_PATTERN = r"^r-[0-9a-f]{64}$"
VISITOR_PATTERN = r"^v-[0-9a-f]{32}$"
PROTOCOL = "switchboard.v1"
"""The WebSocket subprotocol the server answers with; the widget offers it next to `token_protocol(token)`.
A browser fails a handshake whose offered protocols are all left unanswered, so every upgrade (refusals too)
must answer this one."""
TOKEN_PROTOCOL_PREFIX = "switchboard.token."


class TokenClaims(BaseModel):
    """What the signed socket token carries: only a pointer to the session record and its expiry."""

    model_config = ConfigDict(extra="forbid")

    sid: str = Field(pattern=SID_PATTERN)
    """random id of the session record (`session.session_key`), not derived from anything the visitor keeps"""
    exp: int


class SessionClaims(BaseModel):
    """The session record a token points to (kept in Redis for the token's lifetime): who the socket is for."""

    model_config = ConfigDict(extra="forbid")

    cid: str
    """conversation id the socket follows"""
    vid: str
    """customer id within the web chat channel (visitor id, or `user:<id>` when signed by the host site)"""
    name: str | None = None
    email: str | None = None


def new_sid() -> str:
    return secrets.token_hex(16)


def new_resume_secret() -> str:
    return f"r-{secrets.token_hex(32)}"


def visitor_for(resume: str) -> str:
    """The visitor id a resume secret stands for: `v-` + 128 bits of SHA-256 over the 256-bit secret.

    A plain hash, not an HMAC under the token key: rotating WEBCHAT_TOKEN_SECRET (or a local-mode restart with a
    generated key) must not cut every visitor off their conversation, and the secret's entropy is what makes the
    hash impossible to invert. A secret chosen by a client rather than by us only ever reaches a visitor id no
    one else has.
    """
    return "v-" + hashlib.sha256(b"switchboard webchat visitor\x00" + resume.encode()).hexdigest()[:32]


def token_protocol(token: str) -> str:
    """The subprotocol value that carries `token` in the handshake's `Sec-WebSocket-Protocol` header."""
    return TOKEN_PROTOCOL_PREFIX + token


def token_from_protocols(header: str | None) -> str | None:
    """The token offered in a `Sec-WebSocket-Protocol` header (comma-separated), if any."""
    for value in (header or "").split(","):
        value = value.strip()
        if value.startswith(TOKEN_PROTOCOL_PREFIX):
            return value[len(TOKEN_PROTOCOL_PREFIX):]
    return None


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue(key: bytes, claims: TokenClaims) -> str:
    body = _b64(claims.model_dump_json(exclude_none=True).encode())
    mac = _b64(hmac.new(key, body.encode(), hashlib.sha256).digest())
    return f"{body}.{mac}"


def verify(key: bytes, token: str | None, now: float | None = None) -> TokenClaims:
    if not token or token.count(".") != 1 or len(token) > 4096:
        raise TokenError("missing or malformed token")
    body, mac = token.split(".")
    expected = _b64(hmac.new(key, body.encode(), hashlib.sha256).digest())
    if not same_digest(expected, mac):  # a non-ASCII mac made compare_digest raise: a 500
        raise TokenError("token signature does not match")
    try:
        claims = TokenClaims.model_validate(json.loads(_unb64(body)))
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
