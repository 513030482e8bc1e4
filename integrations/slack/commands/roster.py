"""Who is an agent or a lead: Slack user ids listed in the settings, or members of listed user groups (S…).

One helper for the desk listeners (buttons, thread replies) and for `/switchboard`, so a user group in
SWITCHBOARD_AGENTS or SWITCHBOARD_LEADS means the same everywhere. Members come from
usergroups.users.list, cached, since Slack rate-limits it; a group that cannot be looked up counts as
empty and is reported, so a missing scope shows up in `whoami` instead of silently letting people in.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass, field

import structlog
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

log = structlog.get_logger(__name__)

DEFAULT_CACHE_S = 300.0


@dataclass(frozen=True)
class Found:
    """Whether the user is in a list of ids, how (listed, or the group they are in), and which groups
    could not be checked."""

    member: bool
    via: str = ""
    unchecked: tuple[str, ...] = ()


LISTED = "listed"


@dataclass
class Roster:
    cache_s: float = DEFAULT_CACHE_S
    _groups: dict[str, tuple[float, frozenset[str] | None]] = field(default_factory=dict)

    async def group_members(self, group: str, client: AsyncWebClient) -> frozenset[str] | None:
        """Members of a Slack user group, or None when the workspace cannot tell us (also cached)."""
        cached = self._groups.get(group)
        if cached is not None and time.monotonic() - cached[0] < self.cache_s:
            return cached[1]
        members: frozenset[str] | None
        try:
            resp = await client.usergroups_users_list(usergroup=group)
            members = frozenset(str(u) for u in resp.get("users") or [])
        except SlackApiError as exc:
            log.warning("usergroup_lookup_failed", usergroup=group, error=str(exc.response.get("error")))
            members = None
        self._groups[group] = (time.monotonic(), members)
        return members

    async def find(self, user: str, ids: Collection[str], client: AsyncWebClient) -> Found:
        """Is `user` one of `ids`, or in one of its user groups? (An empty list means nobody.)"""
        if user in ids:
            return Found(True, LISTED)
        unchecked = []
        for group in sorted(g for g in ids if g.startswith("S")):
            members = await self.group_members(group, client)
            if members is None:
                unchecked.append(group)
            elif user in members:
                return Found(True, group)
        return Found(False, unchecked=tuple(unchecked))
