"""Frames a widget may send, validated by pydantic before anything touches Redis.

The `type` field picks the model (a discriminated union), and the socket handler dispatches on the
same field through a table, so adding a frame kind is one model and one table entry.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

ClientId = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_\-]+$")]


class _Frame(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SendMessage(_Frame):
    type: Literal["message"]
    client_id: ClientId
    text: str = Field(max_length=100_000)
    """Length is checked against MAX_TEXT by the handler so the client gets `message_too_long`, not a schema error."""


class Typing(_Frame):
    type: Literal["typing"]
    typing: bool = True


class Csat(_Frame):
    type: Literal["csat"]
    score: int = Field(ge=1, le=5)
    comment: str | None = Field(default=None, max_length=1000)


class Ping(_Frame):
    type: Literal["ping"]


ClientFrame = Annotated[SendMessage | Typing | Csat | Ping, Field(discriminator="type")]
CLIENT_FRAME: TypeAdapter[SendMessage | Typing | Csat | Ping] = TypeAdapter(ClientFrame)


def error_frame(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message, **extra}
