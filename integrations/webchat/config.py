"""Web chat settings from the environment.

Web chat must work on a laptop with nothing configured, so every field has a local-mode default; the
generated token secret only holds for one process, which is why production sets WEBCHAT_TOKEN_SECRET.

The abuse limits (sessions per client address, sockets per visitor, address and process, idle and dead
sockets) default to what a public page can live with; see `limits.py` for why each one exists.
"""

from __future__ import annotations

import secrets

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from integrations.webchat.clientip import Network, parse_networks


class WebchatConfig(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    allowed_origins: str | None = Field(default=None, validation_alias=AliasChoices("WEBCHAT_ALLOWED_ORIGINS"))
    token_secret: SecretStr | None = Field(default=None, validation_alias=AliasChoices("WEBCHAT_TOKEN_SECRET"))
    identity_secret: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("WEBCHAT_IDENTITY_SECRET")
    )
    public_url: str | None = Field(default=None, validation_alias=AliasChoices("SWITCHBOARD_PUBLIC_URL"))
    token_ttl_s: int = Field(default=900, ge=30, le=86400, validation_alias=AliasChoices("WEBCHAT_TOKEN_TTL"))
    rate_messages: int = Field(default=10, ge=1, le=1000, validation_alias=AliasChoices("WEBCHAT_RATE_MESSAGES"))
    rate_window_s: int = Field(default=10, ge=1, le=3600, validation_alias=AliasChoices("WEBCHAT_RATE_WINDOW"))
    trusted_proxies: int = Field(default=0, ge=0, le=10, validation_alias=AliasChoices("WEBCHAT_TRUSTED_PROXIES"))
    """Proxies in front of the gateway that append to X-Forwarded-For; 0 = use the socket peer (see clientip.py)."""
    trusted_proxy_nets: str | None = Field(
        default=None, validation_alias=AliasChoices("WEBCHAT_TRUSTED_PROXY_NETS")
    )
    """Comma-separated CIDRs the proxies connect from; X-Forwarded-For from any other peer is ignored.
    Kept as text (a list type would make pydantic-settings expect JSON in the variable); see `proxy_nets`."""
    session_rate: int = Field(default=30, ge=1, le=100_000, validation_alias=AliasChoices("WEBCHAT_SESSION_RATE"))
    session_window_s: int = Field(
        default=60, ge=1, le=86400, validation_alias=AliasChoices("WEBCHAT_SESSION_WINDOW")
    )
    max_sockets: int = Field(default=5000, ge=1, le=1_000_000, validation_alias=AliasChoices("WEBCHAT_MAX_SOCKETS"))
    """Per web process; also held under 3/4 of the process's open-file limit (see limits.socket_cap)."""
    sockets_per_visitor: int = Field(
        default=5, ge=1, le=100, validation_alias=AliasChoices("WEBCHAT_SOCKETS_PER_VISITOR")
    )
    sockets_per_ip: int = Field(default=50, ge=1, le=100_000, validation_alias=AliasChoices("WEBCHAT_SOCKETS_PER_IP"))
    heartbeat_s: int = Field(default=25, ge=1, le=300, validation_alias=AliasChoices("WEBCHAT_HEARTBEAT"))
    idle_timeout_s: int = Field(default=1800, ge=1, le=86400, validation_alias=AliasChoices("WEBCHAT_IDLE_TIMEOUT"))

    @field_validator("trusted_proxy_nets")
    @classmethod
    def _networks(cls, value: str | None) -> str | None:
        """Refuse to start on a network that does not parse, rather than trust nobody (or everybody) silently."""
        return ",".join(str(net) for net in parse_networks(value)) or None

    @property
    def proxy_nets(self) -> tuple[Network, ...]:
        return parse_networks(self.trusted_proxy_nets)

    @property
    def origins(self) -> frozenset[str]:
        """Explicit allow-list; empty means "the gateway's own origin only"."""
        raw = self.allowed_origins or ""
        return frozenset(o.strip().rstrip("/") for o in raw.split(",") if o.strip())

    def token_key(self) -> tuple[bytes, bool]:
        """The signing key and whether it was generated (tokens then die with this process)."""
        if self.token_secret is not None:
            return self.token_secret.get_secret_value().encode(), False
        return secrets.token_bytes(32), True
