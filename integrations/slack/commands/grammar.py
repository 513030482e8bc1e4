"""The `/switchboard` grammar: words, quoted phrases, flags, and the value types commands take.

One small tokenizer and a few typed value parsers, so every command reports a bad value the same way
(one line: what was wrong and what is allowed) instead of each handler inventing its own errors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import time

_QUOTES = str.maketrans({"“": '"', "”": '"', "„": '"', "‘": "'", "’": "'"})
_TOKEN = re.compile(r'"([^"]*)"|\'([^\']*)\'|(\S+)')
_DURATION = re.compile(r"^(\d+)(s|m|h|d)?$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, None: 60}
_CHANNEL_MENTION = re.compile(r"^<#([A-Z0-9]+)(?:\|([^>]*))?>$")
_CHANNEL_NAME = re.compile(r"^#?([a-z0-9][a-z0-9_-]{0,79})$")
_USER_MENTION = re.compile(r"^<@([UW][A-Z0-9]+)(?:\|[^>]*)?>$")
_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
_SHARE = re.compile(r"^(\d{1,2}(?:\.\d{1,2})?)%?$")
_CHANGE_ID = re.compile(r"^`?(\d{1,20}-\d{1,20})`?$")
_ENTITY = re.compile(r"&(lt|gt|amp);")
_UNESCAPE = {"&lt;": "<", "&gt;": ">", "&amp;": "&"}
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


class UsageError(ValueError):
    """Bad input; the message is the single line the user sees."""


@dataclass
class Parsed:
    verb: str
    args: list[str] = field(default_factory=list)
    dry_run: bool = False
    canary: float | None = None
    raw: str = ""


def unescape(text: str) -> str:
    """Slack sends `&`, `<` and `>` typed by the user as `&amp;`, `&lt;` and `&gt;` (should_escape)."""
    return _ENTITY.sub(lambda m: _UNESCAPE[m.group(0)], text)


def tokenize(text: str) -> list[str]:
    """Whitespace-separated words; "double" or 'single' quotes (also Slack's smart quotes) keep phrases.

    Split first, unescape each token after: entities hold no space or quote, so splitting the escaped
    text is safe, and Slack's own markup (`<@U…|name>`, `<#C…|name>`) reaches the value parsers as sent.
    """
    text = text.translate(_QUOTES)
    if text.count('"') % 2:
        raise UsageError('unbalanced quote: close the phrase with "')
    out = []
    for m in _TOKEN.finditer(text):
        word = m.group(1) if m.group(1) is not None else m.group(2) if m.group(2) is not None else m.group(3)
        out.append(unescape(word))
    return out


def parse(text: str) -> Parsed:
    """Split off the verb and the flags every change accepts (`--dry-run`, `--canary N%`)."""
    words = tokenize(text.strip())
    parsed = Parsed(verb="help", raw=text.strip())
    rest: list[str] = []
    i = 0
    while i < len(words):
        w = words[i]
        low = w.lower()
        if low in ("--dry-run", "--dryrun", "--preview"):
            parsed.dry_run = True
        elif low == "--canary" or low.startswith("--canary="):
            value = low.partition("=")[2] if "=" in low else (words[i + 1] if i + 1 < len(words) else "")
            if "=" not in low:
                i += 1
            parsed.canary = share(value)
        elif low.startswith("--"):
            raise UsageError(f"unknown option {w}; options are --dry-run and --canary N%")
        else:
            rest.append(w)
        i += 1
    if rest:
        parsed.verb, parsed.args = rest[0].lower(), rest[1:]
    return parsed


def share(value: str) -> float:
    m = _SHARE.match(value.strip())
    if not m or not 0 < float(m.group(1)) < 100:
        raise UsageError(f"canary share {value or '(missing)'!r}: give a percentage between 1% and 99%, e.g. 10%")
    return float(m.group(1))


def duration(value: str, what: str = "duration") -> int:
    """`90s`, `5m`, `2h`, `1d`; a bare number means minutes (how people say SLAs)."""
    m = _DURATION.match(value.strip().lower())
    if not m:
        raise UsageError(f"{what} {value!r}: use a number with s, m, h or d, e.g. 5m or 2h")
    return int(m.group(1)) * _UNITS[m.group(2)]


def channel(value: str) -> tuple[str | None, str | None]:
    """(channel id, name) from `<#C123|name>`, `<#C123>` or `#name`; one of them may be None."""
    m = _CHANNEL_MENTION.match(value)
    if m:
        return m.group(1), (m.group(2) or None)
    m = _CHANNEL_NAME.match(value.lower())
    if m and value.startswith("#"):
        return None, m.group(1)
    if m:
        return None, m.group(1)
    raise UsageError(f"channel {value!r}: mention a channel like #support-billing")


def user(value: str) -> str:
    m = _USER_MENTION.match(value)
    if m:
        return m.group(1)
    if _USER_ID.match(value):
        return value
    raise UsageError(f"agent {value!r}: mention the agent, e.g. @jane (Slack sends <@U…>)")


def change_id(value: str) -> str:
    """A policy history entry id as `history` shows it (`1764612345678-0`)."""
    m = _CHANGE_ID.match(value.strip())
    if not m:
        raise UsageError(f"change id {value!r}: copy it from `history`, e.g. 1764612345678-0")
    return m.group(1)


def integer(value: str, what: str, lo: int, hi: int) -> int:
    try:
        n = int(value)
    except ValueError:
        raise UsageError(f"{what} {value!r}: a whole number from {lo} to {hi}") from None
    if not lo <= n <= hi:
        raise UsageError(f"{what} {n}: must be from {lo} to {hi}")
    return n


def number(value: str, what: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise UsageError(f"{what} {value!r}: not a number") from None


def day(word: str) -> int:
    """`Mon`, `Monday`, `Tues`…: at least three letters of the day's name, nothing else."""
    if len(word) >= 3:
        for i, name in enumerate(DAY_NAMES):
            if name.startswith(word):
                return i
    raise ValueError(word)


def days(value: str) -> tuple[int, ...]:
    """`Mon-Fri`, `Sat,Sun`, `Mon-Wed,Fri`, `daily`; Monday is 0 as in the policy model."""
    low = value.lower()
    if low in ("daily", "everyday", "all"):
        return tuple(range(7))
    out: set[int] = set()
    for part in low.split(","):
        a, _, b = part.partition("-")
        try:
            start = day(a)
            end = day(b) if b else start
        except ValueError:
            raise UsageError(f"days {value!r}: use day names like Mon-Fri or Sat,Sun") from None
        i = start
        while True:
            out.add(i)
            if i == end:
                break
            i = (i + 1) % 7
    return tuple(sorted(out))


def days_text(numbers: tuple[int, ...]) -> str:
    """The canonical spelling (`Mon-Fri`, `Sat,Sun`), so a summary never repeats what the lead typed."""
    if len(numbers) == 7:
        return "daily"
    runs: list[list[int]] = []
    for n in numbers:
        if runs and runs[-1][-1] == n - 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    name = lambda i: DAYS[i].title()  # noqa: E731
    return ",".join(f"{name(r[0])}-{name(r[-1])}" if len(r) > 2 else ",".join(map(name, r)) for r in runs)


def clock_span(value: str) -> tuple[time, time]:
    """`09:00-18:00` (24-hour clock)."""
    a, sep, b = value.partition("-")
    try:
        if not sep:
            raise ValueError
        return time.fromisoformat(_pad(a)), time.fromisoformat(_pad(b))
    except ValueError:
        raise UsageError(f"hours {value!r}: use a 24-hour span like 09:00-18:00") from None


def _pad(t: str) -> str:
    return f"0{t}" if len(t) == 4 and t[1] == ":" else t
