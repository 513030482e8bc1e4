"""What an agent typed in Slack, as the customer should read it.

Slack hands us an agent's message in its own markup: links as `<https://x|label>`, mentions as `<@U123>`,
channels as `<#C123|name>`, pings as `<!here>`, and `&`, `<`, `>` escaped as entities. Customers read SMS,
WhatsApp, e-mail or a web widget, none of which speak it: relayed raw, a link the agent pasted reached them
as `<https://example.com/track?id=1&amp;x=2|track your parcel>`. Pure on purpose (no Slack, no Redis), so
every rule is a row in a table and is tested as one.

Emoji too: Slack sends what the agent picked as a shortcode (`:package:`, `:+1::skin-tone-2:`), which customers
read literally. Known names become the emoji itself (the `emoji` package's maintained alias table, plus the few
spellings that are Slack's own); a custom workspace emoji has no Unicode form and stays as typed. Text between
backticks is left alone: it is what the agent wants copied exactly (a command, a config line).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator, Mapping
from typing import NamedTuple

import emoji

_TOKEN = re.compile(r"(?P<pre>[ \t]*)<(?P<body>[^<>\n]*)>")
"""One `<…>` token and the spaces before it: a token that is dropped takes them along, so "thanks <@U1>,"
reads "thanks," and not "thanks ,". Slack escapes every `<` and `>` an agent types, so a literal one never
matches here."""

_ENTITY = re.compile(r"&(lt|gt|amp);")
_ENTITIES = {"lt": "<", "gt": ">", "amp": "&"}


def unescape(text: str) -> str:
    """Slack's three entities back to what was typed, in one pass (`&amp;lt;` is the text `&lt;`)."""
    return _ENTITY.sub(lambda m: _ENTITIES[m.group(1)], text)


class Token(NamedTuple):
    target: str
    """What is left of the token after its sigil (`@`, `#`, `!`) or scheme, unescaped."""
    label: str | None
    """What follows `|`, unescaped, if anything."""
    raw: str
    """The token's body as Slack wrote it (unescaped), for links, whose target is the whole URL."""


Names = Mapping[str, str]
Rule = Callable[[Token, Names], str | None]
"""A token's plain text, or None to drop it (with the spaces before it)."""


def _same(label: str, target: str) -> bool:
    """Whether a label only repeats its link: Slack auto-links a typed `example.com` as
    `<http://example.com|example.com>` and a typed phone number as `<tel:+4930123|+49 30 123>`."""

    def norm(s: str) -> str:
        s = re.sub(r"^(https?://|mailto:|tel:)", "", s.strip().lower()).rstrip("/")
        return re.sub(r"[\s().\-]", "", s) if re.fullmatch(r"[+\d\s().\-]+", s) else s

    return norm(label) == norm(target)


def _link(shown: str) -> Rule:
    """A link: its label as typed when the label only repeats it, else "label (target)"."""

    def rule(token: Token, names: Names) -> str:
        target = token.raw if shown == "url" else token.target
        if not token.label or _same(token.label, target):
            return token.label or target
        return f"{token.label} ({target})"

    return rule


def _user(token: Token, names: Names) -> str | None:
    """A colleague's mention: their name if we know it (an alias or a cached display name), else dropped;
    a user id means nothing to a customer."""
    name = names.get(token.target) or (token.label or "").lstrip("@")
    return name or None


def _channel(token: Token, names: Names) -> str | None:
    return f"#{token.label}" if token.label else None


def _special(token: Token, names: Names) -> str | None:
    """`<!here>`, `<!channel>`, `<!subteam^S1|@team>` ping colleagues: dropped. A `<!date^…|fallback>`
    keeps its fallback, the only part that reads as text without Slack."""
    return token.label if token.target.startswith("date^") and token.label else None


RULES: tuple[tuple[str, Rule], ...] = (
    ("@", _user),
    ("#", _channel),
    ("!", _special),
    ("mailto:", _link("target")),
    ("tel:", _link("target")),
    ("http://", _link("url")),
    ("https://", _link("url")),
)
"""Prefix of a token's body → its rule; the first match wins. A body no rule knows (another URL scheme)
reads as a link."""


def _rule(body: str) -> tuple[str, Rule]:
    lowered = body.lower()
    return next(((p, r) for p, r in RULES if lowered.startswith(p)), ("", _link("url")))


def mentioned(text: str) -> list[str]:
    """The user ids `text` mentions, for the caller to look their names up before `to_plain`."""
    return [m.group("body")[1:].split("|", 1)[0] for m in _TOKEN.finditer(text) if m.group("body").startswith("@")]


