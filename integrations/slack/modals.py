"""The resolve modal: what the agent confirms becomes the learners' ground truth."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field

from gateway.domain import Conversation

URGENCY = {"low": 0.1, "normal": 0.4, "high": 0.75, "urgent": 1.0}
MOODS = ("negative", "neutral", "positive")


def _option(text: str, value: str) -> dict[str, Any]:
    return {"text": {"type": "plain_text", "text": text}, "value": value}


def _select(block_id: str, label: str, options: list[dict[str, Any]], initial: dict[str, Any] | None,
            hint: str | None = None) -> dict[str, Any]:
    """With no `initial` the field is optional: left empty, it teaches nothing."""
    element: dict[str, Any] = {"type": "static_select", "action_id": "value", "options": options}
    block: dict[str, Any] = {"type": "input", "block_id": block_id, "label": {"type": "plain_text", "text": label},
                             "element": element}
    if initial:
        element["initial_option"] = initial
    else:
        block["optional"] = True
        element["placeholder"] = {"type": "plain_text", "text": "Not sure: leave empty"}
    if hint:
        block["hint"] = {"type": "plain_text", "text": hint}
    return block


def resolve_view(conv: Conversation, skills: Sequence[str], resolves: int = 0) -> dict[str, Any]:
    """Urgency and mood start empty. Prefilled with the models' own guesses, a resolve the agent did not
    touch taught the learners what they already believed; only what the agent picks is a label. The skill
    starts at the routed one: the agent handled it there without transferring it, which is evidence.

    The resolve count (`ConversationStore.resolve_count`) goes back with the submit, so a form opened before
    someone else resolved the conversation and the customer reopened it cannot close their new question."""
    # The routed skill is always offered and preselected: one missing from the list (removed since) used to
    # preselect the first skill, and an untouched form taught the learners that wrong label.
    routed = conv.skill or "general"
    names = [*skills] if routed in skills else [routed, *skills]
    skill_opts = [_option(s, s) for s in names]
    current = next(o for o in skill_opts if o["value"] == routed)
    return {
        "type": "modal",
        "callback_id": "sb_resolve",
        "private_metadata": json.dumps({"conversation_id": conv.id, "resolves": resolves}),
        "title": {"type": "plain_text", "text": "Resolve conversation"},
        "submit": {"type": "plain_text", "text": "Resolve"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            _select("skill", "Final skill", skill_opts, current),
            _select("urgency", "Urgency", [_option(k, k) for k in URGENCY], None,
                    hint="How urgent it really was. What you pick here trains the urgency model."),
            _select("mood", "Customer mood", [_option(m, m) for m in MOODS], None,
                    hint="How the customer really felt. What you pick here trains the sentiment model."),
            {"type": "input", "block_id": "note", "optional": True,
             "label": {"type": "plain_text", "text": "Resolution note"},
             "element": {"type": "plain_text_input", "action_id": "value", "multiline": True, "max_length": 2000}},
            _select("csat", "Ask the customer for a rating?", [_option("Yes", "yes"), _option("No", "no")],
                    _option("Yes", "yes")),
        ],
    }


class ResolveForm(BaseModel):
    conversation_id: str
    skill: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,39}$")
    urgency: float | None
    mood: str | None
    note: str = ""
    ask_csat: bool = True
    resolves: int | None = None
    """What the form was opened at; None from a form opened before it carried one (not checked)."""


def parse_resolve(view: dict[str, Any]) -> tuple[ResolveForm, dict[str, str]]:
    values = (view.get("state") or {}).get("values") or {}

    def picked(block: str) -> str | None:
        v = (values.get(block) or {}).get("value") or {}
        opt = v.get("selected_option")
        return opt.get("value") if opt else v.get("value")

    meta = json.loads(view.get("private_metadata") or "{}")
    errors: dict[str, str] = {}
    skill = picked("skill") or ""
    if not skill:
        errors["skill"] = "Choose the skill this conversation really needed."
    urgency = picked("urgency")
    mood = picked("mood")
    resolves = meta.get("resolves")
    form = ResolveForm.model_construct(
        conversation_id=str(meta.get("conversation_id", "")), skill=skill,
        urgency=URGENCY.get(urgency or "", None), mood=mood if mood in MOODS else None,
        note=(picked("note") or "")[:2000], ask_csat=picked("csat") != "no",
        resolves=resolves if isinstance(resolves, int) and not isinstance(resolves, bool) else None,
    )
    return form, errors
