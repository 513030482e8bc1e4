"""Emoji an agent picks in Slack arrive in the event text as shortcodes; the customer reads the emoji.

Before: "Let me check the carrier for you :package:" reached SMS, WhatsApp, web chat and API customers with the
shortcode spelled out, and a thumbs-up read ":+1::skin-tone-2:".
"""

from __future__ import annotations

import pytest

from integrations.slack.plaintext import to_plain
from tests.conftest import Callback
from tests.harness import Gateway, eventually
from tests.test_desk import desk_gw, new_card, sender

__all__ = ["desk_gw"]

ROWS: list[tuple[str, str]] = [
    ("Let me check the carrier for you :package:", "Let me check the carrier for you 📦"),
    ("Happy to help :slightly_smiling_face:", "Happy to help 🙂"),
    (":+1: :white_check_mark: :tada:", "👍 ✅ 🎉"),
    (":+1::skin-tone-2: done", "👍🏻 done"),  # Slack's tone 2 is the lightest Fitzpatrick modifier
    (":wave::skin-tone-6:", "👋🏿"),
    (":v::skin-tone-3:", "✌🏼"),  # the variation selector gives way to the modifier
    (":man-bowing::skin-tone-4: sorry", "🙇🏽\u200d♂️ sorry"),  # Slack's hyphen, a ZWJ sequence
    (":female-technologist: on it", "👩\u200d💻 on it"),  # Slack's female-/male- names
    (":flag-de: shipping", "🇩🇪 shipping"),
    (":simple_smile:", "🙂"),  # Slack's own name
    (":heart::skin-tone-2:", "❤️"),  # a tone the emoji cannot take is dropped, not spelled out
    ("see :our-logo: soon", "see :our-logo: soon"),  # a workspace's custom emoji has no Unicode form
    (":our-logo::skin-tone-2:", ":our-logo::skin-tone-2:"),
    ("opens 10:30:00 sharp", "opens 10:30:00 sharp"),
    ("ratio 1:2 :package:", "ratio 1:2 📦"),  # an unknown `:2` does not swallow the next one's colon
    ("order #12:100:x", "order #12:100:x"),  # inside a word or a figure it is text, not 💯 (diff review)
    ("a:b:c", "a:b:c"),
    ("(:smile:)", "(😄)"),
    ("run `docker pull app:latest:x:` then :x:", "run `docker pull app:latest:x:` then ❌"),  # code is kept
    ("```\n:package:\n``` :package:", "```\n:package:\n``` 📦"),
    ("<https://t.example/1|:package: tracking> :package:", ":package: tracking (https://t.example/1) 📦"),
    ("Bob here <@U0BOB> :+1:", "Bob here Bob from Support 👍"),
]


@pytest.mark.parametrize(("slack", "plain"), ROWS)
def test_shortcodes_read_as_emoji(slack: str, plain: str) -> None:
    assert to_plain(slack, {"U0BOB": "Bob from Support"}) == plain


async def test_an_agents_emoji_reach_the_customer(desk_gw: Gateway, callback: Callback) -> None:
    conv_id, card, channel = await new_card(desk_gw)
    assert (await desk_gw.rt.ops.claim(conv_id, "U0ALICE")).ok
    text = "Refund sent :white_check_mark: :+1::skin-tone-2: (ref `:x:`) :our-logo:"
    await sender(desk_gw).message("U0ALICE", channel, text, thread_ts=card["ts"])
    (got,) = await eventually(lambda: callback.received)
    assert got["text"] == "Refund sent ✅ 👍🏻 (ref `:x:`) :our-logo:"
