"""The URL a Twilio request was signed over, rebuilt from what reached us.

Twilio signs the webhook URL as the operator configured it: SWITCHBOARD_PUBLIC_URL (or the forwarded
scheme and host) stands for the part a proxy may have changed, and the path and query are taken from the
request line exactly as sent (`request.raw_path`), never from a parsed and re-serialised form (yarl
decodes `%27`, `%40`, `%7E` in some constructions; a mismatch means a 403 on every message).

Twilio has also been seen to sign a character unescaped while sending it percent-encoded (`@` and `:`
in twilio-node #621, `'` in #1059), so the URL with those characters decoded is tried as well, as
Twilio's own helpers do. Only characters with no meaning in a query are decoded (never `&`, `=`, `+`,
`#`, `%`), so both forms name the same resource and the extra form opens nothing.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

from aiohttp import web

_PLAIN = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~'@:!$()*,;/?")
"""Legal unescaped in a query (RFC 3986) and without meaning to a form parser: may be signed either way."""
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")


def raw_path_qs(request: web.Request) -> str:
    """The path and query exactly as on the request line (absolute-form targets keep only those)."""
    raw = request.raw_path
    if raw.startswith("/"):
        return raw
    parts = urlsplit(raw)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def base(request: web.Request, configured: str | None) -> str:
    """Scheme and host Twilio called: the configured public URL, else the forwarded or direct ones."""
    if configured:
        return configured.rstrip("/")
    proto = request.headers.get("X-Forwarded-Proto", request.scheme).split(",")[0].strip()
    host = request.headers.get("X-Forwarded-Host", request.host).split(",")[0].strip()
    return f"{proto}://{host}"


def unescaped(path_qs: str) -> str:
    """`%27` → `'`, `%40` → `@`, `%7E` → `~` …: only the escapes of characters in `_PLAIN`."""

    def plain(m: re.Match[str]) -> str:
        ch = chr(int(m.group(1), 16))
        return ch if ch in _PLAIN else m.group(0)

    return _ESCAPE.sub(plain, path_qs)


def port_variants(url: str) -> list[str]:
    """Twilio may sign with or without the default port (its own helper libraries accept both)."""
    parts = urlsplit(url)
    default = {"https": 443, "http": 80}.get(parts.scheme)
    variants = [url]
    if parts.port is None and default and parts.hostname:
        variants.append(urlunsplit(parts._replace(netloc=f"{parts.netloc}:{default}")))
    elif parts.port == default and parts.hostname:
        variants.append(urlunsplit(parts._replace(netloc=parts.netloc.rsplit(":", 1)[0])))
    return variants


def signed_urls(request: web.Request, configured: str | None) -> list[str]:
    """Every URL this request may have been signed over, the one as sent first."""
    raw = raw_path_qs(request)
    forms = [raw] if unescaped(raw) == raw else [raw, unescaped(raw)]
    head = base(request, configured)
    return [v for form in forms for v in port_variants(head + form)]
