"""The team's routing policy: a validated, versioned value object.

The policy is data, not code, so that team leads can change it from Slack without a deploy. Everything
that reads it gets an immutable snapshot; changes produce a new version (see `with_changes`).
"""

from __future__ import annotations

from datetime import time
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StringConstraints,
    field_validator,
    model_serializer,
    model_validator,
)

SkillName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,39}$")]
ChannelName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,79}$")]

DEFAULT_POLICY_PATH = Path(__file__).with_name("default_policy.yaml")


class Sla(BaseModel):
    """Response targets in seconds; the scheduler escalates when they are at risk."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    first_response: int = Field(default=900, ge=30, le=7 * 86400)
    next_response: int = Field(default=3600, ge=30, le=7 * 86400)


class BusinessHours(BaseModel):
    """When humans are at their desks; outside them a human route goes to `after_hours_channel`.

    Kept as wall-clock times in a named zone (not UTC offsets) so daylight-saving changes need no edit.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    timezone: str = "UTC"
    days: tuple[int, ...] = Field(default=(0, 1, 2, 3, 4), description="0 = Monday")
    open: time = time(9, 0)
    close: time = time(17, 0)
    after_hours_channel: ChannelName | None = None

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {v!r}") from exc
        return v

    @field_validator("days")
    @classmethod
    def _days(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v or any(not 0 <= d <= 6 for d in v):
            raise ValueError("days must be weekday numbers 0 (Monday) .. 6 (Sunday), at least one")
        return tuple(sorted(set(v)))

    @model_validator(mode="after")
    def _span(self) -> BusinessHours:
        if self.open == self.close:
            raise ValueError("open and close must differ (omit business_hours for 24/7)")
        return self


class Escalation(BaseModel):
    """How the SLA scheduler walks up the ladder: re-ping, escalation channel, then leads."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    warn_fraction: float = Field(default=0.75, gt=0.0, lt=1.0, description="re-ping at this share of the SLA")
    leads_after: int = Field(default=900, ge=0, le=7 * 86400, description="seconds after breach → leads")
    reassign_claimed: bool = True
    clock: Literal["business", "calendar"] = Field(
        default="business",
        description="business: SLA time runs only within the skill's business hours (unless it has an "
                    "after-hours channel, whose people cover the night); calendar: around the clock",
    )

    @model_serializer(mode="wrap")
    def _without_default_clock(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """`clock` is written only when it is not the default: a release before it forbids unknown fields,
        and could not read (or roll back to) any policy this one stored."""
        data: dict[str, Any] = handler(self)
        if data.get("clock") == "business":
            del data["clock"]
        return data


class SkillRoute(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    channel: ChannelName
    escalation_channel: ChannelName | None = None
    keywords: tuple[str, ...] = ()
    sla: Sla = Sla()
    automation: bool = True
    automation_paused: bool = False
    business_hours: BusinessHours | None = None

    @field_validator("keywords", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> Any:
        return tuple(str(k).strip().lower() for k in v if str(k).strip()) if isinstance(v, list | tuple) else v


class Thresholds(BaseModel):
    """Cut-offs the router compares scores against; names are what `/switchboard threshold` accepts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    automation_success_floor: float = Field(default=0.6, ge=0.0, le=1.0)
    sentiment_floor: float = Field(default=-0.4, ge=-1.0, le=1.0)
    automation_urgency_ceiling: float = Field(default=0.6, ge=0.0, le=1.0)
    urgent: float = Field(default=0.8, ge=0.0, le=1.0)
    skill_confidence_floor: float = Field(default=0.0, ge=0.0, le=1.0)
    sentiment_trend_drop: float = Field(default=0.5, gt=0.0, le=2.0, description="fall from best to latest")
    repeat_similarity: float = Field(default=0.8, gt=0.0, le=1.0, description="word overlap counted as a repeat")


class Policy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(default=1, ge=1)
    skills: dict[SkillName, SkillRoute]
    default_skill: SkillName = "general"
    leads_channel: ChannelName = "support-leads"
    escalation_keywords: tuple[str, ...] = ()
    human_request_phrases: tuple[str, ...] = ()
    vip_tiers: dict[str, int] = Field(default_factory=dict, description="tier -> priority (1 = highest)")
    thresholds: Thresholds = Thresholds()
    automation_paused: bool = False
    business_hours: BusinessHours | None = Field(default=None, description="None = staffed around the clock")
    capacity: dict[str, int] = Field(default_factory=dict, description="Slack user id -> max open claims")
    default_capacity: int = Field(default=5, ge=1, le=1000)
    anyone_can_reply: bool = Field(default=False, description="thread replies reach the customer without a claim")
    returning_window: int = Field(default=72 * 3600, ge=0, description="seconds a resolved customer counts as back")
    escalation: Escalation = Escalation()

    @field_validator("escalation_keywords", "human_request_phrases", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> Any:
        return tuple(str(k).strip().lower() for k in v if str(k).strip()) if isinstance(v, list | tuple) else v

    @model_validator(mode="after")
    def _consistent(self) -> Policy:
        if not self.skills:
            raise ValueError("a policy needs at least one skill")
        if self.default_skill not in self.skills:
            raise ValueError(f"default_skill {self.default_skill!r} is not one of the skills")
        for tier, prio in self.vip_tiers.items():
            if not 1 <= prio <= 4:
                raise ValueError(f"vip tier {tier!r}: priority must be 1..4")
        for agent, cap in self.capacity.items():
            if not 0 <= cap <= 1000:
                raise ValueError(f"capacity for {agent!r} must be 0..1000")
        return self

    def channels(self) -> list[str]:
        """Every Slack channel the policy can post to, so local mode can create them up front."""
        names = {self.leads_channel}
        if self.business_hours and self.business_hours.after_hours_channel:
            names.add(self.business_hours.after_hours_channel)
        for route in self.skills.values():
            names.add(route.channel)
            if route.escalation_channel:
                names.add(route.escalation_channel)
            if route.business_hours and route.business_hours.after_hours_channel:
                names.add(route.business_hours.after_hours_channel)
        return sorted(names)

    def route_for(self, skill: str) -> SkillRoute:
        return self.skills.get(skill) or self.skills[self.default_skill]

    def hours_for(self, skill: str) -> BusinessHours | None:
        """A skill's own hours win over the team's, so e.g. billing can close earlier than tech."""
        route = self.route_for(skill)
        return route.business_hours or self.business_hours

    def automation_enabled(self, skill: str) -> bool:
        route = self.route_for(skill)
        return not self.automation_paused and route.automation and not route.automation_paused

    def capacity_of(self, agent: str) -> int:
        return self.capacity.get(agent, self.default_capacity)

    def escalation_channel_for(self, skill: str) -> str:
        return self.route_for(skill).escalation_channel or self.leads_channel

    def with_skill_changes(self, skill: str, **changes: Any) -> Policy:
        """Change one skill's route (e.g. pause its automation) as a new version."""
        if skill not in self.skills:
            raise PolicyError(f"unknown skill {skill!r}; known: {', '.join(sorted(self.skills))}")
        skills = self.model_dump(mode="json")["skills"]
        skills[skill].update(changes)
        return self.with_changes(skills=skills)

    def skill_keywords(self) -> dict[str, tuple[str, ...]]:
        return {name: route.keywords for name, route in self.skills.items()}

    def with_changes(self, **changes: Any) -> Policy:
        """A validated copy with the next version number; the old policy stays valid for undo."""
        data = self.model_dump(mode="json")
        data.update(changes)
        data["version"] = self.version + 1
        return Policy.model_validate(data)

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, raw: str | bytes) -> Policy:
        return cls.model_validate_json(raw)


class PolicyError(ValueError):
    """A policy file that cannot be used; the message names the file and the field."""


def load_policy(path: str | Path | None = None) -> Policy:
    p = Path(path) if path else DEFAULT_POLICY_PATH
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PolicyError(f"policy file {p}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise PolicyError(f"policy file {p}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise PolicyError(f"policy file {p}: expected a mapping at the top level")
    try:
        return Policy.model_validate(data)
    except ValueError as exc:
        first = exc.errors()[0] if hasattr(exc, "errors") else None  # pydantic ValidationError
        if first:
            where = ".".join(str(x) for x in first["loc"]) or "policy"
            raise PolicyError(f"policy file {p}: {where}: {first['msg']}") from exc
        raise PolicyError(f"policy file {p}: {exc}") from exc
