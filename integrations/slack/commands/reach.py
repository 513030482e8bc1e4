"""Before a policy change commits, every channel it would newly post to must exist, with Switchboard in it.

Otherwise the change is answered ✅ and announced, and the next card for that skill fails with
channel_not_found (or not_in_channel): the customer's message goes through the retries to the dead
letters. Checking once, before the commit, turns that into one clear line for the lead.

In local mode (the emulator; `SlackDesk.create_missing`) a missing channel is created, as at start-up.
Switchboard never joins a channel by itself: that needs the channels:join scope, which the app does
not ask for (manifest.yml), so a channel without it is refused with what to do instead.
"""

from __future__ import annotations

from typing import Any

import structlog
from slack_sdk.errors import SlackApiError

from gateway.policy_admin import ChangeError
from integrations.slack.commands.context import CommandContext
from router.policy import Policy

log = structlog.get_logger(__name__)


def new_channels(before: Policy, after: Policy) -> list[str]:
    """Channels `after` may post to that `before` did not (the only ones a change can break)."""
    return sorted(set(after.channels()) - set(before.channels()))


async def _visible(ctx: CommandContext) -> dict[str, bool]:
    """Channel name -> whether Switchboard is a member, for every unarchived channel the bot can see
    (public channels, and the private ones it is in)."""
    out: dict[str, bool] = {}
    cursor: str | None = None
    while True:
        resp: Any = await ctx.client.conversations_list(
            limit=200, cursor=cursor, types="public_channel,private_channel", exclude_archived=True)
        for ch in resp.get("channels") or []:
            out[str(ch["name"])] = bool(ch.get("is_member", False))
        cursor = (resp.get("response_metadata") or {}).get("next_cursor") or None
        if not cursor:
            return out


def _problem(name: str, visible: dict[str, bool]) -> str | None:
    if name not in visible:
        return f"no channel #{name}: create it and invite @Switchboard first"
    if not visible[name]:
        return f"invite @Switchboard to #{name} first (`/invite @Switchboard` in the channel)"
    return None


async def require_channels(ctx: CommandContext, before: Policy, after: Policy) -> None:
    """Refuse (ChangeError) unless every new channel of `after` can take cards; local mode creates them."""
    needed = new_channels(before, after)
    if not needed:
        return
    try:
        visible = await _visible(ctx)
        missing = [n for n in needed if n not in visible]
        if missing and ctx.desk is not None and ctx.desk.create_missing:
            await ctx.desk.ensure_channels(missing)
            log.info("policy_channels_created", channels=missing)
            visible.update(dict.fromkeys(missing, True))
    except SlackApiError as exc:
        error = str(exc.response.get("error"))
        log.warning("policy_channels_unchecked", channels=needed, error=error)
        raise ChangeError(f"could not check #{', #'.join(needed)} ({error}); try again") from None
    for name in needed:
        problem = _problem(name, visible)
        if problem:
            log.info("policy_channel_refused", channel=name, reason=problem)
            raise ChangeError(problem)
