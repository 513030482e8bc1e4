"""Meta's message ids (wamids) carry the customer's phone number: what may be said of one, and how to spot them.

A real wamid is `wamid.` and base64 of a small binary record whose first field is the recipient's (or sender's)
number in ASCII digits, so `HBgMNDQ3NzAwOTAwNTU1…` decodes to `…447700900555…`. Logged as it is, it puts the
number in every log line (the PII masking sees only base64), and an erasure that looks for the customer's number
must look inside it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib

PREFIX = "wamid."


def fingerprint(wamid: str | None) -> str | None:
    """What logs say instead of the wamid: a short hash, enough to follow one message through the log and to
    match it against a wamid at hand, and nothing that decodes to a phone number.

    >>> fingerprint("wamid.HBgMNDQ3NzAwOTAwNTU1FQIAERgSQzk2") == fingerprint("wamid.HBgMNDQ3NzAwOTAwNTU1FQIAERgSQzk2")
    True
    >>> "447700900555" in (fingerprint("wamid.HBgMNDQ3NzAwOTAwNTU1FQIAERgSQzk2") or "")
    False
    """
    if not wamid:
        return None
    return "wh_" + hashlib.sha256(wamid.encode()).hexdigest()[:12]


def carries(wamid: str, digits: str) -> bool:
    """Whether this wamid names the number `digits` (E.164 without "+"): inside its base64 payload, or in the
    clear (an id that is no base64, as test doubles and older formats send).

    >>> carries("wamid.HBgMNDQ3NzAwOTAwNTU1FQIAERgSQzk2", "447700900555")
    True
    >>> carries("wamid.HBgMNDQ3NzAwOTAwNTU1FQIAERgSQzk2", "447700900556")
    False
    """
    if not digits:
        return False
    if digits in wamid:
        return True
    body = wamid.removeprefix(PREFIX).strip()
    padded = body + "=" * (-len(body) % 4)
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            if digits.encode() in decode(padded):
                return True
        except (binascii.Error, ValueError):
            continue
    return False
