"""Policy-changing commands turned into `Change`s: a summary plus a function of the live policy.

Builders run on whatever policy is live when the change commits (see `gateway.policy_admin`), so a
concurrent change by another lead is kept, never overwritten. Arguments are parsed up front (one
clear line on a bad value); the policy model validates the result.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from gateway.policy_admin import Change, ChangeError
from integrations.slack.commands import grammar
from integrations.slack.commands.grammar import UsageError
from router.policy import Policy, Sla, Thresholds

MAX_CAPACITY = 1000
_SKILL_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")


class Resolver(Protocol):
    """Slack look-ups a change may need (a channel mention without its name)."""

    async def channel_name(self, channel_id: str) -> str: ...


Builder = Callable[[list[str], Resolver], Awaitable[Change]]


def _need(args: list[str], n: int, usage: str) -> None:
    if len(args) < n:
        raise UsageError(f"usage: {usage}")


def _skill(policy: Policy, skill: str) -> None:
    if skill not in policy.skills:
        raise ChangeError(f"unknown skill {skill!r}; skills are {', '.join(sorted(policy.skills))}")


def _skills(policy: Policy) -> dict[str, Any]:
    return dict(policy.model_dump(mode="json")["skills"])


def _skill_name(name: str) -> str:
    if not _SKILL_NAME.match(name):
        raise UsageError(f"skill name {name!r}: lowercase letters, digits, - and _, starting with a letter (≤ 40)")
    return name


async def route(args: list[str], resolve: Resolver) -> Change:
    _need(args, 2, "route <skill> #channel")
    if len(args) > 2:
        raise UsageError("usage: route <skill> #channel (one channel, no spaces in its name)")
    skill = args[0].lower()
    channel_id, name = grammar.channel(args[1])
    if name is None and channel_id is not None:
        name = await resolve.channel_name(channel_id)
    assert name is not None

    def build(p: Policy) -> Policy:
        _skill(p, skill)
        return p.with_skill_changes(skill, channel=name)

    return Change(f"route {skill} → #{name}", build)


def _matchable(*keywords: str) -> None:
    """A keyword with no letter or digit ('€', '👍') tokenises to nothing: it matched every emoji-only or
    non-Latin message before, and matches nothing now, so it is refused rather than stored as a dead rule."""
    dead = [k for k in keywords if not any(c.isalnum() for c in k)]
    if dead:
        raise UsageError(f"a keyword needs a letter or digit (in any script): {', '.join(map(repr, dead))}")


async def skill(args: list[str], resolve: Resolver) -> Change:
    _need(args, 2, "skill add|remove <skill> [keywords...]")
    op, name, words = args[0].lower(), args[1].lower(), [w.strip().lower() for w in args[2:] if w.strip()]
    if op == "add":
        _skill_name(name)
        _matchable(*words)
        def add(p: Policy) -> Policy:
            skills = _skills(p)
            if name not in skills:
                skills[name] = {"channel": f"support-{name}", "keywords": words}
            else:
                kws = list(skills[name]["keywords"])
                skills[name]["keywords"] = kws + [w for w in words if w not in kws]
            return p.with_changes(skills=skills)

        what = f"skill {name}: add keywords {', '.join(words)}" if words else f"skill {name}: add"
        return Change(what, add)
    if op == "remove":
        def remove(p: Policy) -> Policy:
            _skill(p, name)
            skills = _skills(p)
            if words:
                missing = [w for w in words if w not in skills[name]["keywords"]]
                if missing:
                    raise ChangeError(f"skill {name} has no keyword {', '.join(missing)}")
                skills[name]["keywords"] = [k for k in skills[name]["keywords"] if k not in words]
            else:
                if name == p.default_skill:
                    raise ChangeError(f"{name} is the default skill and cannot be removed")
                del skills[name]
            return p.with_changes(skills=skills)

        what = f"skill {name}: remove keywords {', '.join(words)}" if words else f"skill {name}: remove"
        return Change(what, remove)
    raise UsageError("usage: skill add|remove <skill> [keywords...]")


async def keyword(args: list[str], resolve: Resolver) -> Change:
    usage = 'keyword add|remove "<phrase>" escalate|<skill>'
    _need(args, 3, usage)
    op, phrase, target = args[0].lower(), args[1].strip().lower(), args[2].lower()
    if op not in ("add", "remove") or not phrase:
        raise UsageError(f"usage: {usage}")
    if op == "add":
        _matchable(phrase)

    def edit(existing: list[str]) -> list[str]:
        if op == "add":
            if phrase in existing:
                raise ChangeError(f"{phrase!r} is already a keyword for {target}")
            return [*existing, phrase]
        if phrase not in existing:
            raise ChangeError(f"{phrase!r} is not a keyword for {target}")
        return [k for k in existing if k != phrase]

    def build(p: Policy) -> Policy:
        if target == "escalate":
            return p.with_changes(escalation_keywords=edit(list(p.escalation_keywords)))
        _skill(p, target)
        return p.with_skill_changes(target, keywords=edit(list(p.skills[target].keywords)))

    return Change(f'keyword {op} "{phrase}" → {target}', build)


def threshold_help() -> str:
    parts = []
    for name, info in Thresholds.model_fields.items():
        lo = next((getattr(m, a) for m in info.metadata for a in ("ge", "gt") if getattr(m, a, None) is not None), None)
        hi = next((getattr(m, a) for m in info.metadata for a in ("le", "lt") if getattr(m, a, None) is not None), None)
        parts.append(f"{name} ({lo:g}..{hi:g})" if lo is not None and hi is not None else name)
    return ", ".join(parts)


async def threshold(args: list[str], resolve: Resolver) -> Change:
    _need(args, 2, "threshold <name> <value>")
    name = args[0].lower()
    if name not in Thresholds.model_fields:
        raise UsageError(f"unknown threshold {name!r}; thresholds are {threshold_help()}")
    value = grammar.number(args[1], name)

    def build(p: Policy) -> Policy:
        return p.with_changes(thresholds={**p.thresholds.model_dump(mode="json"), name: value})

    return Change(f"threshold {name} = {value:g}", build)


async def sla(args: list[str], resolve: Resolver) -> Change:
    usage = "sla <skill> first=5m next=30m"
    _need(args, 2, usage)
    name, changes = args[0].lower(), {}
    for arg in args[1:]:
        key, sep, value = arg.partition("=")
        field = {"first": "first_response", "next": "next_response"}.get(key.lower())
        if not sep or field is None:
            raise UsageError(f"{arg!r}: use first=<duration> and/or next=<duration>, e.g. {usage}")
        changes[field] = grammar.duration(value, f"{key} response")
    lo, hi = (Sla.model_fields["first_response"].metadata[i] for i in (0, 1))
    for field, secs in changes.items():
        if not getattr(lo, "ge", 0) <= secs <= getattr(hi, "le", 7 * 86400):
            raise UsageError(f"{field.replace('_', ' ')} {secs}s: must be from 30s to 7d")

    def build(p: Policy) -> Policy:
        _skill(p, name)
        return p.with_skill_changes(name, sla={**p.skills[name].sla.model_dump(mode="json"), **changes})

    shown = " ".join(f"{k.split('_')[0]}={v // 60}m" if v % 60 == 0 else f"{k.split('_')[0]}={v}s"
                     for k, v in changes.items())
    return Change(f"sla {name}: {shown}", build)


async def hours(args: list[str], resolve: Resolver) -> Change:
    usage = "hours <skill|team> Mon-Fri 09:00-18:00 Europe/Berlin (or: hours <skill|team> off)"
    _need(args, 2, usage)
    name = args[0].lower()
    if args[1].lower() in ("off", "24/7", "always"):
        spec: dict[str, Any] | None = None
        what = f"hours {name}: none of its own" if name != "team" else "hours team: 24/7"
    else:
        _need(args, 4, usage)
        opens, closes = grammar.clock_span(args[2])
        days = grammar.days(args[1])
        spec = {"days": list(days), "open": opens.isoformat("minutes"),
                "close": closes.isoformat("minutes"), "timezone": args[3]}
        what = f"hours {name}: {grammar.days_text(days)} {spec['open']}-{spec['close']} {args[3]}"

    def build(p: Policy) -> Policy:
        if name != "team":
            _skill(p, name)
        # A skill without hours of its own follows the team's, night team included: new hours for it keep that
        # after-hours channel (dropped, its cards went at night to its own channel, which nobody watches).
        current = p.business_hours if name == "team" else p.hours_for(name)
        new = None
        if spec is not None:
            after = current.after_hours_channel if current else None
            new = {**spec, "after_hours_channel": after}
        if name == "team":
            return p.with_changes(business_hours=new)
        return p.with_skill_changes(name, business_hours=new)

    return Change(what, build)


async def automation(args: list[str], resolve: Resolver) -> Change:
    _need(args, 1, "automation pause|resume [skill]")
    op = args[0].lower()
    if op not in ("pause", "resume"):
        raise UsageError("usage: automation pause|resume [skill]")
    paused = op == "pause"
    name = args[1].lower() if len(args) > 1 else None

    def build(p: Policy) -> Policy:
        if name is not None:
            _skill(p, name)
            if not paused and p.automation_paused:
                # Paused everywhere: "resume billing" said "nothing to change" and billing stayed paused. The
                # pause moves onto each other skill, so only the one named resumes.
                skills = _skills(p)
                for other, route in skills.items():
                    route["automation_paused"] = other != name or False
                return p.with_changes(automation_paused=False, skills=skills)
            return p.with_skill_changes(name, automation_paused=paused)
        if paused:
            return p.with_changes(automation_paused=True)
        # "Everywhere" means every skill too: a skill paused on its own would otherwise stay paused.
        skills = _skills(p)
        for route in skills.values():
            route["automation_paused"] = False
        return p.with_changes(automation_paused=False, skills=skills)

    if name is None and not paused:
        return Change("automation resume everywhere, skill pauses included", build)
    return Change(f"automation {op} {name or 'everywhere'}", build)


async def capacity(args: list[str], resolve: Resolver) -> Change:
    _need(args, 2, "capacity @agent <n>")
    agent = grammar.user(args[0])
    n = grammar.integer(args[1], "capacity", 0, MAX_CAPACITY)

    def build(p: Policy) -> Policy:
        return p.with_changes(capacity={**p.capacity, agent: n})

    return Change(f"capacity <@{agent}> = {n}", build)


BUILDERS: dict[str, Builder] = {
    "route": route,
    "skill": skill,
    "keyword": keyword,
    "threshold": threshold,
    "sla": sla,
    "hours": hours,
    "automation": automation,
    "capacity": capacity,
}
