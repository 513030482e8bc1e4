"""An agent's message in a card's thread, on its way to the customer: queued, or the agent is told why not.

Slack has had its 200 before any of this runs (bolt acks events first), so whatever goes wrong here is
nobody's to see unless we say it: each path ends in the reply being queued (the worker then marks it ✅ or
reports ❌), in an internal note (📝), in a line to the agent saying why it was not sent, or in nothing at
all for messages that are not replies (edits, joins, bots). Before, a reply that was too long, posted with
"Also send to #channel", carrying a screenshot, written after Resolve, or caught by a Slack or Redis
hiccup, simply never arrived.
"""

from __future__ import annotations

import html
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import structlog
from slack_sdk.web.async_client import AsyncWebClient

from gateway import keys
from gateway.bot_followup import BOT_AGENT
from gateway.dead_letters import summary
from gateway.domain import MAX_TEXT, Conversation, ConversationState, utcnow
from gateway.redis_conn import as_str
from integrations.slack import plaintext
from integrations.slack.escape import escape
from router.policy import Policy

if TYPE_CHECKING:
    from integrations.slack.listeners import DeskContext

log = structlog.get_logger(__name__)


def _no_files(event: Mapping[str, Any]) -> int:
    return 0


def _files(event: Mapping[str, Any]) -> int:
    return len(event.get("files") or []) or 1


RELAYED: dict[str | None, Callable[[Mapping[str, Any]], int]] = {
    None: _no_files,
    "thread_broadcast": _no_files,
    "file_share": _files,
}
"""Message subtypes an agent's reply can arrive as → how many files it carries. "Also send to #channel"
makes a `thread_broadcast`, a reply with a screenshot a `file_share`; the rest (`message_changed`,
`message_deleted`, `bot_message`, `channel_join`, …) are not replies and stay ignored."""


@dataclass(frozen=True, slots=True)
class ThreadMessage:
    channel: str
    thread_ts: str
    ts: str
    user: str
    text: str
    files: int
    event_id: str | None


def thread_message(event: Mapping[str, Any], body: Mapping[str, Any]) -> ThreadMessage | None:
    """The event as a person's message in a thread, or None when it is not one we relay."""
    count = RELAYED.get(event.get("subtype"))
    if count is None or event.get("bot_id") or not event.get("thread_ts") or not event.get("user"):
        return None
    return ThreadMessage(str(event["channel"]), str(event["thread_ts"]), str(event["ts"]), str(event["user"]),
                         str(event.get("text") or "").strip(), count(event),
                         str(body["event_id"]) if body.get("event_id") else None)


@dataclass
class Attempt:
    """One message, read against the conversation its thread belongs to."""

    ctx: DeskContext
    msg: ThreadMessage
    conv: Conversation
    holder: str | None
    policy: Policy
    client: AsyncWebClient

    async def is_agent(self) -> bool:
        return await self.ctx.is_agent(self.msg.user, self.client)

    @property
    def note_hint(self) -> str:
        return f"(or start with `{self.ctx.note_prefix}` for an internal note)"


NOT_AN_AGENT = "Not sent to the customer: only support agents can reply to customers."
_FILES_NOT_SENT = "files are not sent to customers, only text"
"""Customer channels (SMS, WhatsApp, e-mail, the web widget) get our text; a Slack file's URL is private."""


async def _may_reply_open(a: Attempt) -> str | None:
    """An open conversation: its claimer replies; others claim it first (Claim works on it), unless the
    policy lets any agent answer."""
    if a.holder == a.msg.user:
        return None
    if not await a.is_agent():
        return NOT_AN_AGENT
    if a.policy.anyone_can_reply:
        return None
    if a.holder:  # Claim would be refused too ("Already claimed by …"): only a release frees it
        return f"Not sent to the customer: <@{a.holder}> has claimed it, and only they can reply {a.note_hint}."
    return f"Not sent to the customer: nobody has claimed it yet. Claim the conversation first {a.note_hint}."


