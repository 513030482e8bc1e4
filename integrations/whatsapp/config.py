"""Meta WhatsApp Cloud API settings; the channel is mounted only when all four secrets/ids are set."""

from __future__ import annotations

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class WhatsAppConfig(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    app_secret: SecretStr | None = Field(default=None, validation_alias=AliasChoices("WHATSAPP_APP_SECRET"))
    verify_token: SecretStr | None = Field(default=None, validation_alias=AliasChoices("WHATSAPP_VERIFY_TOKEN"))
    access_token: SecretStr | None = Field(default=None, validation_alias=AliasChoices("WHATSAPP_ACCESS_TOKEN"))
    phone_number_id: str | None = Field(default=None, validation_alias=AliasChoices("WHATSAPP_PHONE_NUMBER_ID"))
    api_url: str = Field(default="https://graph.facebook.com/v20.0", validation_alias=AliasChoices("WHATSAPP_API_URL"))
    max_body: int = Field(default=1024 * 1024, ge=1024, validation_alias=AliasChoices("WHATSAPP_MAX_BODY"))
    """Meta batches many changes into one delivery, so this is larger than the JSON API's limit."""

    def missing(self) -> list[str]:
        required = {
            "WHATSAPP_APP_SECRET": self.app_secret, "WHATSAPP_VERIFY_TOKEN": self.verify_token,
            "WHATSAPP_ACCESS_TOKEN": self.access_token, "WHATSAPP_PHONE_NUMBER_ID": self.phone_number_id,
        }
        return [name for name, value in required.items() if not value]
