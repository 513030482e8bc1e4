"""Meta WhatsApp Cloud API settings; the channel is mounted only when all four secrets/ids are set."""

from __future__ import annotations

import re

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

TEMPLATE = re.compile(r"([a-z0-9_]{1,512}):([a-z]{2,3}(?:_[A-Za-z0-9]{2,4})?)")
"""`<name>:<language code>`: Meta's template names are lowercase letters, digits and underscores; its language
codes are `en`, `en_US`, `es_MX`, `prs_AF` (an underscore, never a hyphen: `en-US` is refused at send)."""


class WhatsAppConfig(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    app_secret: SecretStr | None = Field(default=None, validation_alias=AliasChoices("WHATSAPP_APP_SECRET"))
    verify_token: SecretStr | None = Field(default=None, validation_alias=AliasChoices("WHATSAPP_VERIFY_TOKEN"))
    access_token: SecretStr | None = Field(default=None, validation_alias=AliasChoices("WHATSAPP_ACCESS_TOKEN"))
    phone_number_id: str | None = Field(default=None, validation_alias=AliasChoices("WHATSAPP_PHONE_NUMBER_ID"))
    api_url: str = Field(default="https://graph.facebook.com/v20.0", validation_alias=AliasChoices("WHATSAPP_API_URL"))
    max_body: int = Field(default=1024 * 1024, ge=1024, validation_alias=AliasChoices("WHATSAPP_MAX_BODY"))
    """Meta batches many changes into one delivery, so this is larger than the JSON API's limit."""
    reengage_template: str | None = Field(default=None, validation_alias=AliasChoices("WHATSAPP_REENGAGE_TEMPLATE"))
    """`<template name>:<language code>` of an approved template without parameters, sent when an agent answers
    after WhatsApp's 24-hour window closed (`gateway.reengage`); unset, such a reply is refused."""

    @field_validator("reengage_template")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        """A malformed value stops start-up: Meta would refuse it only at the first late reply, days later."""
        if value is None or not value.strip():
            return None
        if not TEMPLATE.fullmatch(value.strip()):
            raise ValueError("expected <template name>:<language code>, e.g. support_followup:en_US (the name in "
                             "lowercase letters, digits and _)")
        return value.strip()

    def reengage(self) -> tuple[str, str] | None:
        """(template name, language code), or None when no template is configured."""
        if not self.reengage_template:
            return None
        name, code = self.reengage_template.split(":")
        return name, code

    def missing(self) -> list[str]:
        required = {
            "WHATSAPP_APP_SECRET": self.app_secret, "WHATSAPP_VERIFY_TOKEN": self.verify_token,
            "WHATSAPP_ACCESS_TOKEN": self.access_token, "WHATSAPP_PHONE_NUMBER_ID": self.phone_number_id,
        }
        return [name for name, value in required.items() if not value]
