"""Guards every signed inbound endpoint shares (the JSON API, Twilio, WhatsApp): hostile bytes in a
signature header and a body that cannot be read must end as a clear 4xx, never as a 500 with a traceback.

`hmac.compare_digest` raises TypeError on a str holding anything but ASCII, and aiohttp hands header
values over as decoded text, so one `é` in `X-Twilio-Signature` used to crash the handler.
"""

from __future__ import annotations

import hmac

from aiohttp.web import RequestPayloadError

UNREADABLE_BODY: tuple[type[Exception], ...] = (ValueError, ConnectionError, RequestPayloadError)
"""What reading a request body raises when the sender (not we) is at fault: a Content-Encoding that does
not decode, a broken chunked body (RequestPayloadError), a connection reset mid-body, a malformed form."""


def same_digest(expected: str, given: str) -> bool:
    """Constant-time equality of our (ASCII) digest and what the caller sent, whatever bytes it sent.

    A non-ASCII candidate can never equal a hex or base64 digest, so it is refused before the comparison;
    only the fact that it was not ASCII is learned from the time taken, which the sender knew already."""
    return given.isascii() and hmac.compare_digest(expected, given)
