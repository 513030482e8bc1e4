"""What the command handlers need from the runtime, and who may do what.

Kept as one small dataclass so `gateway/app.py` wires it in one line (`CommandContext.from_runtime(rt)`)
and tests can build it from the same runtime the real gateway uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
import structlog
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from gateway.policy_admin import PolicyAdmin
from gateway.policy_store import PolicyStore
from gateway.scheduler import SlaScheduler
from gateway.settings import Settings
from gateway.store import ConversationStore
from integrations.slack.commands.grammar import UsageError
from integrations.slack.commands.previews import Previews
from integrations.slack.commands.roster import LISTED, Roster
from integrations.slack.desk import SlackDesk
from learners.service import LearnerScorer

if TYPE_CHECKING:
    from gateway.runtime import Runtime

log = structlog.get_logger(__name__)

DEFAULT_COMMAND = "/switchboard"
GROUP_CACHE_S = 60.0


@dataclass(frozen=True)
class Role:
    """Who the user is to Switchboard, and why (shown by `whoami`, and in every refusal)."""

    agent: bool
    lead: bool
    why: str


@dataclass
class CommandContext:
    redis: aioredis.Redis
    store: ConversationStore
    policies: PolicyStore
    scorer: LearnerScorer | None
    scheduler: SlaScheduler | None
    settings: Settings
    client: AsyncWebClient
    desk: SlackDesk | None = None
    command: str = DEFAULT_COMMAND
    dry_run_n: int = 500
    admin: PolicyAdmin = field(init=False)
    previews: Previews = field(init=False)
    roster: Roster = field(default_factory=lambda: Roster(GROUP_CACHE_S), init=False)

    def __post_init__(self) -> None:
        self.admin = PolicyAdmin(self.redis, self.policies)
        self.previews = Previews(self.redis, self.admin)

    @classmethod
    def from_runtime(cls, rt: Runtime, command: str = DEFAULT_COMMAND) -> CommandContext:
        scorer = rt.pipeline.scorer
        return cls(
            redis=rt.redis, store=rt.store, policies=rt.policies,
            scorer=scorer if isinstance(scorer, LearnerScorer) else None,
            scheduler=rt.sla.scheduler, settings=rt.settings, client=rt.client, desk=rt.desk, command=command,
        )

    async def model_health(self) -> dict[str, dict[str, Any]] | None:
        """Health of the newest published models: a web-only process never hot-swaps on its own, so
        pull the latest snapshot first (a no-op when nothing newer exists)."""
        if self.scorer is None:
            return None
        try:
            await self.scorer.refresh(self.redis)
        except Exception as exc:  # a bad snapshot must not break `models`; health shows what is served
            log.warning("model_refresh_failed", error=repr(exc))
        return self.scorer.health()

    @property
    def local_mode(self) -> bool:
        return not self.settings.slack_configured

    async def role(self, user: str) -> Role:
        """Lead if in SWITCHBOARD_LEADS, agent if a lead or in SWITCHBOARD_AGENTS (empty: everyone);
        user groups (S…) in either list are expanded exactly as the desk does (`Roster`)."""
        leads, agents = self.settings.leads, self.settings.agents
        if not leads and self.local_mode:
            return Role(True, True, "local mode with no SWITCHBOARD_LEADS configured: everyone is a lead")
        lead = await self.roster.find(user, leads, self.client)
        if lead.member:
            return Role(True, True, "listed in SWITCHBOARD_LEADS" if lead.via == LISTED
                        else f"member of lead user group {lead.via}")
        agent = await self.roster.find(user, agents, self.client) if agents else None
        why = "not in SWITCHBOARD_LEADS" if leads else "no leads are configured (SWITCHBOARD_LEADS)"
        if agent is not None and not agent.member:
            why = "not in SWITCHBOARD_AGENTS or SWITCHBOARD_LEADS" if leads else "not in SWITCHBOARD_AGENTS"
        elif agent is not None and agent.via != LISTED:
            why += f"; member of agent user group {agent.via}"
        unchecked = lead.unchecked + (agent.unchecked if agent else ())
        if unchecked:
            where = "in local mode (the emulator has no such user group)" if self.local_mode else \
                "(usergroups.users.list failed; the app needs the usergroups:read scope)"
            why += f"; user groups {', '.join(unchecked)} cannot be checked {where}"
        return Role(agent is None or agent.member, False, why)

    async def leads_channel_id(self) -> str:
        policy = await self.policies.current()
        if self.desk is not None:
            return await self.desk.channel_id(policy.leads_channel)
        return policy.leads_channel

    async def announce(self, text: str) -> None:
        """Applied changes are public to the leads: one line in the leads channel."""
        try:
            await self.client.chat_postMessage(channel=await self.leads_channel_id(), text=text)
        except SlackApiError as exc:
            log.warning("leads_announce_failed", error=str(exc.response.get("error")))

    async def channel_name(self, channel_id: str) -> str:
        """A `<#C123>` mention without its name (newer Slack clients send it that way)."""
        try:
            resp: Any = await self.client.conversations_info(channel=channel_id)
            return str(resp["channel"]["name"])
        except SlackApiError:
            raise UsageError(f"channel {channel_id} is not visible to Switchboard; invite @Switchboard to it first"
                             ) from None
