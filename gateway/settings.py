"""Typed settings from the environment and `.env`.

A bad value must stop start-up with one line naming the variable, and secrets are `SecretStr` so they
never reach a log line or a traceback by accident.
"""

from __future__ import annotations

import os
import secrets
import time
from enum import StrEnum
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class LogFormat(StrEnum):
    AUTO = "auto"
    JSON = "json"
    CONSOLE = "console"


MAX_PARTITIONS = 1024
"""The most `SWITCHBOARD_PARTITIONS` allows (and so the most stream partitions a Redis can hold for us)."""


class ConfigError(RuntimeError):
    """Start-up configuration problem; its message is the one line the operator sees."""


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    redis_url: str | None = Field(default=None, validation_alias=_env("REDIS_URL"))
    port: int = Field(default=8080, ge=1, le=65535, validation_alias=_env("PORT"))
    metrics_port: int | None = Field(default=None, ge=1, le=65535, validation_alias=_env("SWITCHBOARD_METRICS_PORT"))
    """`/metrics` of a process without the web role (a worker, a learner): its counters (decisions, SLA
    breaches, Slack calls) live in that process, and the web process's `/metrics` cannot see them."""
    host: str = Field(default="127.0.0.1", validation_alias=_env("SWITCHBOARD_HOST"))
    public_url: str | None = Field(default=None, validation_alias=_env("SWITCHBOARD_PUBLIC_URL"))

    slack_bot_token: SecretStr | None = Field(default=None, validation_alias=_env("SLACK_BOT_TOKEN"))
    slack_signing_secret: SecretStr | None = Field(default=None, validation_alias=_env("SLACK_SIGNING_SECRET"))
    slack_app_token: SecretStr | None = Field(default=None, validation_alias=_env("SLACK_APP_TOKEN"))
    slack_oauth_enabled: bool = Field(default=False, validation_alias=_env("SLACK_OAUTH_ENABLED"))
    slack_team_id: str | None = Field(default=None, pattern=r"^[TE][A-Z0-9]+$", validation_alias=_env("SLACK_TEAM_ID"))
    slack_api_url: str | None = Field(default=None, validation_alias=_env("SLACK_API_URL"))

    policy_file: Path | None = Field(default=None, validation_alias=_env("SWITCHBOARD_POLICY_FILE"))
    api_secret: SecretStr | None = Field(default=None, validation_alias=_env("SWITCHBOARD_API_SECRET"))
    api_callback_url: str | None = Field(default=None, validation_alias=_env("SWITCHBOARD_API_CALLBACK_URL"))

    log_format: LogFormat = Field(default=LogFormat.AUTO, validation_alias=_env("SWITCHBOARD_LOG_FORMAT"))
    log_level: str = Field(default="info", validation_alias=_env("SWITCHBOARD_LOG_LEVEL"))
    data_dir: Path = Field(default=Path(".switchboard"), validation_alias=_env("SWITCHBOARD_DATA_DIR"))
    event_loop: str = Field(
        default="uvloop", pattern=r"^(uvloop|asyncio)$", validation_alias=_env("SWITCHBOARD_EVENT_LOOP")
    )

    partitions: int = Field(default=8, ge=1, le=MAX_PARTITIONS, validation_alias=_env("SWITCHBOARD_PARTITIONS"))
    lease_ms: int = Field(default=15000, ge=500, le=600_000, validation_alias=_env("SWITCHBOARD_LEASE_MS"))
    reclaim_idle_ms: int = Field(
        default=30000, ge=100, le=3_600_000, validation_alias=_env("SWITCHBOARD_RECLAIM_IDLE_MS")
    )
    reopen_window_s: int = Field(default=7 * 86400, ge=0, validation_alias=_env("SWITCHBOARD_REOPEN_WINDOW"))
    max_body_bytes: int = Field(
        default=64 * 1024, ge=1024, le=10 * 1024 * 1024, validation_alias=_env("SWITCHBOARD_MAX_BODY")
    )

    automation: str = Field(
        default="builtin", pattern=r"^(builtin|webhook|off)$", validation_alias=_env("SWITCHBOARD_AUTOMATION")
    )
    bot_quiet_s: int = Field(default=1800, ge=10, le=7 * 86400, validation_alias=_env("SWITCHBOARD_BOT_RESOLVE_AFTER"))
    kb_file: Path | None = Field(default=None, validation_alias=_env("SWITCHBOARD_KB_FILE"))
    bot_webhook_url: str | None = Field(default=None, validation_alias=_env("SWITCHBOARD_BOT_WEBHOOK_URL"))
    bot_webhook_secret: SecretStr | None = Field(default=None, validation_alias=_env("SWITCHBOARD_BOT_WEBHOOK_SECRET"))
    agents_raw: str = Field(default="", validation_alias=_env("SWITCHBOARD_AGENTS"))
    leads_raw: str = Field(default="", validation_alias=_env("SWITCHBOARD_LEADS"))
    note_prefix: str = Field(
        default="note:", min_length=1, max_length=20, validation_alias=_env("SWITCHBOARD_NOTE_PREFIX")
    )
    slack_channel_rate: float = Field(default=1.0, gt=0, le=1000, validation_alias=_env("SLACK_CHANNEL_RATE"))

    aliases_raw: str = Field(default="", validation_alias=_env("SWITCHBOARD_AGENT_ALIASES"))

    @field_validator("aliases_raw")
    @classmethod
    def _aliases(cls, v: str) -> str:
        for item in filter(None, (x.strip() for x in v.split(","))):
            user, sep, name = item.partition("=")
            if not sep or not user.strip().startswith(("U", "W")) or not name.strip():
                raise ValueError(f"{item!r} is not <Slack user id>=<name shown to customers>")
        return v

    @property
    def aliases(self) -> dict[str, str]:
        """Slack user id -> the name customers see (instead of the Slack display name)."""
        pairs = (x.partition("=") for x in self.aliases_raw.split(",") if x.strip())
        return {u.strip(): n.strip() for u, _, n in pairs}

    @field_validator("agents_raw", "leads_raw")
    @classmethod
    def _user_ids(cls, v: str) -> str:
        for item in filter(None, (x.strip() for x in v.split(","))):
            if not item.startswith(("U", "W", "S")) or not item.isalnum():
                raise ValueError(f"{item!r} is not a Slack user or user-group id (U…, W… or S…)")
        return v

    @property
    def agents(self) -> frozenset[str]:
        """Slack user ids allowed to work conversations; empty means everyone (local mode)."""
        return frozenset(filter(None, (x.strip() for x in self.agents_raw.split(","))))

    @property
    def leads(self) -> frozenset[str]:
        return frozenset(filter(None, (x.strip() for x in self.leads_raw.split(","))))

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, v: str | None) -> str | None:
        """Checked here, not by redis-py at the first connect: `http://…` was a 20-line traceback there, and
        `redis://host/abc` quietly used database 0 (a test worker joined a live deployment that way)."""
        if not v:
            return None
        parts = urlsplit(v)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ValueError("must start with redis://, rediss:// or unix://")
        db = parts.path.strip("/") if parts.scheme != "unix" else ""
        if parts.scheme != "unix" and not parts.hostname:
            raise ValueError("names no host (redis://host:6379/0)")
        if db and not db.isdigit():
            raise ValueError(f"database {db!r} must be a number (redis://host:6379/0)")
        return v

    @field_validator("slack_api_url", "api_callback_url", "public_url", "bot_webhook_url")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        if not v:
            return None
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        return v

    @field_validator("log_level")
    @classmethod
    def _level(cls, v: str) -> str:
        v = v.lower()
        if v not in {"debug", "info", "warning", "error"}:
            raise ValueError("must be one of debug, info, warning, error")
        return v

    @field_validator("slack_bot_token")
    @classmethod
    def _bot_token(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and not v.get_secret_value().startswith("xoxb-"):
            raise ValueError("must be a bot token starting with xoxb-")
        return v

    @field_validator("slack_app_token")
    @classmethod
    def _app_token(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and not v.get_secret_value().startswith("xapp-"):
            raise ValueError("must be an app-level token starting with xapp-")
        return v

    @model_validator(mode="after")
    def _slack_pair(self) -> Settings:
        if self.slack_bot_token and not self.slack_signing_secret:
            raise ValueError("SLACK_SIGNING_SECRET is required when SLACK_BOT_TOKEN is set")
        if self.slack_oauth_enabled and not (self.slack_signing_secret and self.slack_team_id):
            raise ValueError("SLACK_SIGNING_SECRET and SLACK_TEAM_ID are required when SLACK_OAUTH_ENABLED is true")
        if self.automation == "webhook" and not (self.bot_webhook_url and self.bot_webhook_secret):
            raise ValueError(
                "SWITCHBOARD_BOT_WEBHOOK_URL and SWITCHBOARD_BOT_WEBHOOK_SECRET are required "
                "with SWITCHBOARD_AUTOMATION=webhook"
            )
        return self

    @property
    def slack_configured(self) -> bool:
        """Real Slack (or an explicitly configured API URL); otherwise the emulator is mounted locally."""
        return self.slack_bot_token is not None or self.slack_oauth_enabled

    def secret_values(self) -> list[str]:
        """Every secret in force, for the log redactor."""
        found = [
            self.slack_bot_token,
            self.slack_signing_secret,
            self.slack_app_token,
            self.api_secret,
            self.bot_webhook_secret,
        ]
        return [s.get_secret_value() for s in found if s is not None and s.get_secret_value()]

    def ensure_local_secret(self, name: str) -> SecretStr:
        """A generated secret kept in the data folder, so local mode needs no configuration at all."""
        return self.local_secret(name)[0]

    def local_secret(self, name: str) -> tuple[SecretStr, bool]:
        """(the folder's secret, whether this call generated it). Created exclusively: web, worker and learner
        started together (honcho) each wrote their own, and the last write won only on disk, so the processes
        signed and checked with different secrets until restarted."""
        path = self.data_dir / f"{name}.secret"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        value = secrets.token_hex(24)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            for _ in range(50):  # another process is writing it this instant
                if kept := path.read_text().strip():
                    return SecretStr(kept), False
                time.sleep(0.01)
            raise ConfigError(f"configuration error: SWITCHBOARD_DATA_DIR: {path} is empty; delete it") from None
        with os.fdopen(fd, "w") as fh:
            fh.write(value)
        return SecretStr(value), True


_ALIASES = {
    name: (field.validation_alias.choices[0] if isinstance(field.validation_alias, AliasChoices) else name)
    for name, field in Settings.model_fields.items()
}


def load_settings(**overrides: object) -> Settings:
    """Settings or a `ConfigError` whose message names the environment variable at fault."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else ""
        var = _ALIASES.get(field, field)
        msg = str(err["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"configuration error: {var}: {msg}" if var else f"configuration error: {msg}") from None
