"""HMAC signatures for the external-bot webhook, Stripe-style: `t=<unix>,v1=<hex>` over "<t>.<body>".

The timestamp is inside the signed payload so a captured request cannot be replayed later.
"""

from __future__ import annotations

import hashlib
import hmac

HEADER = "X-Switchboard-Signature"


def sign(secret: str, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, header: str, body: bytes, now: float, tolerance: float = 300.0) -> bool:
    """True only for a well-formed, matching and fresh signature (constant-time compare)."""
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        timestamp = int(parts["t"])
        given = parts["v1"]
    except (ValueError, KeyError):
        return False
    if abs(now - timestamp) > tolerance:
        return False
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    return hmac.compare_digest(expected, given)
