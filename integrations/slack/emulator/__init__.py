"""A local stand-in for the Slack Web API so the gateway runs and is tested with no network.

Mount with ``parent.add_subapp("/_slack/", create_emulator_app(config))`` and point slack_sdk at
``<base>/_slack/api/``; or run it standalone and use ``<base>/api/``. The desk page (``GET /`` of
the app) and ``app[EMULATOR_DESK]`` act as Slack users: clicks, modals, messages and slash
commands reach the gateway signed, exactly as Slack would send them.
"""

from .app import EMULATOR_STATE, create_emulator_app
from .config import EmulatedUser, EmulatorConfig
from .desk import Desk
from .deskweb import DESK as EMULATOR_DESK
from .outbound import OutboundRequest
from .state import EmulatorState, RecordedCall, SlackError

__all__ = [
    "EMULATOR_DESK",
    "EMULATOR_STATE",
    "Desk",
    "EmulatedUser",
    "EmulatorConfig",
    "EmulatorState",
    "OutboundRequest",
    "RecordedCall",
    "SlackError",
    "create_emulator_app",
]
