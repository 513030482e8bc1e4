"""The context card: everything an agent needs to pick up a conversation without asking again.

Built as plain Block Kit dicts: slack_sdk's block models cost a millisecond per card in the routing
worker (a sixth of its CPU). Tests parse every card variant back through those models
(`Block.parse(...).to_dict()` validates lengths and shapes), so an invalid card still fails in our
tests rather than as an `invalid_blocks` error from Slack in production. Every piece of
customer-supplied text goes through `escape`/`quote`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.domain import (
    ChannelKind,
    Conversation,
    ConversationState,
    Decision,
    Direction,
    Message,
    PastConversation,
    Scores,
)
from integrations.slack.escape import escape, escape_within, quote, truncate

PRIORITY_BADGE = {1: "🔴 P1", 2: "🟠 P2", 3: "🟡 P3", 4: "⚪ P4"}
CHANNEL_LABEL = {"api": "API", "webchat": "Web chat", "sms": "SMS", "whatsapp": "WhatsApp"}
TRANSCRIPT_LINES = 8
EXCERPT = 500
"""Characters of one message the card shows; a section block holds 3,000 in all."""
SIGNED_PREFIX = "user:"
"""A web chat customer id starting so was signed by the host site (WEBCHAT_IDENTITY_SECRET); any other is an
anonymous visitor's (`v-…`)."""
TRANSCRIPT_BUDGET = 2900
HEADER_MAX = 150
"""Slack refuses a header block whose text is longer (invalid_blocks), and with it the whole card."""


LINE_OVERHEAD = 60
"""Generous room for one transcript line's author, time and quote marks."""


def fits_whole(conversation: Conversation) -> bool:
    """True when the card surely shows every recent message whole: no rendering needed to know (the routing
    worker asks for every card). Escaping can grow a text fivefold (`&` → `&amp;`), so that is the bound."""
    shown = conversation.messages[-TRANSCRIPT_LINES:]
    return all(len(m.text) <= EXCERPT for m in shown) and (
        sum(5 * len(m.text) + LINE_OVERHEAD for m in shown) <= TRANSCRIPT_BUDGET - 70)


def transcript(conversation: Conversation) -> tuple[list[str], list[Message]]:
    """The card's transcript lines, newest kept first, and the messages it shows only in part or not at all.

    The whole transcript used to be cut at the end, so long earlier messages pushed out the newest one (the
    message being routed); and a message past its excerpt was lost to the agent: the card was the only
    place it was shown. The pipeline now threads what this leaves out (`cut_in_card`)."""
    lines: list[str] = []
    cut: list[Message] = []
    used = 0
    shown = conversation.messages[-TRANSCRIPT_LINES:]
    for i in range(len(shown) - 1, -1, -1):
        m = shown[i]
        who = "Customer" if m.direction is Direction.INBOUND else escape(m.author or "Agent")
        line = f"*{who}* · {m.at:%H:%M}\n{quote(m.text, EXCERPT)}"
        if lines and used + len(line) + 1 > TRANSCRIPT_BUDGET - 70:  # room for the note above them
            cut.extend(reversed(shown[: i + 1]))  # this one and every earlier one: no gaps in what is shown
            break
        lines.insert(0, line)
        used += len(line) + 1
        if len(m.text) > EXCERPT:
            cut.append(m)
    return lines, cut[::-1]


def plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text, "emoji": True}


def mrkdwn(text: str, verbatim: bool = False) -> dict[str, Any]:
    """`verbatim` for customer words: Slack then leaves bare URLs and channel names unlinked."""
    return {"type": "mrkdwn", "text": text, "verbatim": True} if verbatim else {"type": "mrkdwn", "text": text}


