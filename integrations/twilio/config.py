"""Twilio settings from the environment; the channel is mounted only when all required ones are set."""

from __future__ import annotations

import re

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

CONTENT_SID = re.compile(r"HX[0-9a-fA-F]{32}")
"""A Content API template's SID, as Twilio documents it."""


class TwilioConfig(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    auth_token: SecretStr | None = Field(default=None, validation_alias=AliasChoices("TWILIO_AUTH_TOKEN"))
    account_sid: str | None = Field(default=None, validation_alias=AliasChoices("TWILIO_ACCOUNT_SID"))
    from_number: str | None = Field(default=None, validation_alias=AliasChoices("TWILIO_FROM_NUMBER"))
    whatsapp_from: str | None = Field(default=None, validation_alias=AliasChoices("TWILIO_WHATSAPP_FROM"))
    """Sender for WhatsApp replies; defaults to `whatsapp:<TWILIO_FROM_NUMBER>`."""
    api_url: str = Field(default="https://api.twilio.com", validation_alias=AliasChoices("TWILIO_API_URL"))
    public_url: str | None = Field(default=None, validation_alias=AliasChoices("SWITCHBOARD_PUBLIC_URL"))
    timeout_s: float = Field(default=15.0, gt=0, le=120, validation_alias=AliasChoices("TWILIO_TIMEOUT"))
    """Seconds to wait for Twilio's answer to one send; past it the send is looked up before any resend."""
    max_body: int = Field(default=64 * 1024, ge=1024, validation_alias=AliasChoices("SWITCHBOARD_MAX_BODY"))
    whatsapp_reengage_content_sid: str | None = Field(
        default=None, validation_alias=AliasChoices("TWILIO_WHATSAPP_REENGAGE_CONTENT_SID"))
    """Content SID (`HX…`) of a WhatsApp-approved template without variables, sent when an agent answers after
    WhatsApp's 24-hour window closed (`gateway.reengage`); unset, such a reply is refused."""

    @field_validator("whatsapp_reengage_content_sid")
    @classmethod
    def _content_sid(cls, value: str | None) -> str | None:
        """A malformed SID stops start-up: Twilio would refuse it only at the first late reply, days later."""
        if value is None or not value.strip():
            return None
        if not CONTENT_SID.fullmatch(value.strip()):
            raise ValueError("expected a Content SID: HX and 32 hexadecimal digits")
        return value.strip()

    def status_callback(self) -> str | None:
        """Where Twilio reports each reply's delivery: only with a public URL Twilio can reach."""
        return f"{self.public_url.rstrip('/')}/channels/twilio/status" if self.public_url else None

    def missing(self) -> list[str]:
        required = {
            "TWILIO_AUTH_TOKEN": self.auth_token, "TWILIO_ACCOUNT_SID": self.account_sid,
            "TWILIO_FROM_NUMBER": self.from_number,
        }
        return [name for name, value in required.items() if not value]
