"""What a lead types reaches Slack inert, and what Slack sends (should_escape: true) is read as typed.

Slack sends `&`, `<`, `>` typed by the user as entities and mentions as `<@U…|name>` / `<#C…|name>`; the
tokenizer reverses the entities, and every answer, announcement and view escapes lead text again, so
`keyword add "<!channel>" …` cannot ping the leads channel.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from integrations.slack.commands.format import mrkdwn
from integrations.slack.commands.grammar import UsageError, days, tokenize
from integrations.slack.commands.handlers import VERBS
from tests.harness import Gateway, eventually
from tests.test_commands_support import Slash, cmd_gw

__all__ = ["cmd_gw"]

ROOT = Path(__file__).resolve().parents[1]
RAW_MARKUP = re.compile(r"<!(channel|here|everyone)")


def leads(gw: Gateway) -> list[str]:
    return [str(m.get("text", "")) for m in gw.slack.messages("support-leads")]


@pytest.mark.parametrize(
    ("sent", "tokens"),
    [
        ('keyword add "AT&amp;T" technical', ["keyword", "add", "AT&T", "technical"]),
        ('keyword add "&lt;b&gt; &amp;amp;" escalate', ["keyword", "add", "<b> &amp;", "escalate"]),
        ("capacity <@U0JANE|jane> 3", ["capacity", "<@U0JANE|jane>", "3"]),
        ("route billing <#C0PAY123|support-payments>", ["route", "billing", "<#C0PAY123|support-payments>"]),
        ("keyword add “R&amp;D” escalate --dry-run", ["keyword", "add", "R&D", "escalate", "--dry-run"]),
    ],
)
def test_tokenize_reads_slack_escaped_text_as_typed(sent: str, tokens: list[str]) -> None:
    assert tokenize(sent) == tokens


def test_days_are_day_names_only() -> None:
    assert days("Mon-Fri") == (0, 1, 2, 3, 4) and days("monday,Wednesday") == (0, 2) and days("tues") == (1,)
    for bad in ("Mon<!here>", "Monkey", "Mo", "Fri-Sunday!"):
        with pytest.raises(UsageError, match="use day names"):
            days(bad)


def test_mrkdwn_keeps_user_mentions_and_defuses_the_rest() -> None:
    assert mrkdwn("capacity <@U0JANE> = 3") == "capacity <@U0JANE> = 3"
    assert mrkdwn('keyword add "<!channel> <http://x|y> <#C1>" & more') == \
        'keyword add "&lt;!channel&gt; &lt;http://x|y&gt; &lt;#C1&gt;" &amp; more'


def test_manifest_sends_escaped_text_and_advertises_real_commands() -> None:
    manifest = yaml.safe_load((ROOT / "manifest.yml").read_text(encoding="utf-8"))
    (command,) = [c for c in manifest["features"]["slash_commands"] if c["command"] == "/switchboard"]
    assert command["should_escape"] is True
    advertised = [w.split()[0] for w in command["usage_hint"].strip("[]").split("|") if w.strip() != "…"]
    assert advertised and all(verb in VERBS for verb in advertised), advertised


async def test_slack_escaped_keyword_is_stored_as_typed(cmd_gw: Gateway) -> None:
    slash = Slash(cmd_gw)
    assert (await slash.text('keyword add "AT&amp;T" technical')).startswith("✅")
    assert (await slash.text('keyword add "R&amp;D" escalate')).startswith("✅")
    policy = await cmd_gw.rt.policies.current(force=True)
    assert "at&t" in policy.skills["technical"].keywords and "r&d" in policy.escalation_keywords
    assert "r&amp;d" in await slash.text("policy")  # shown escaped, so Slack renders it as typed


async def test_lead_text_is_escaped_everywhere_it_is_shown(cmd_gw: Gateway) -> None:
    slash = Slash(cmd_gw)
    answer = await slash.text('keyword add "<!channel>" escalate')
    assert answer.startswith('✅ keyword add "&lt;!channel&gt;" → escalate'), answer
    announced = await eventually(lambda: leads(cmd_gw))
    assert "&lt;!channel&gt;" in announced[0] and not RAW_MARKUP.search(announced[0]), announced
    again = await slash.text('keyword add "&lt;!here&gt;" escalate')  # as Slack escapes a typed "<!here>"
    assert again.startswith('✅ keyword add "&lt;!here&gt;"'), again
    refused = await slash.text('keyword add "<!channel>" escalate')
    assert refused.startswith("⚠️ '&lt;!channel&gt;' is already a keyword"), refused
    for view in ("policy", "history"):
        text = await slash.text(view)
        assert "&lt;!channel&gt;" in text and not RAW_MARKUP.search(text), (view, text)
    hours = await slash.text("hours team Mon<!here> 09:00-17:00 UTC")
    assert hours.startswith("⚠️ days 'Mon&lt;!here&gt;': use day names"), hours
    assert (await slash.text("hours team monday-friday 9:00-17:00 UTC")).startswith(
        "✅ hours team: Mon-Fri 09:00-17:00 UTC")
    started = await slash.text('keyword add "<!everyone>" escalate --canary 10%')
    assert started.startswith('🐤 Canary started: keyword add "&lt;!everyone&gt;"'), started
    assert "&lt;!everyone&gt;" in await slash.text("policy")
    await eventually(lambda: len(leads(cmd_gw)) >= 4)
    posted = leads(cmd_gw)
    assert not any(RAW_MARKUP.search(t) for t in posted), posted
    blocks = json.dumps(await slash('keyword add "<!here> now" escalate --dry-run'), ensure_ascii=False)
    assert "&lt;!here&gt; now" in blocks and not RAW_MARKUP.search(blocks)