async def _may_follow_up(a: Attempt) -> str | None:
    """A resolved conversation cannot be claimed, so "claim first" was a dead end and a "forgot your
    tracking number" could never be sent. Within the reopen window (while the customer's next message would
    reopen it) the agent who worked it — or any agent, when the policy says so or nobody had claimed it —
    may still write. It stays resolved: an afterthought is not new work for the queue, its SLA or a second
    resolve; if the customer answers, their message reopens it as any follow-up does."""
    window = a.ctx.store.reopen_window_s
    resolved_at = a.conv.resolved_at
    if resolved_at is not None and utcnow() - resolved_at > timedelta(seconds=window):
        return (f"Not sent to the customer: this conversation was resolved on {resolved_at:%Y-%m-%d}, longer ago "
                f"than the reopen window ({_span(window)}), so it is closed; the customer's next message starts a "
                "new conversation. Reach them another way.")
    if not await a.is_agent():
        return NOT_AN_AGENT
    # The bot "worked" a conversation it closed after an agent's Back to bot: no person to defer to (it said
    # "only <@bot> can still reply", and nobody could).
    if a.conv.agent in (None, BOT_AGENT, a.msg.user) or a.policy.anyone_can_reply:
        return None
    return (f"Not sent to the customer: this conversation is resolved, and only <@{a.conv.agent}>, who worked "
            f"it, can still reply {a.note_hint}.")


BY_STATE: dict[ConversationState, Callable[[Attempt], Awaitable[str | None]]] = {
    ConversationState.RESOLVED: _may_follow_up,
}
"""Who may reply, by the conversation's state; every other state is open (`_may_reply_open`)."""


def _span(seconds: int) -> str:
    days, rest = divmod(seconds, 86400)
    return f"{days} days" if days and not rest else f"{seconds:,} s"


def reply_fields(text: str, author: str, ref: str, kind: str = "agent_reply") -> dict[str, str]:
    """A message to the customer as a stream entry: an agent's reply, or our notice (`kind` "notify")."""
    return {"kind": kind, "text": text, "author": author, "ref": ref}


async def queue_reply(ctx: DeskContext, conv: Conversation, text: str, author: str, ref: str,
                      kind: str = "agent_reply", slack: tuple[str, str] | None = None) -> None:
    """On the customer's partition stream, in order with their messages."""
    fields = reply_fields(text, author, ref, kind)
    if slack:
        fields.update({"slack_channel": slack[0], "slack_ts": slack[1]})
    if kind == "agent_reply":
        await ctx.store.enqueue_reply(conv, fields)  # the SLA counts the reply from now, not from delivery
    else:
        await ctx.store.enqueue(conv, fields)


async def relay(ctx: DeskContext, event: Mapping[str, Any], body: Mapping[str, Any], client: AsyncWebClient) -> None:
    """Queue an agent's thread reply for the customer, or tell them why it was not.

    A failure on the way (Slack refusing the name look-up, Redis refusing the write) is told to the agent,
    and the event's de-duplication marker is dropped, so a retry Slack sends of the same event is handled
    instead of being taken for a duplicate of one that never got through."""
    msg = thread_message(event, body)
    if msg is None or not (msg.text or msg.files):
        return
    try:
        raw = await ctx.redis.get(keys.thread(msg.channel, msg.thread_ts))
    except Exception as exc:
        await _failed(ctx, msg, client, None, exc, "⚠️ If this was a reply to a customer, it was not sent")
        return
    if raw is None:
        return
    conv_id = as_str(raw)
    retired, conv_id = conv_id.startswith(keys.RETIRED), conv_id.removeprefix(keys.RETIRED)
    if is_note(msg.text, ctx.note_prefix):
        await _note(ctx, msg, conv_id)
        return
    try:
        queued = await _queue(ctx, msg, conv_id, retired, client)
    except Exception as exc:
        await _failed(ctx, msg, client, conv_id, exc, "⚠️ Your reply was not sent to the customer")
        return
    if queued:
        await _after(ctx, msg, conv_id, client)


NOTE_MARKUP = re.compile(r"[\s*_~`>•·\-]+")
"""What may surround a note's prefix: spaces, and Slack's bold, italic, strike, code, quote and bullet marks."""


def is_note(text: str, prefix: str) -> bool:
    """Whether an agent's thread message is an internal note: it starts with the prefix, whatever its case and
    however it is formatted. `Internal:` configured and "internal: …" typed went to the customer, and so did
    "*Note:* …" (the prefix made bold), "*Note*: …" and a quoted "> note: …" (which Slack sends as `&gt;`); an
    internal note reaching the customer is the worst way this can fail.

    >>> [is_note(t, "note:") for t in ("note: reseller", "  NOTE: x", "*Note:* x", "_note: x_", "&gt; `note:` x",
    ...                                "*Note*: x", "_Note_: secret", "• note: x", "Note : x")]
    [True, True, True, True, True, True, True, True, True]
    >>> [is_note(t, "note:") for t in ("Notes: see below", "a note: x", "*Hello*", "note this down: 5")]
    [False, False, False, False]
    """
    head = NOTE_MARKUP.sub("", html.unescape(text[: len(prefix) + 40]))
    return head.casefold().startswith(NOTE_MARKUP.sub("", prefix).casefold())


