"""Settings for the optional multi-workspace install (Slack OAuth v2).

Kept apart from `gateway.settings.Settings` so the single-workspace gateway (one SLACK_BOT_TOKEN) does
not grow fields it never reads, and so the OAuth pieces can be tested without a gateway. Off by default:
a team that runs Switchboard in its own workspace needs no client id, secret or redirect URL.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# What the gateway calls (see DEFAULT_SCOPES' test for the method → scope table) plus `commands`
# for the /switchboard slash command. `channels:manage` only matters when the desk creates its
# routing channels itself; `groups:*` lets it work in private support channels too;
# `usergroups:read` resolves agent/lead lists given as user groups (S… ids).
DEFAULT_SCOPES: tuple[str, ...] = (
    "chat:write",
    "channels:read",
    "channels:history",
    "channels:manage",
    "groups:read",
    "groups:history",
    "users:read",
    "usergroups:read",
    "reactions:write",
    "commands",
)

INSTALL_PATH = "/slack/install"
REDIRECT_PATH = "/slack/oauth_redirect"


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class SlackOAuthConfig(BaseSettings):
    """Environment for the install flow; secrets are `SecretStr` so they never reach a log line."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    enabled: bool = Field(default=False, validation_alias=_env("SLACK_OAUTH_ENABLED"))
    client_id: str | None = Field(default=None, validation_alias=_env("SLACK_CLIENT_ID"))
    client_secret: SecretStr | None = Field(default=None, validation_alias=_env("SLACK_CLIENT_SECRET"))
    # NoDecode: pydantic-settings would otherwise expect JSON; Slack (and bolt) spell scopes "a,b,c".
    scopes: Annotated[tuple[str, ...], NoDecode] = Field(default=DEFAULT_SCOPES, validation_alias=_env("SLACK_SCOPES"))
    # Must equal one of the app's Redirect URLs; None lets Slack use the app's only one.
    redirect_uri: str | None = Field(
        default=None, validation_alias=_env("SLACK_OAUTH_REDIRECT_URI", "SLACK_REDIRECT_URI")
    )
    # Only changed to point the flow at the local emulator (`<base>/_slack/oauth/v2/authorize`).
    authorize_url: str | None = Field(default=None, validation_alias=_env("SLACK_OAUTH_AUTHORIZE_URL"))
    state_ttl_s: int = Field(default=600, ge=30, le=3600, validation_alias=_env("SLACK_OAUTH_STATE_TTL"))
    # bolt can show an "Add to Slack" page first; a plain redirect suits an install link on our site.
    install_page: bool = Field(default=False, validation_alias=_env("SLACK_OAUTH_INSTALL_PAGE"))
    key_prefix: str = Field(default="sb:slack", min_length=1, validation_alias=_env("SLACK_OAUTH_KEY_PREFIX"))

    @field_validator("scopes", mode="before")
    @classmethod
    def _split_scopes(cls, v: object) -> object:
        if isinstance(v, str):
            return tuple(s.strip() for s in v.split(",") if s.strip())
        return v

    @field_validator("redirect_uri", "authorize_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if not v:
            return None
        if not v.startswith(("https://", "http://")):
            raise ValueError("must be a URL starting with https:// (or http:// for local testing)")
        return v

    @model_validator(mode="after")
    def _complete_when_enabled(self) -> SlackOAuthConfig:
        if not self.enabled:
            return self
        if not self.client_id:
            raise ValueError("SLACK_CLIENT_ID is required when SLACK_OAUTH_ENABLED is true")
        if self.client_secret is None or not self.client_secret.get_secret_value():
            raise ValueError("SLACK_CLIENT_SECRET is required when SLACK_OAUTH_ENABLED is true")
        if not self.scopes:
            raise ValueError("SLACK_SCOPES must name at least one bot scope")
        return self

    def secret_values(self) -> list[str]:
        """For the log redactor, like `Settings.secret_values`."""
        if self.client_secret is None or not self.client_secret.get_secret_value():
            return []
        return [self.client_secret.get_secret_value()]
