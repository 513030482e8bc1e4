"""A local stand-in for the Slack Web API so the gateway runs and is tested with no network.

Mount with ``parent.add_subapp("/_slack/", create_emulator_app(config))`` and point slack_sdk at
``<base>/_slack/api/``; or run it standalone and use ``<base>/api/``.
"""

from .app import EMULATOR_STATE, create_emulator_app
from .config import EmulatedUser, EmulatorConfig
from .state import EmulatorState, RecordedCall, SlackError

__all__ = [
    "EMULATOR_STATE",
    "EmulatedUser",
    "EmulatorConfig",
    "EmulatorState",
    "RecordedCall",
    "SlackError",
    "create_emulator_app",
]
