"""Splitting replies into provider-sized parts: UTF-16 units as Twilio counts them, cut between characters.

The end-to-end check (a reply Twilio's stand-in refuses when a part is too long) is in test_twilio.py;
these are the invariants over any text, including emoji sequences, flags and combining accents.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from integrations.twilio.split import chunks, utf16_len

PIECES = ["a", "word", " ", "\n", "é", "e\u0301", "👍", "👍🏽", "👨‍👩‍👧", "🇩🇪", "🇫🇷", "1️⃣", "日本", "\r\n", "🏴󠁧󠁢󠁳󠁣󠁴󠁿"]
"""Text made of whole user-perceived characters, so every place between two pieces is a fair cut."""
STARTS_NOTHING = ("\u200d", "\u0301", "\ufe0f", "\u20e3", "\U0001f3fd", "\U000e0067", "\n")


def _cuts_between_pieces(text: str, parts: list[str]) -> bool:
    """Each part, found in order in the text, starts and ends where one piece meets the next."""
    return not any(p.startswith(STARTS_NOTHING) or p.endswith(("\u200d", "\r")) for p in parts)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(PIECES), max_size=900), st.sampled_from([16, 37, 160, 1600]))
def test_parts_fit_in_utf16_units_and_never_split_a_character(pieces: list[str], size: int) -> None:
    text = "".join(pieces).strip()  # a text that fits is sent as it is; the invariants are about the cuts
    parts = chunks(text, size)
    assert all(utf16_len(p) <= size for p in parts)
    assert all(p.strip() for p in parts)  # nothing empty is sent
    assert "".join("".join(parts).split()) == "".join(text.split())  # only whitespace at the cuts is dropped
    assert all(p.encode("utf-8") for p in parts)  # no half of a surrogate pair
    assert _cuts_between_pieces(text, parts)


def test_a_flag_run_is_cut_between_flags_and_a_word_boundary_is_preferred() -> None:
    flags = "🇩🇪" * 10  # 40 units
    assert [utf16_len(p) for p in chunks(flags, 18)] == [16, 16, 8]
    assert "".join(chunks(flags, 18)) == flags
    assert chunks("alpha beta gamma delta", 12) == ["alpha beta", "gamma delta"]

