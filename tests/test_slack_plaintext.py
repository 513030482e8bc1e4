"""Slack's markup in an agent's reply, as the customer reads it: one row per rule, and properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from integrations.slack.escape import escape
from integrations.slack.plaintext import mentioned, to_plain

NAMES = {"U0BOB": "Bob from Support"}

CASES: list[tuple[str, str]] = [
    ("<https://shop.example/track?id=1&amp;c=2|track your parcel>",
     "track your parcel (https://shop.example/track?id=1&c=2)"),
    ("<https://shop.example/a|https://shop.example/a>", "https://shop.example/a"),
    ("<http://example.com|example.com>", "example.com"),  # Slack's auto-link of a typed domain
    ("<https://example.com/>", "https://example.com/"),
    ("<mailto:help@example.com|help@example.com>", "help@example.com"),
    ("<mailto:help@example.com|write to us>", "write to us (help@example.com)"),
    ("<mailto:help@example.com>", "help@example.com"),
    ("<tel:+4930123456|+49 30 123456>", "+49 30 123456"),
    ("<tel:+4930123456>", "+4930123456"),
    ("ask <@U0BOB>", "ask Bob from Support"),
    ("thanks <@U0CAROL>, bye", "thanks, bye"),  # unknown: dropped with its space
    ("ask <@U0DAVE|dave>", "ask dave"),  # the older form carries the name
    ("see <#C0123|billing>", "see #billing"),
    ("see <#C0123>", "see"),
    ("<!here> refund sent", " refund sent"),
    ("refund sent <!channel> <!everyone>", "refund sent"),
    ("hi <!subteam^S0LEADS|@leads>", "hi"),
    ("on <!date^1392734382^{date}|Feb 18, 2014>", "on Feb 18, 2014"),
    ("<ftp://files.example/x|the file>", "the file (ftp://files.example/x)"),
    ("a &lt;b&gt; &amp; c", "a <b> & c"),
    ("&amp;lt;", "&lt;"),  # the agent typed "&lt;": unescaped once, not twice
    ("line one\n<https://x.example|x.example>", "line one\nx.example"),
    ("no markup at all", "no markup at all"),
]


@pytest.mark.parametrize(("slack", "plain"), CASES)
def test_each_rule(slack: str, plain: str) -> None:
    assert to_plain(slack, NAMES) == plain


def test_mentioned_lists_user_ids_only() -> None:
    assert mentioned("<@U0BOB> and <@U0DAVE|dave> in <#C1|x> <!here>") == ["U0BOB", "U0DAVE"]


@given(st.text())
def test_anything_typed_comes_back_as_typed(typed: str) -> None:
    """Slack escapes `&`, `<`, `>` in what a person types, so no typed text is ever read as markup."""
    assert to_plain(escape(typed)) == typed


_WORD = st.text(st.characters(blacklist_categories=("Z", "C")), min_size=1, max_size=8)
_ALONE = [(s, p.strip()) for s, p in CASES if s.startswith("<") and s.endswith(">") and ">" not in s[1:-1]]
_TOKENS = st.sampled_from(_ALONE)


@given(st.lists(st.one_of(_WORD.map(lambda w: (escape(w), w)), _TOKENS), max_size=8))
def test_words_and_tokens_mix_without_leftover_markup(pieces: list[tuple[str, str]]) -> None:
    """Any mix of typed words and Slack tokens, space-separated: each piece reads as it would alone, and a
    dropped token leaves no gap."""
    slack = " ".join(s for s, _ in pieces)
    expected = " ".join(p for _, p in pieces if p)
    assert to_plain(slack, NAMES).strip() == expected
