"""Configuration of the local Slack emulator.

Pydantic models so that the gateway's settings layer can build the emulator from YAML/env
without a translation step, and so that a typo in a test's config fails loudly.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

# The channels the default routing policy posts to, plus Slack's ever-present #general, so
# that local mode works out of the box without a conversations.create round-trip.
DEFAULT_CHANNELS: tuple[str, ...] = (
    "general",
    "support-leads",
    "support-billing",
    "support-technical",
    "support-shipping",
    "support-account",
    "support-general",
)


class EmulatedUser(BaseModel):
    """A human member of the emulated workspace (agents and leads who act on escalations)."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    real_name: str = ""
    title: str = ""
    is_admin: bool = False
    is_bot: bool = False
    email: str | None = None
    tz: str = "UTC"


def _default_users() -> list[EmulatedUser]:
    return [
        EmulatedUser(id="U0ALICE", name="alice", real_name="Alice Agent", title="Support Agent"),
        EmulatedUser(id="U0BOB", name="bob", real_name="Bob Agent", title="Support Agent"),
        EmulatedUser(id="U0CAROL", name="carol", real_name="Carol Lead", title="Support Lead", is_admin=True),
    ]


class EmulatorConfig(BaseModel):
    """Everything that differs between one emulated workspace and another."""

    model_config = ConfigDict(extra="forbid")

    channels: list[str] = Field(default_factory=lambda: list(DEFAULT_CHANNELS))
    users: list[EmulatedUser] = Field(default_factory=_default_users)
    usergroups: dict[str, list[str]] = Field(
        default_factory=lambda: {"S0SUPPORT": ["U0ALICE", "U0BOB", "U0CAROL"], "S0LEADS": ["U0CAROL"]}
    )
    bot_user_id: str = "U0SWITCHBOARD"
    bot_token: str = "xoxb-emulator"
    app_token: str = "xapp-emulator"
    team_id: str = "T0SWITCHBD"
    team_name: str = "Switchboard Emulator"
    # Messages/second per channel for chat.postMessage; None keeps the emulator unthrottled so
    # ordinary tests are fast, while a number lets tests exercise the client's 429 handling.
    rate_limit_per_channel: float | None = Field(default=None, gt=0)
    # The call log tests assert on keeps the newest calls only, so a long run stays bounded in memory.
    max_recorded_calls: int = Field(default=20_000, ge=1)
    # Keep only the newest messages per channel (None: all). For long soak runs, where a million
    # cards would otherwise fill the emulator's memory, not the gateway's.
    max_messages_per_channel: int | None = Field(default=None, ge=1)
    # Where signed requests back to the gateway go (interactivity, events, slash commands).
    gateway_events_url: str | None = None
    signing_secret: str = ""
    # Slack's legacy verification token, sent inside payloads because real Slack still sends it.
    verification_token: str = "emulator-verification-token"
    # Absolute base of the emulator as the gateway reaches it (for response_url); learned from
    # incoming requests when unset, since the port is often only known once the server runs.
    public_url: str | None = None
    # Slack gives the app 3 s to answer an interaction and to use its trigger_id.
    gateway_timeout: float = Field(default=3.0, gt=0)
    trigger_ttl: float = Field(default=3.0, gt=0)
    # The emulated app's OAuth credentials (oauth.py): what `oauth.v2.access` checks, and where
    # `/oauth/v2/authorize` sends the installer when the request names no redirect_uri.
    client_id: str = "1234567890.0987654321"
    client_secret: str = "emulator-client-secret"
    oauth_redirect_uri: str | None = None
