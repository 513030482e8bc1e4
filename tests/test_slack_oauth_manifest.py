"""manifest.yml: valid, complete, and granting a scope for every Web API method the gateway calls.

The method list is read from the source (`client.<method>(` in gateway/ and integrations/slack/), so
a new call without its scope in the manifest (and in SLACK_SCOPES' default) fails here, not in a
customer's workspace with `missing_scope`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from integrations.slack.oauth import DEFAULT_SCOPES, REDIRECT_PATH

ROOT = Path(__file__).resolve().parents[1]
CALL = re.compile(r"\bclient\.([a-z]+(?:_[A-Za-z]+)+)\(")
# Bot-token scopes per Web API method (https://api.slack.com/methods). conversations.* list both the
# public-channel and the private-channel scope because the desk works in both kinds of channel.
METHOD_SCOPES: dict[str, set[str]] = {
    "auth.test": set(),
    "chat.postMessage": {"chat:write"},
    "chat.update": {"chat:write"},
    "chat.postEphemeral": {"chat:write"},
    "chat.delete": {"chat:write"},
    "conversations.list": {"channels:read", "groups:read"},
    "conversations.info": {"channels:read", "groups:read"},
    "conversations.history": {"channels:history", "groups:history"},
    "conversations.replies": {"channels:history", "groups:history"},
    "conversations.create": {"channels:manage"},
    "users.info": {"users:read"},
    "users.list": {"users:read"},
    "usergroups.users.list": {"usergroups:read"},
    "views.open": set(),
    "views.update": set(),
    "views.publish": set(),
    "reactions.add": {"reactions:write"},
}
EVENT_SCOPES: dict[str, set[str]] = {
    "message.channels": {"channels:history"},
    "message.groups": {"groups:history"},
    "app_home_opened": set(),
}
NOT_OURS = ("emulator", "oauth")  # the emulator serves the API; the OAuth flow's calls are bolt's


def _manifest() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "manifest.yml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def called_methods() -> set[str]:
    """Web API methods called through slack_sdk in our code (the emulator and OAuth flow excluded)."""
    slack = ROOT / "integrations" / "slack"
    files = [*(ROOT / "gateway").rglob("*.py"), *slack.rglob("*.py")]
    found: set[str] = set()
    for path in files:
        if path.is_relative_to(slack) and path.relative_to(slack).parts[0] in NOT_OURS:
            continue
        for name in CALL.findall(path.read_text(encoding="utf-8")):
            found.add(name.replace("_", "."))
    return found


def test_manifest_has_the_required_keys() -> None:
    m = _manifest()
    assert m["display_information"]["name"] == "Switchboard"
    assert len(m["display_information"]["description"]) <= 140
    assert 175 <= len(m["display_information"]["long_description"]) <= 4000
    assert m["features"]["bot_user"]["display_name"]
    settings = m["settings"]
    events = settings["event_subscriptions"]
    assert events["request_url"] == "https://YOUR-HOST/slack/events"
    assert {"message.channels", "message.groups", "app_home_opened"} <= set(events["bot_events"])
    assert settings["interactivity"] == {"is_enabled": True, "request_url": "https://YOUR-HOST/slack/events"}
    assert settings["socket_mode_enabled"] is False
    assert settings["org_deploy_enabled"] is False
    (command,) = [c for c in m["features"]["slash_commands"] if c["command"] == "/switchboard"]
    assert command["url"] == "https://YOUR-HOST/slack/events" and command["description"]
    assert m["oauth_config"]["redirect_urls"] == [f"https://YOUR-HOST{REDIRECT_PATH}"]


def test_manifest_scopes_match_the_oauth_default() -> None:
    bot_scopes = _manifest()["oauth_config"]["scopes"]["bot"]
    assert len(bot_scopes) == len(set(bot_scopes))
    assert set(bot_scopes) == set(DEFAULT_SCOPES)


def test_every_called_method_and_event_is_covered_by_a_scope() -> None:
    m = _manifest()
    granted = set(m["oauth_config"]["scopes"]["bot"])
    methods = called_methods()
    assert {"chat.postMessage", "chat.update", "conversations.history", "users.info"} <= methods  # the grep works
    unknown = methods - METHOD_SCOPES.keys()
    assert not unknown, f"add these methods and their scopes to METHOD_SCOPES (and manifest.yml): {unknown}"
    missing = {method: sorted(METHOD_SCOPES[method] - granted) for method in methods if METHOD_SCOPES[method] - granted}
    assert not missing, f"manifest.yml lacks scopes: {missing}"
    for event in m["settings"]["event_subscriptions"]["bot_events"]:
        assert event in EVENT_SCOPES, f"add {event} and its scopes to EVENT_SCOPES"
        assert EVENT_SCOPES[event] <= granted, event
    assert "commands" in granted  # the slash command
