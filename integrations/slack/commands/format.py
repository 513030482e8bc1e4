"""Answers as Slack text and blocks: the policy, previews, history, stats and model health.

Plain dicts (not block models) because every answer is also read in tests and the emulator's desk;
customer text in dry-run examples is escaped like on cards, and so is everything a lead typed (change
summaries, keywords, echoed values), so neither a preview nor the leads channel can ping `@channel`.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any

from gateway.dead_letters import Parked
from gateway.identity import MergeRecord
from gateway.policy_store import Canary
from gateway.stats import Stats, percentile
from integrations.slack.commands.previews import Pending
from integrations.slack.commands.replay import DryRun
from integrations.slack.escape import escape, truncate
from router.policy import BusinessHours, Policy
from router.sla import duration

APPLY_ACTION = "sb_policy_apply"
DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")

Blocks = list[dict[str, Any]]
_USER_MENTION = re.compile(r"&lt;@([UW][A-Z0-9]{2,})&gt;")


def mrkdwn(text: str) -> str:
    """Text that may hold what a lead typed, made inert: `&`, `<`, `>` escaped, then plain user mentions
    (`<@U…>`, as in "capacity <@U…> = 3" and in refusals naming a lead) let through again. A single-user
    mention cannot broadcast; `<!channel>`, `<!here>`, links and channel mentions stay escaped."""
    return _USER_MENTION.sub(r"<@\1>", escape(text))


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": truncate(text, 2900)}}


def context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": truncate(text, 2900)}]}


def hours_text(h: BusinessHours | None) -> str:
    if h is None:
        return "24/7"
    days = ",".join(DAY_NAMES[d] for d in h.days)
    after = f" (after hours → #{h.after_hours_channel})" if h.after_hours_channel else ""
    return f"{days} {h.open:%H:%M}-{h.close:%H:%M} {h.timezone}{after}"


def policy_text(p: Policy, canary: Canary | None = None) -> str:
    lines = [f"*Routing policy v{p.version}* · default skill `{p.default_skill}` · leads #{p.leads_channel}"]
    auto = "⏸ paused everywhere" if p.automation_paused else "on"
    lines.append(f"Automation: {auto} · hours: {hours_text(p.business_hours)} · "
                 f"default capacity {p.default_capacity}")
    for name, r in sorted(p.skills.items()):
        flags = []
        if not r.automation:
            flags.append("automation off")
        elif r.automation_paused:
            flags.append("automation paused")
        if r.business_hours:
            flags.append(f"hours {hours_text(r.business_hours)}")
        kws = escape(", ".join(r.keywords))  # all: cut at 12, a keyword a lead added never showed
        lines.append(f"• `{name}` → #{r.channel} · SLA first {duration(r.sla.first_response)}, next "
                     f"{duration(r.sla.next_response)}{' · ' + ', '.join(flags) if flags else ''}\n    _{kws}_")
    lines.append(f"Escalation keywords: {escape(', '.join(p.escalation_keywords)) or '–'}")
    t = p.thresholds
    lines.append("Thresholds: " + ", ".join(f"{k} {v:g}" for k, v in t.model_dump().items()))
    if p.capacity:
        lines.append("Capacity: " + ", ".join(f"<@{u}> {n}" for u, n in sorted(p.capacity.items())))
    if canary is not None:
        lines.append(canary_text(canary))
    return "\n".join(lines)


def canary_text(c: Canary) -> str:
    age = duration(time.time() - c.started_at)
    return (f"🐤 *Canary running* for {age}: {mrkdwn(c.summary)} on {c.share:g}% of new conversations "
            f"(started by <@{c.user}> on v{c.base_version})")


def dry_run_blocks(summary: str, result: DryRun, pending: Pending | None, canary: float | None) -> Blocks:
    what = f"*Preview:* {mrkdwn(summary)}" + (f" (as a {canary:g}% canary)" if canary else "")
    blocks: Blocks = [section(what)]
    if result.replayed == 0:
        blocks.append(section("No stored conversations to replay yet."))
    else:
        pct = 100 * result.changed / result.replayed
        lines = [f"Replayed the last *{result.replayed}* conversations: *{result.changed}* would route "
                 f"differently ({pct:.0f}%)."]
        for (a, b), n in result.moves.most_common(10):
            lines.append(f"• {a} → {b}: {n}")
        blocks.append(section("\n".join(lines)))
        for ex in result.examples:
            blocks.append(context(f"`{ex.conversation_id}` “{escape(truncate(ex.text, 120))}” {ex.before} → "
                                  f"{ex.after} · {escape('; '.join(ex.reasons[:4]))}"))
    if pending is not None:
        blocks.append({
            "type": "actions", "block_id": "sb_policy_preview",
            "elements": [{"type": "button", "action_id": APPLY_ACTION, "style": "primary",
                          "text": {"type": "plain_text", "text": "Apply"}, "value": pending.token}],
        })
        blocks.append(context(f"Against policy v{pending.base_version}; the button (or typed `apply`) works for "
                              "15 minutes and only if nobody changed the policy meanwhile."))
    return blocks


def dry_run_text(summary: str, result: DryRun) -> str:
    return f"Preview of {summary}: {result.changed} of {result.replayed} conversations would route differently."


def history_text(rows: list[dict[str, str]]) -> str:
    if not rows:
        return "No policy changes yet."
    lines = ["*Recent policy changes* (newest first)"]
    for r in rows:
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(float(r.get("at", "0"))))
        lines.append(f"• {when} · <@{r.get('user', '?')}> · {mrkdwn(r.get('summary', ''))} "
                     f"(v{r.get('before_version')} → v{r.get('after_version')}) · `{r.get('id', '')}`")
    return "\n".join(lines)


def _t(v: float | None) -> str:
    return "–" if v is None else duration(v)


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.0f}%"


def stats_lines(s: Stats) -> list[str]:
    top = lambda c: ", ".join(f"{k} {n}" for k, n in c.most_common(6)) or "–"  # noqa: E731
    csat = "–" if s.csat_avg is None else f"{s.csat_avg:.2f}/5 ({len(s.csat)} ratings)"
    return [
        f"Conversations: *{s.conversations}* · by channel: {top(s.by_channel)}",
        f"By skill: {top(s.by_skill)}",
        f"Automation: {_pct(s.automation_share)} of conversations, success {_pct(s.automation_success)}",
        f"First response: median {_t(percentile(s.first_response_s, 50))}, p90 "
        f"{_t(percentile(s.first_response_s, 90))} · resolution: median {_t(percentile(s.resolution_s, 50))}, "
        f"p90 {_t(percentile(s.resolution_s, 90))}",
        f"SLA breaches: {s.breaches} · transfers (misroutes): {s.transfers} · CSAT: {csat}",
    ]


def stats_text(label: str, s: Stats, arms: dict[str, Stats] | None = None, canary: Canary | None = None) -> str:
    lines = [f"*Stats, last {label}*", *stats_lines(s)]
    if canary is not None:  # said from its start, before either arm has a conversation to count
        lines.append(f"\n{canary_text(canary)}")
        if not arms:
            lines.append("_No conversation has landed in either arm yet._")
        for arm, st in (arms or {}).items():
            lines.append(f"*{arm}* ({st.conversations} conversations): first response median "
                         f"{_t(percentile(st.first_response_s, 50))}, resolution median "
                         f"{_t(percentile(st.resolution_s, 50))}, transfers {st.transfers}, CSAT "
                         f"{'–' if st.csat_avg is None else f'{st.csat_avg:.2f}'}, breaches {st.breaches}")
    return "\n".join(lines)


def models_text(health: dict[str, dict[str, Any]]) -> str:
    lines = ["*Model health*"]
    for name, h in sorted(health.items()):
        acc = h.get("rolling_accuracy")
        age = h.get("snapshot_age_s")
        state = "⚠️ fallen back to rules" if h.get("fallback") else f"weight {h.get('weight', 0):.2f}"
        lines.append(
            f"• *{name}*: {h.get('labels_seen', 0)} labels, rolling accuracy "
            f"{'–' if acc is None else f'{acc:.2f}'}, drift alarms {h.get('drift_alarms', 0)}, {state}, "
            f"snapshot v{h.get('snapshot_version', 0)}{'' if age is None else f' ({duration(age)} old)'}"
        )
    return "\n".join(lines)


def dead_text(total: int, rows: list[Parked], command: str) -> str:
    if not total:
        return "Nothing is parked: every entry was handled."
    lines = [f"*{total} parked*: work that failed again and again for a reason of its own, or replies the customer's "
             "channel would not take (outages are waited out):"]
    lines += [f"• `{r.conversation_id}` {r.kind}: {escape(truncate(r.error, 200))}" for r in rows]
    if total > len(rows):
        lines.append(f"… and {total - len(rows)} more.")
    lines.append(f"Fix the cause, then `{command} dead replay` queues them again (a lead's command).")
    return "\n".join(lines)


def merges_text(ref: str, person: str, rows: list[MergeRecord], command: str) -> str:
    if not rows:
        return f"{escape(ref)} (`{person}`) was never merged with anyone."
    lines = [f"Merges of {escape(ref)} (`{person}`), newest first:"]
    for r in rows:
        when = datetime.fromtimestamp(r.at, UTC).strftime("%Y-%m-%d %H:%M UTC")
        facts = ", ".join(escape(i) for i in r.identities) or "no identities"
        state = " (undone)" if r.undone else ""
        lines.append(f"• `{r.id}` {when}: `{r.from_person}` joined into `{r.into}` with {facts}{state}")
    lines.append(f"A wrong merge: `{command} unmerge <id>` gives the joined person back their identities and "
                 "conversations (a lead's command).")
    return "\n".join(lines)


def help_text(command: str) -> str:
    c = command
    return "\n".join([
        f"*{c}* — steer routing without a deploy. Viewing is open to agents; changes need a lead.",
        f"`{c} policy` · `{c} history` · `{c} stats [24h|7d]` · `{c} models` · `{c} whoami`",
        f"`{c} route <skill> #channel` · `{c} skill add|remove <skill> [keywords...]`",
        f'`{c} keyword add|remove "<phrase>" escalate|<skill>` · `{c} threshold <name> <value>`',
        f"`{c} sla <skill> first=5m next=30m` · `{c} hours <skill|team> Mon-Fri 09:00-18:00 Europe/Berlin`",
        f"`{c} automation pause|resume [skill]` · `{c} capacity @agent <n>`",
        f"`{c} undo` takes back your newest change; `{c} undo <id>` the newest change by anyone (ids in "
        f"`{c} history`)",
        f"`{c} dead` lists work parked after failing; `{c} dead replay` queues it again (leads)",
        f"`{c} merges <customer>` lists who a customer was joined with; `{c} unmerge <id>` undoes one (leads)",
        "Any change: `--dry-run` previews it on recent conversations (then `apply` or the button); "
        "`--canary 10%` tries it on a share of new conversations (not `sla` or `capacity`, which always "
        f"follow the live policy); `{c} canary status|promote|drop`; live changes apply to a running canary too.",
    ])
