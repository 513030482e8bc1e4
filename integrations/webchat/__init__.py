"""Web chat widget channel: `setup(app, redis=…, ingest=…, session=…, config=WebchatConfig())`."""

from integrations.webchat.config import WebchatConfig
from integrations.webchat.mount import setup
from integrations.webchat.outbox import (
    WebchatChannel,
    customer_typing,
    publish_status,
    publish_typing,
    request_csat,
    set_eta,
)

__all__ = [
    "WebchatChannel", "WebchatConfig", "customer_typing", "publish_status", "publish_typing", "request_csat",
    "set_eta", "setup",
]