_SHORTCODE = re.compile(r"(?<!\w):(?P<name>[a-z0-9_+'\-]+):(?::skin-tone-(?P<tone>[2-6]):)?(?!\w)")
"""`:name:`, optionally followed by Slack's skin tone (`:skin-tone-2:` is the lightest, 6 the darkest), standing
on its own: inside a word or a figure ("order #12:100:x", "a:b:c") it is text, not 💯 or 🅱️."""

_CODE = re.compile(r"```.*?```|`[^`\n]*`", re.DOTALL)
"""Code blocks and spans, whose text is not Slack markup for emoji."""

_TONES = {str(n): chr(0x1F3FB + n - 2) for n in range(2, 7)}
"""Slack's skin-tone-2..6 are the Unicode Fitzpatrick modifiers U+1F3FB..U+1F3FF."""

SLACK_ONLY = {"simple_smile": "\U0001F642"}
"""Names Slack has and the alias table does not, where no rule below derives them."""

_GENDERED = (("female-", "woman_"), ("male-", "man_"))
"""Slack's `:female-technologist:` is the alias table's `:woman_technologist:`."""


def _spellings(name: str) -> Iterator[str]:
    """The alias table's candidate names for a Slack name (Slack joins some words with `-`, the table with `_`)."""
    yield name
    yield name.replace("-", "_")
    for slack, table in _GENDERED:
        if name.startswith(slack):
            yield table + name[len(slack):].replace("-", "_")


def _flag(name: str) -> str | None:
    """`:flag-de:`: the two regional indicator letters, if Unicode has that flag."""
    code = name.removeprefix("flag-")
    if name.startswith("flag-") and re.fullmatch(r"[a-z]{2}", code):
        flag = "".join(chr(0x1F1E6 + ord(c) - ord("a")) for c in code)
        return flag if emoji.is_emoji(flag) else None
    return None


@functools.lru_cache(maxsize=4096)
def emoji_for(name: str, tone: str | None = None) -> str | None:
    """The emoji for Slack's shortcode `name` (with skin `tone` 2-6, if given), or None for one we do not
    know (a workspace's custom emoji). A tone the emoji cannot take is dropped, not spelled out."""
    found = next((e for e in map(_alias, _spellings(name)) if e is not None), None) or _flag(name) \
        or SLACK_ONLY.get(name)
    if found is None or tone is None:
        return found
    # The modifier follows the first code point (before a ZWJ sequence's rest); a variation selector goes.
    toned = found[0] + _TONES[tone] + found[1:].removeprefix("\ufe0f")
    return toned if emoji.is_emoji(toned) else found


def _alias(name: str) -> str | None:
    shortcode = f":{name}:"
    out = emoji.emojize(shortcode, language="alias")
    return out if out != shortcode else None


def _emojize_text(text: str) -> str:
    """Shortcodes to emoji in plain text; an unknown one is kept, and its closing colon may open the next."""
    out: list[str] = []
    pos = 0
    while (m := _SHORTCODE.search(text, pos)) is not None:
        found = emoji_for(m.group("name"), m.group("tone"))
        if found is None:
            out.append(text[pos:m.start() + 1])
            pos = m.start() + 1
            continue
        out.append(text[pos:m.start()] + found)
        pos = m.end()
    out.append(text[pos:])
    return "".join(out)


def emojize(text: str) -> str:
    """`_emojize_text` outside code spans and blocks.

    >>> emojize("On its way :package: :+1::skin-tone-2: `:package:` :our-logo:")
    'On its way 📦 👍🏻 `:package:` :our-logo:'
    """
    out: list[str] = []
    last = 0
    for m in _CODE.finditer(text):
        out.append(_emojize_text(text[last:m.start()]))
        out.append(m.group())
        last = m.end()
    out.append(_emojize_text(text[last:]))
    return "".join(out)


def to_plain(text: str, names: Names | None = None) -> str:
    """`text` as Slack sent it, in plain text for a customer; `names` maps user ids to what to call them.

    >>> to_plain("See <https://example.com/a?b=1&amp;c=2|the guide> &amp; <http://x.io|x.io> <!here>")
    'See the guide (https://example.com/a?b=1&c=2) & x.io'
    """
    known = names or {}

    def one(match: re.Match[str]) -> str:
        body = match.group("body")
        prefix, rule = _rule(body)
        target, _, label = body.partition("|")
        token = Token(unescape(target[len(prefix):]), unescape(label) if label else None, unescape(target))
        plain = rule(token, known)
        return "" if plain is None else match.group("pre") + plain

    out: list[str] = []
    last = 0
    for match in _TOKEN.finditer(text):
        out.append(emojize(unescape(text[last:match.start()])))
        out.append(one(match))
        last = match.end()
    out.append(emojize(unescape(text[last:])))
    return "".join(out)