def button(label: str, action_id: str, value: str, style: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "button", "text": plain(label), "action_id": action_id, "value": value}
    if style:
        out["style"] = style
    return out


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
        return escape_within(f"{PRIORITY_BADGE[self.decision.priority]} · {self.decision.skill} · {who}", HEADER_MAX)

    def fallback_text(self) -> str:
        """Notification text: no customer words in it, so nothing in a push notification can ping."""
        return f"New conversation ({self.decision.skill}, P{self.decision.priority}) {self.conversation.id}"

    def _customer_lines(self) -> str:
        """Name and contact details, with those nobody vouched for marked "(unverified)".

        A web chat visitor types their name and email into a public page (or a script posts them), so anyone
        can claim anyone's address; shown like an API customer's, whose details come signed from the host's
        backend, an agent could take it for a verified identity and act on that account. The customer id says
        which is which: a web chat customer is `user:<id>` only when the host site signed that id
        (`integrations/webchat/tokens.signed_customer_id`), and web chat is merged with no other channel.
        For a signed user the id is verified, and that is said; the name and email beside it come from the
        same page, outside the signature, so they are marked too.
        """
        c = self.conversation.customer
        p = c.profile
        unverified = ""
        signed_in = ""
        if c.channel == ChannelKind.WEBCHAT:
            unverified = " (unverified)"
            if c.external_id.startswith(SIGNED_PREFIX):
                signed_in = f"signed-in user {escape(c.external_id.removeprefix(SIGNED_PREFIX))}"
        name = f"{escape(p.name)}{unverified}" if p.name else escape(c.external_id)
        parts = [f"*Customer*\n{name}"]
        details = [f"{escape(v)}{unverified}" for v in (p.email, p.phone) if v]
        if p.tier:
            details.append(f"tier {escape(p.tier)}")
        if signed_in:
            details.append(signed_in)
        if details:
            parts.append(" · ".join(details))
        return "\n".join(parts)

    def _scores_fields(self) -> list[dict[str, Any]]:
        s = self.scores
        return [
            mrkdwn(self._customer_lines(), verbatim=True),
            mrkdwn(f"*Channel*\n{CHANNEL_LABEL.get(self.conversation.customer.channel, '?')}"),
            mrkdwn(f"*Mood*\n{mood_label(s.sentiment)} ({s.sentiment:+.2f})"),
            mrkdwn(f"*Urgency*\n{s.urgency:.2f}"),
            mrkdwn(f"*Skill*\n{escape(s.top_skill)} {s.skill_confidence:.2f}"),
            mrkdwn(f"*Automation success*\n{s.automation_success:.2f}"),
        ]

    def _transcript(self) -> str:
        lines, cut = transcript(self.conversation)
        if any(m.direction is Direction.INBOUND for m in cut):
            lines.insert(0, "_Cut short here: the customer's full words are in the thread._")
        return truncate("\n".join(lines) or "_no messages_", TRANSCRIPT_BUDGET)

    def blocks(self) -> list[dict[str, Any]]:
        reasons = "\n".join(f"• {escape(r)}" for r in self.decision.reasons)
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": plain(self.title)},
            {"type": "section", "fields": self._scores_fields()},
            {"type": "section", "text": mrkdwn(truncate(f"*Why here*\n{reasons}", 2900))},
            {"type": "divider"},
            {"type": "section", "text": mrkdwn(self._transcript(), verbatim=True)},
        ]
        if self.history:
            text = "*Earlier conversations*\n" + "\n".join(past_line(p) for p in self.history[:5])
            blocks.append({"type": "section", "text": mrkdwn(truncate(text, 2900), verbatim=True)})
        if self.status:
            blocks.append({"type": "context", "elements": [mrkdwn(self.status)]})
        elif self.suggested and self.conversation.state is not ConversationState.CLAIMED:
            blocks.append({"type": "context", "elements": [mrkdwn(f"👤 Suggested agent: <@{self.suggested}>")]})
        actions = self._actions()
        if actions is not None:
            blocks.append(actions)
        versions = ", ".join(f"{k} {v}" for k, v in sorted(self.scores.versions.items()))
        footer = f"`{self.conversation.id}` · policy v{self.decision.policy_version} · models: "
        footer += escape(versions) or "n/a"
        blocks.append({"type": "context", "elements": [mrkdwn(footer)]})
        return blocks

    def _actions(self) -> dict[str, Any] | None:
        conv_id = self.conversation.id
        state = self.conversation.state
        if state is ConversationState.RESOLVED:
            return None
        buttons: list[dict[str, Any]] = []
        if state is ConversationState.CLAIMED:
            buttons.append(button("Release", "sb_release", conv_id))
        else:
            buttons.append(button("Claim", "sb_claim", conv_id, style="primary"))
        others = [s for s in self.skills if s != self.conversation.skill][:100]
        if others:
            buttons.append({
                "type": "static_select", "action_id": "sb_transfer", "placeholder": plain("Transfer to…"),
                "options": [{"text": plain(s), "value": f"{conv_id}|{s}"} for s in others],
            })
        buttons.append(button("Resolve", "sb_resolve", conv_id))
        if state is not ConversationState.AUTOMATED:
            buttons.append(button("Back to bot", "sb_to_bot", conv_id))
        return {"type": "actions", "block_id": f"sb_actions:{conv_id}", "elements": buttons}

    def to_dicts(self) -> list[dict[str, Any]]:
        return self.blocks()

    def metadata(self, tag: str = "card") -> dict[str, Any]:
        """Slack message metadata: lets a recovering worker find a card it posted before crashing. `tag`
        names which card (the routed one, or one transfer's), so an older card of the same conversation
        in that channel is never taken for it."""
        return {"event_type": "switchboard_card",
                "event_payload": {"conversation_id": self.conversation.id, "tag": tag}}
