"""Twilio SMS/WhatsApp channel: `setup(app, redis=…, ingest=…, session=…, config=TwilioConfig())`."""

from integrations.twilio.config import TwilioConfig
from integrations.twilio.mount import setup
from integrations.twilio.sender import TwilioChannel

__all__ = ["TwilioChannel", "TwilioConfig", "setup"]
