"""Meta WhatsApp Cloud API channel: `setup(app, redis=…, ingest=…, session=…, config=WhatsAppConfig())`."""

from integrations.whatsapp.config import WhatsAppConfig
from integrations.whatsapp.mount import setup
from integrations.whatsapp.sender import WhatsAppCloudChannel

__all__ = ["WhatsAppCloudChannel", "WhatsAppConfig", "setup"]
