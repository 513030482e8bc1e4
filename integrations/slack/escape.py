"""Make customer text inert in Slack.

Slack's mrkdwn turns `<!channel>`, `<@U123>` and `<http://x|label>` into pings and disguised links.
Escaping `&`, `<` and `>` (Slack's own rule) defuses all three; `verbatim` text objects additionally stop
Slack from auto-linking bare URLs, channel names and @-words.
"""

from __future__ import annotations

_TABLE = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})


def escape(text: str) -> str:
    return text.translate(_TABLE)


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(0, limit - 1)].rstrip() + "…"


def escape_within(text: str, limit: int) -> str:
    """Escaped and at most `limit` characters *after* escaping: each of `&<>` grows to four or five, so a
    name of 35 `&` cut to fit first and escaped after overran Slack's 150 for a header, and every card for
    that customer was refused (invalid_blocks). Cut on whole characters, so no entity is split."""
    out = escape(text)
    if len(out) <= limit:
        return out
    used, kept = 0, 0
    for ch in text:
        width = len(escape(ch))
        if used + width > limit - 1:
            break
        used, kept = used + width, kept + 1
    return escape(text[:kept]).rstrip() + "…"


def quote(text: str, limit: int = 600) -> str:
    """Escaped, truncated and block-quoted, so a customer cannot break out of the quote either."""
    body = escape(truncate(text, limit))
    return "\n".join(f">{line}" for line in body.splitlines() or [""])
