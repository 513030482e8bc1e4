"""The context card: everything an agent needs to pick up a conversation without asking again.

Built with slack_sdk's block models so an invalid card fails here, in our tests, rather than as an
`invalid_blocks` error from Slack in production. Every piece of customer-supplied text goes through
`escape`/`quote`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    Option,
    SectionBlock,
    StaticSelectElement,
)

from gateway.domain import Conversation, ConversationState, Decision, Direction, PastConversation, Scores
from integrations.slack.escape import escape, quote, truncate

PRIORITY_BADGE = {1: "🔴 P1", 2: "🟠 P2", 3: "🟡 P3", 4: "⚪ P4"}
CHANNEL_LABEL = {"api": "API", "webchat": "Web chat", "sms": "SMS", "whatsapp": "WhatsApp"}
TRANSCRIPT_LINES = 8


def past_line(p: PastConversation) -> str:
    skill = escape(p.skill or "unrouted")
    parts = [f"{p.created_at:%Y-%m-%d}", CHANNEL_LABEL.get(p.channel, "?"), skill, p.state.value]
    if p.csat:
        parts.append(f"CSAT {p.csat}/5")
    return "• " + " · ".join(parts) + f" · `{p.id}`"


def mood_label(sentiment: float) -> str:
    for floor, label in ((0.3, "positive 🙂"), (-0.3, "neutral 😐"), (-1.01, "negative 😠")):
        if sentiment >= floor:
            return label
    return "negative 😠"


@dataclass(frozen=True)
class ContextCard:
    conversation: Conversation
    decision: Decision
    scores: Scores
    history: list[PastConversation] = field(default_factory=list)
    """Earlier conversations of this person on any channel (single customer view)."""
    status: str | None = None
    """Our own status line ("Claimed by <@U…> · 14:02"); never contains customer text."""
    skills: tuple[str, ...] = ()
    """Transfer targets for the select menu."""
    suggested: str | None = None
    """Slack user id of the suggested agent (the previous agent, else the least loaded with the skill)."""

    @property
    def title(self) -> str:
        c = self.conversation.customer
        who = c.profile.name or c.external_id
        return escape(truncate(f"{PRIORITY_BADGE[self.decision.priority]} · {self.decision.skill} · {who}", 140))

    def fallback_text(self) -> str:
        """Notification text: no customer words in it, so nothing in a push notification can ping."""
        return f"New conversation ({self.decision.skill}, P{self.decision.priority}) {self.conversation.id}"

    def _customer_lines(self) -> str:
        c = self.conversation.customer
        p = c.profile
        parts = [f"*Customer*\n{escape(p.name or c.external_id)}"]
        details = [escape(v) for v in (p.email, p.phone) if v]
        if p.tier:
            details.append(f"tier {escape(p.tier)}")
        if details:
            parts.append(" · ".join(details))
        return "\n".join(parts)

    def _scores_fields(self) -> list[MarkdownTextObject]:
        s = self.scores
        return [
            MarkdownTextObject(text=self._customer_lines(), verbatim=True),
            MarkdownTextObject(text=f"*Channel*\n{CHANNEL_LABEL.get(self.conversation.customer.channel, '?')}"),
            MarkdownTextObject(text=f"*Mood*\n{mood_label(s.sentiment)} ({s.sentiment:+.2f})"),
            MarkdownTextObject(text=f"*Urgency*\n{s.urgency:.2f}"),
            MarkdownTextObject(text=f"*Skill*\n{escape(s.top_skill)} {s.skill_confidence:.2f}"),
            MarkdownTextObject(text=f"*Automation success*\n{s.automation_success:.2f}"),
        ]

    def _transcript(self) -> str:
        lines = []
        for m in self.conversation.messages[-TRANSCRIPT_LINES:]:
            who = "Customer" if m.direction is Direction.INBOUND else escape(m.author or "Agent")
            lines.append(f"*{who}* · {m.at:%H:%M}\n{quote(m.text, 500)}")
        return truncate("\n".join(lines) or "_no messages_", 2900)

    def blocks(self) -> list[Block]:
        reasons = "\n".join(f"• {escape(r)}" for r in self.decision.reasons)
        blocks: list[Block] = [
            HeaderBlock(text=self.title),
            SectionBlock(fields=self._scores_fields()),
            SectionBlock(text=MarkdownTextObject(text=truncate(f"*Why here*\n{reasons}", 2900))),
            DividerBlock(),
            SectionBlock(text=MarkdownTextObject(text=self._transcript(), verbatim=True)),
        ]
        if self.history:
            text = "*Earlier conversations*\n" + "\n".join(past_line(p) for p in self.history[:5])
            blocks.append(SectionBlock(text=MarkdownTextObject(text=truncate(text, 2900), verbatim=True)))
        if self.status:
            blocks.append(ContextBlock(elements=[MarkdownTextObject(text=self.status)]))
        elif self.suggested and self.conversation.state is not ConversationState.CLAIMED:
            blocks.append(ContextBlock(elements=[MarkdownTextObject(text=f"👤 Suggested agent: <@{self.suggested}>")]))
        actions = self._actions()
        if actions is not None:
            blocks.append(actions)
        versions = ", ".join(f"{k} {v}" for k, v in sorted(self.scores.versions.items()))
        blocks.append(
            ContextBlock(
                elements=[
                    MarkdownTextObject(
                        text=f"`{self.conversation.id}` · policy v{self.decision.policy_version} · models: "
                        f"{escape(versions) or 'n/a'}"
                    )
                ]
            )
        )
        return blocks

    def _actions(self) -> ActionsBlock | None:
        conv_id = self.conversation.id
        state = self.conversation.state
        if state is ConversationState.RESOLVED:
            return None
        buttons: list[Any] = []
        if state is ConversationState.CLAIMED:
            buttons.append(ButtonElement(text="Release", action_id="sb_release", value=conv_id))
        else:
            buttons.append(ButtonElement(text="Claim", action_id="sb_claim", value=conv_id, style="primary"))
        others = [s for s in self.skills if s != self.conversation.skill][:100]
        if others:
            buttons.append(
                StaticSelectElement(
                    placeholder="Transfer to…",
                    action_id="sb_transfer",
                    options=[Option(text=s, value=f"{conv_id}|{s}") for s in others],
                )
            )
        buttons.append(ButtonElement(text="Resolve", action_id="sb_resolve", value=conv_id))
        if state is not ConversationState.AUTOMATED:
            buttons.append(ButtonElement(text="Back to bot", action_id="sb_to_bot", value=conv_id))
        return ActionsBlock(block_id=f"sb_actions:{conv_id}", elements=buttons)

    def to_dicts(self) -> list[dict[str, Any]]:
        return [b.to_dict() for b in self.blocks()]

    def metadata(self) -> dict[str, Any]:
        """Slack message metadata: lets a recovering worker find a card it posted before crashing."""
        return {"event_type": "switchboard_card", "event_payload": {"conversation_id": self.conversation.id}}
