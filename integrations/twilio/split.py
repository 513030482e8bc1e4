"""Splitting a long reply into the parts a provider takes, measured the way the provider measures.

Twilio's 1,600-character limit counts UTF-16 code units, not Python's code points: an emoji is one code
point but two units, so a 1,595-code-point reply with a few emoji was sent as one part, refused for good
(error 21617), and the customer got nothing. Parts are cut at a word where one is near the limit, and
never inside what a reader sees as one character (a surrogate pair, an emoji with its skin tone or ZWJ
sequence, a flag, a letter with its combining accents).
"""

from __future__ import annotations

import unicodedata

ZWJ = "\u200d"
_MARKS = frozenset({"Mn", "Mc", "Me"})
"""Combining marks: an accent, a keycap's enclosing square, a vowel sign."""


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, as Twilio counts (surrogatepass: a lone surrogate counts one, not a crash)."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _units(ch: str) -> int:
    return 2 if ord(ch) > 0xFFFF else 1


def _fitting(text: str, size: int) -> int:
    """How many code points from the start of `text` fit in `size` UTF-16 units."""
    used = 0
    for i, ch in enumerate(text):
        used += _units(ch)
        if used > size:
            return i
    return len(text)


def _extends(ch: str) -> bool:
    """A code point that belongs to the one before it (it never starts what the reader sees)."""
    o = ord(ch)
    return (
        ch == ZWJ
        or unicodedata.category(ch) in _MARKS
        or 0xFE00 <= o <= 0xFE0F  # variation selectors (text or emoji style)
        or 0x1F3FB <= o <= 0x1F3FF  # skin tones
        or 0xE0020 <= o <= 0xE007F  # tags (subdivision flags)
        or 0xE0100 <= o <= 0xE01EF  # variation selectors supplement
        or 0xDC00 <= o <= 0xDFFF  # a low surrogate left unpaired in the text: keep it with its high half
    )


def _regional(ch: str) -> bool:
    return 0x1F1E6 <= ord(ch) <= 0x1F1FF


def _joined(text: str, cut: int) -> bool:
    """Whether cutting `text` before index `cut` would split one user-perceived character."""
    before, after = text[cut - 1], text[cut]
    if before == ZWJ or _extends(after) or (before == "\r" and after == "\n"):
        return True
    if _regional(before) and _regional(after):  # a flag is a pair: inside one when the run so far is odd
        run = 0
        while cut - 1 - run >= 0 and _regional(text[cut - 1 - run]):
            run += 1
        return run % 2 == 1
    return False


def _safe(text: str, cut: int) -> int:
    """`cut`, moved back to the nearest boundary between user-perceived characters; a single "character"
    longer than a whole part (hundreds of combining marks) is cut where it must, between code points."""
    at = cut
    while 0 < at < len(text) and _joined(text, at):
        at -= 1
    return at if at > 0 else cut


def chunks(text: str, size: int) -> list[str]:
    """`text` in parts of at most `size` UTF-16 units, cut at a space or line break in the second half of
    a part where there is one (whitespace at the cut is dropped), else as late as the limit allows."""
    parts: list[str] = []
    while utf16_len(text) > size:
        limit = max(_fitting(text, size), 1)
        space = max(text.rfind(" ", 0, limit), text.rfind("\n", 0, limit))
        cut = _safe(text, space if space > limit // 2 else limit)
        part = text[:cut].rstrip()
        if part:
            parts.append(part)
        text = text[cut:].lstrip()
    return [*parts, text] if text else parts
