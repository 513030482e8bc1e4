"""HMAC request signatures shared by the JSON API, API callbacks and the external bot webhook.

Header: `X-Switchboard-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`.
The timestamp is inside the signed string, so a captured request cannot be replayed after the window.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from integrations.webhook.untrusted import same_digest

HEADER = "X-Switchboard-Signature"
TOLERANCE_S = 300


class SignatureError(ValueError):
    """Why a signature was refused; safe to show the caller (it never echoes secrets)."""


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify(
    secret: str, header: str | None, body: bytes, now: float | None = None, tolerance: int = TOLERANCE_S
) -> None:
    if not header:
        raise SignatureError(f"missing {HEADER} header")
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if sep:
            parts.setdefault(key, []).append(value)
    try:
        t = int(parts["t"][0])
    except (KeyError, ValueError):
        raise SignatureError("signature header has no valid t=<unix seconds>") from None
    current = time.time() if now is None else now
    if abs(current - t) > tolerance:
        raise SignatureError(f"signature timestamp outside the {tolerance} s window")
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    if not any(same_digest(expected, candidate) for candidate in parts.get("v1", [])):
        raise SignatureError("signature does not match")
