"""The parts of Meta's webhook payload we read; Meta adds fields freely, so unknown ones are ignored.

Each message type becomes agent-readable text through one table (`RENDER`), so a new type is one entry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from gateway.domain import MAX_TEXT


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Profile(_Lenient):
    name: str | None = Field(default=None, max_length=200)


class Contact(_Lenient):
    wa_id: str
    profile: Profile = Field(default_factory=Profile)


class WaMessage(_Lenient):
    id: str = Field(min_length=1, max_length=200)
    from_: str = Field(alias="from", min_length=3, max_length=32, pattern=r"^\+?[0-9]+$")
    timestamp: str | None = None
    type: str = "text"
    text: dict[str, Any] | None = None
    image: dict[str, Any] | None = None
    video: dict[str, Any] | None = None
    audio: dict[str, Any] | None = None
    document: dict[str, Any] | None = None
    sticker: dict[str, Any] | None = None
    location: dict[str, Any] | None = None
    interactive: dict[str, Any] | None = None
    button: dict[str, Any] | None = None
    reaction: dict[str, Any] | None = None


class StatusError(_Lenient):
    code: int | None = None
    title: str | None = None
    message: str | None = None


class WaStatus(_Lenient):
    id: str = Field(min_length=1, max_length=200)
    status: str = Field(max_length=40)
    timestamp: str | None = None
    recipient_id: str | None = None
    errors: list[StatusError] = Field(default_factory=list)
    biz_opaque_callback_data: str | None = None
    """Echoed from our send (`integrations.whatsapp.landed`); not length-checked here, as a status refused for it
    would be re-delivered by Meta for days: data that is not ours is ignored instead."""


class Value(_Lenient):
    messaging_product: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    contacts: list[Contact] = Field(default_factory=list)
    messages: list[WaMessage] = Field(default_factory=list)
    statuses: list[WaStatus] = Field(default_factory=list)


class Change(_Lenient):
    field: str
    value: Value = Field(default_factory=Value)


class Entry(_Lenient):
    id: str | None = None
    changes: list[Change] = Field(default_factory=list)


class Webhook(_Lenient):
    object: str
    entry: list[Entry] = Field(default_factory=list)


def _media(kind: str) -> Callable[[dict[str, Any]], str]:
    def render(part: dict[str, Any]) -> str:
        caption = str(part.get("caption") or "").strip()
        name = part.get("filename")
        label = f"[{kind}{' ' + str(name) if name else ''}: media id {part.get('id', '?')}]"
        return f"{caption}\n{label}" if caption else label

    return render


def location_line(latitude: object, longitude: object, *names: str | None) -> str:
    """A shared location as agents read it, whichever provider carried it (Meta here, Twilio's WhatsApp too):
    `[location lat,long name, address]`."""
    where = ", ".join(str(n) for n in names if n)
    return f"[location {latitude},{longitude}{' ' + where if where else ''}]"


def _location(part: dict[str, Any]) -> str:
    return location_line(part.get("latitude"), part.get("longitude"), part.get("name"), part.get("address"))


REACTION = "[reaction "


def _reaction(part: dict[str, Any]) -> str:
    """A reaction as the agent reads it; "" (nothing to store) when the customer took one back: Meta sends the
    removal as a reaction with no emoji, which reached the agent as the customer writing "[reaction ]"."""
    emoji = str(part.get("emoji") or "").strip()
    return f"{REACTION}{emoji}]" if emoji else ""


def is_reaction_text(text: str) -> bool:
    """Whether a WhatsApp message's stored text is a reaction (`_reaction`): the pipeline threads it for the
    agent but lets it reopen nothing, as a 👍 to our "resolved" message is no new question.

    >>> is_reaction_text(message_text(WaMessage.model_validate(
    ...     {"id": "w", "from": "4916", "type": "reaction", "reaction": {"message_id": "x", "emoji": "👍"}})))
    True
    >>> message_text(WaMessage.model_validate(
    ...     {"id": "w", "from": "4916", "type": "reaction", "reaction": {"message_id": "x", "emoji": ""}}))
    ''
    """
    return text.startswith(REACTION) and text.endswith("]") and "\n" not in text


def _interactive(part: dict[str, Any]) -> str:
    reply = part.get("button_reply") or part.get("list_reply") or {}
    return str(reply.get("title") or reply.get("id") or "")


RENDER: dict[str, Callable[[dict[str, Any]], str]] = {
    "text": lambda p: str(p.get("body") or ""),
    "image": _media("image"),
    "video": _media("video"),
    "audio": _media("audio"),
    "document": _media("document"),
    "sticker": _media("sticker"),
    "location": _location,
    "interactive": _interactive,
    "button": lambda p: str(p.get("text") or p.get("payload") or ""),
    "reaction": _reaction,
}


def message_text(message: WaMessage) -> str:
    """Agent-readable text; unknown types are kept as a marker rather than dropped silently."""
    render = RENDER.get(message.type)
    part = getattr(message, message.type, None) if render else None
    text = render(part).strip() if render and isinstance(part, dict) else f"[{message.type} message]"
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"