async def _queue(ctx: DeskContext, msg: ThreadMessage, conv_id: str, retired: bool, client: AsyncWebClient) -> bool:
    """Everything up to the queue write; whether the reply was queued (else the agent was told why not)."""
    conv = await ctx.store.load(conv_id)
    if conv is None:
        return await _refuse(msg, client, conv_id, "Not sent to the customer: this conversation no longer exists.")
    if retired:
        return await _refuse(msg, client, conv_id, f"Not sent to the customer: this card was moved to "
                             f"<#{conv.slack_channel}>. Reply in the thread of its current card.")
    attempt = Attempt(ctx, msg, conv, await ctx.ops.holder(conv_id), await ctx.ops.policies.current(), client)
    refusal = await BY_STATE.get(conv.state, _may_reply_open)(attempt)
    if refusal is not None:
        return await _refuse(msg, client, conv_id, refusal)
    plain = plaintext.to_plain(msg.text, await ctx.known_names(plaintext.mentioned(msg.text))).strip()
    if len(plain) > MAX_TEXT:
        return await _refuse(msg, client, conv_id, f"Not sent to the customer: {len(plain):,} characters, the "
                             f"limit is {MAX_TEXT:,}; split it into shorter replies.")
    if not plain:
        why = (_FILES_NOT_SENT + "; describe it in words or paste a link they can open" if msg.files
               else "nothing is left once Slack's mentions are taken out")
        return await _refuse(msg, client, conv_id, f"Nothing was sent to the customer: {why}.")
    name = await ctx.display_name(client, msg.user)
    await queue_reply(ctx, conv, plain, name, msg.ts, slack=(msg.channel, msg.ts))
    log.info("agent_reply_queued", conversation_id=conv_id, user=msg.user, chars=len(plain), files=msg.files)
    return True


async def _after(ctx: DeskContext, msg: ThreadMessage, conv_id: str, client: AsyncWebClient) -> None:
    """Queued: the worker takes it from here. What follows is bookkeeping, and failing it unsends nothing."""
    if msg.files:
        await _tell(msg, client, conv_id, f"Sent the text only: {_FILES_NOT_SENT}, so the attachment stays in "
                    "Slack. If they need it, paste a link they can open.")
    try:
        await ctx.ops.audit("reply", msg.user, conv_id)
    except Exception as exc:
        log.warning("reply_audit_failed", conversation_id=conv_id, error=_reason(exc))


async def _note(ctx: DeskContext, msg: ThreadMessage, conv_id: str) -> None:
    """An internal note stays in Slack; its 📝 and audit line are bookkeeping, so a failure is only logged."""
    try:
        await ctx.desk.mark_message(msg.channel, msg.ts, "memo")
        await ctx.ops.audit("note", msg.user, conv_id)
    except Exception as exc:
        log.warning("note_mark_failed", conversation_id=conv_id, error=_reason(exc))


async def _refuse(msg: ThreadMessage, client: AsyncWebClient, conv_id: str, text: str) -> bool:
    log.info("agent_reply_refused", conversation_id=conv_id, user=msg.user, reason=text.split(":", 1)[-1][:80])
    await _tell(msg, client, conv_id, text)
    return False


async def _tell(msg: ThreadMessage, client: AsyncWebClient, conv_id: str | None, text: str) -> None:
    """A line only the agent sees, in the thread they wrote in. Failing to show it must not fail the rest."""
    try:
        await client.chat_postEphemeral(channel=msg.channel, user=msg.user, thread_ts=msg.thread_ts, text=text)
    except Exception as exc:
        log.warning("reply_notice_failed", conversation_id=conv_id, user=msg.user, error=_reason(exc))


async def _failed(ctx: DeskContext, msg: ThreadMessage, client: AsyncWebClient, conv_id: str | None,
                  exc: Exception, lead: str) -> None:
    reason = _reason(exc)
    log.error("agent_reply_not_queued", conversation_id=conv_id, user=msg.user, error=reason,
              error_type=type(exc).__name__)
    if msg.event_id:
        try:
            await ctx.redis.delete(keys.slack_event(msg.event_id))
        except Exception as gone:  # Redis is what failed: Slack's retry may be swallowed; the agent is told
            log.warning("slack_event_marker_kept", conversation_id=conv_id, error=_reason(gone))
    await _tell(msg, client, conv_id, f"{lead}: {escape(reason)}; send it again.")


def _reason(exc: BaseException) -> str:
    """A line the agent can read, without the reply: Slack's error code where Slack refused, and for a Redis
    pipeline only the error, not the command (which quotes the reply's text)."""
    return summary(exc).rsplit("caused error: ", 1)[-1][:200]
