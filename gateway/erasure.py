"""`forget`: erase one person's messages and profile everywhere we put them.

Redis (transcripts, conversations, profiles, identities, dedupe keys, the dry-run sample, outcome and
audit entries, WhatsApp status records) and Slack (cards are blanked, every post of ours in their threads
deleted). What we cannot delete is said plainly in the report: an agent's own Slack messages belong to the
workspace.

Whose data a request reaches (the whole person, one account of a shared person, a shared identifier):
`gateway.erasure_scope`.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
import structlog
from slack_sdk.errors import SlackApiError

from gateway import erasure_scope, keys
from gateway.bot_followup import CHECKS_PREFIX
from gateway.domain import Conversation, Direction
from gateway.erasure_scope import WHOLE
from gateway.erasure_whatsapp import drop_statuses, numbers
from gateway.identity import Identity
from gateway.optout import opt_out_key
from gateway.policy_store import PolicyStore
from gateway.redis_conn import as_str, stream_rows, xdel_where
from gateway.retries import RETRY_KEY
from gateway.scheduler import SlaScheduler
from gateway.store import ConversationStore
from integrations.reply_records import reply_keys
from integrations.slack.desk import SlackDesk
from integrations.whatsapp.webhook import STATUS_STREAM, status_key

if TYPE_CHECKING:
    from gateway.pipeline import Pipeline
    from gateway.streams import Ack

log = structlog.get_logger(__name__)

ERASURES = f"{keys.PREFIX}erasures"
UNLISTED_MARGIN_S = 3600
IN_PROGRESS_S = 86400


def _in_progress(ref: str) -> str:
    """Hashed: the key names no one, its value (the plan) is what is being erased."""
    return f"{keys.PREFIX}erasing:{hashlib.sha256(ref.encode()).hexdigest()}"


def _identity_keys(ident: str) -> list[str]:
    """Every key named after one of the person's identities (the opt-out and reply-number records name
    their number too)."""
    return [keys.ident(ident), keys.customer_conversation(ident), opt_out_key(ident), keys.reply_via(ident),
            keys.held_for(ident)]


def _person_keys(person: str) -> list[str]:
    return [keys.person(person), f"{keys.person(person)}:idents", keys.person_conversations(person),
            f"{keys.person(person)}:conv", f"{keys.person(person)}:merged_into"]


SWEEP = "erase"
"""The entry kind of an erasure's second pass (`Eraser.sweep`), handled by a worker."""
PARKED_OUTCOMES = f"{keys.OUTCOMES}:parked"
"""Where the learner parks outcomes it could not learn (`learners.process.PARKED_STREAM`)."""


@dataclass
class ErasureReport:
    person: str | None
    conversations: int = 0
    messages: int = 0
    keys_deleted: int = 0
    stream_entries: int = 0
    slack_messages: int = 0
    kept: list[str] = field(default_factory=list)
    scope: str = WHOLE
    accounts_kept: list[str] = field(default_factory=list)
    """Other accounts of the person (sharing an email or phone with the one named), whose conversations stay."""

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()

    def as_logged(self) -> dict[str, Any]:
        """What the erasure log keeps: the other accounts only counted, since which accounts the erased one
        shared a mailbox or phone with is itself about the erased customer."""
        return self.as_dict() | {"accounts_kept": len(self.accounts_kept)}


class Eraser:
    def __init__(
        self, redis: aioredis.Redis, store: ConversationStore, desk: SlackDesk | None,
        policies: PolicyStore | None = None,
    ) -> None:
        self.redis = redis
        self.store = store
        self.desk = desk
        self.policies = policies
        self.deadlines = (SlaScheduler(redis), SlaScheduler(redis, key_prefix=CHECKS_PREFIX))
        self._unlink = redis.register_script(erasure_scope.UNLINK)

    async def forget(self, ref: str, requested_by: str, deep: bool = False) -> ErasureReport:
        """`deep`: also read Slack channel history for cards missing from the conversations' card lists."""
        plan = await self._plan(ref)
        if plan is None:
            return ErasureReport(person=None)
        person, idents, conv_ids, persons = plan["person"], plan["idents"], plan["conversations"], set(plan["persons"])
        scope = plan.get("scope", WHOLE)  # a plan written before scopes existed erased the whole person
        report = ErasureReport(person=person, scope=scope, accounts_kept=list(plan.get("accounts_kept", [])))
        # The pointers first: a message arriving while Slack is being cleaned starts afresh instead of
        # writing into (and resurrecting) a conversation being erased.
        doomed = [key for i in idents for key in _identity_keys(i)]
        if scope == WHOLE:
            doomed += [key for p in sorted(persons) for key in _person_keys(p)]  # merged persons kept their own
        else:
            # The other accounts live on in the person: only its profile goes (the last one any account sent,
            # perhaps the erased one's; nothing reads it back), and the erased identities and conversations.
            doomed += [keys.person(p) for p in sorted(persons)]
        report.keys_deleted += int(await self.redis.delete(*doomed))
        if scope != WHOLE:
            await self._unlink_from(sorted(persons), idents, conv_ids)
        wamids: set[str] = set()
        known = {conv_id: await self._forget_conversation(conv_id, report, idents, deep, wamids)
                 for conv_id in conv_ids}
        about = set(conv_ids)
        for stream, name in self._outcome_streams():
            report.stream_entries += sum((await self._drop_entries(stream, about, name)).values())
        report.stream_entries += await drop_statuses(self.redis, wamids, numbers(idents, scope))
        for partition in range(self.store.partitions):
            stream = keys.inbound_stream(partition)
            queued = await self._drop_entries(stream, about, "conv")
            report.stream_entries += sum(queued.values())
            for conv_id in sorted(queued):  # being handled, or about to be: what it writes is swept after it
                cards = sorted(f"{channel}|{ts}" for channel, ts in known.get(conv_id, set()))
                # Only a whole person's keys are swept again: in a narrower erasure the person is the others'.
                await self.redis.xadd(stream, {"kind": SWEEP, "conv": conv_id, "cards": json.dumps(cards),
                                               "persons": ",".join(sorted(persons)) if scope == WHOLE else ""})
        if scope == WHOLE:
            report.stream_entries += await self._drop_merges(persons)
        else:
            report.stream_entries += await self._drop_merges_naming(persons, set(idents), about)
        report.keys_deleted += await self._drop_retries(about)
        if report.accounts_kept:
            report.kept.append(
                f"the conversations of {len(report.accounts_kept)} other account(s) sharing an email or phone "
                "with the one named (accounts_kept): not erased; name each account, or the person, to erase them")
        for conv_id in plan.get("unattributed", []):
            report.kept.append(f"conversation {conv_id}: no record of which account wrote it; name the person "
                               "to erase it")
        await self.redis.xadd(ERASURES, {"person": person, "requested_by": requested_by, "at": f"{time.time():.3f}",
                                         "report": json.dumps(report.as_logged())})
        await self.redis.delete(_in_progress(ref))
        log.info("customer_forgotten", person=person, conversations=report.conversations, requested_by=requested_by,
                 scope=scope, accounts_kept=len(report.accounts_kept))
        return report

    async def _plan(self, ref: str) -> dict[str, Any] | None:
        """Who and what to erase, written down before anything is deleted: an erasure Redis stopped
        half-way (a failover, out of memory) has already deleted the pointers that found the person, and
        its retry answered "unknown customer" and left the rest. Kept a day at most; deleted once done."""
        marker = _in_progress(ref)
        person = await Identity(self.redis).person_of(ref)
        if person is None:
            raw = await self.redis.get(marker)
            return json.loads(as_str(raw)) if raw else None
        plan: dict[str, Any] = {
            "person": person,
            "idents": sorted(as_str(i) for i in await self.redis.smembers(f"{keys.person(person)}:idents")),
            "conversations": [as_str(c) for c in await self.redis.zrange(keys.person_conversations(person), 0, -1)],
            "persons": sorted({person, *await self._merged_into(person)}), "scope": WHOLE}
        if ref != person and erasure_scope.shared(plan["idents"]):
            plan |= await erasure_scope.narrowed(self.redis, self.store.partitions, ref, plan["idents"],
                                                 plan["conversations"])
        await self.redis.set(marker, json.dumps(plan), ex=IN_PROGRESS_S)
        return plan

    async def _unlink_from(self, persons: list[str], idents: list[str], conv_ids: list[str]) -> None:
        """A narrower erasure: the persons live on for the other accounts, without what was erased."""
        person_keys = [k for p in persons for k in (f"{keys.person(p)}:idents", keys.person_conversations(p),
                                                     f"{keys.person(p)}:conv")]
        await self._unlink(keys=person_keys, args=[len(idents), *idents, *conv_ids])

    async def _forget_conversation(
        self, conv_id: str, report: ErasureReport, idents: list[str], deep: bool = False,
        wamids: set[str] | None = None,
    ) -> set[tuple[str, str]]:
        """Erase one conversation; returns its cards (the sweep looks at them again) and adds the WhatsApp
        message ids of its replies to `wamids` (their entries in the status stream go too)."""
        snap = await self.store.snapshot(conv_id)
        conv = snap.conversation  # None until a worker first handles one of its messages
        report.conversations += 1
        report.messages += len(snap.transcript)
        cards = await self._listed_cards(conv_id)
        if conv is not None and conv.slack_channel and conv.card_ts:
            cards.add((conv.slack_channel, conv.card_ts))
        if deep and conv is not None:
            cards |= await self._unlisted_cards(conv, {channel for channel, _ in cards}, report)
        dedupe = [keys.dedupe(i, m.external_id) for i in idents for m in snap.transcript if m.external_id]
        # The senders' records of each reply (sent parts, attempt marks, provider status records): keyed by the
        # reply, not the conversation, and a WhatsApp message id carries the customer's phone number.
        replies = await reply_keys(self.redis, [m.id for m in snap.transcript if m.direction is Direction.OUTBOUND])
        if wamids is not None:
            wamids.update(k.removeprefix(status_key("")) for k in replies if k.startswith(status_key("")))
        await self._remove(conv_id, cards, conv.claimed_by if conv else None, report, dedupe + replies)
        return cards

    async def sweep(self, conversation_id: str, cards_known: Sequence[str] = (), persons: Sequence[str] = ()
                    ) -> ErasureReport:
        """Remove what work in flight during an erasure wrote back: the conversation's fields, a card it
        posted, a follow-up it threaded under a card the erasure knew (and had taken off the card list), the
        thread index, deadlines, a bot label, and identity keys a merge in flight wrote for the persons.

        Queued by the erasure on the customer's partition, which a worker handles in order, so it runs
        after whatever was being handled for the conversation when the erasure ran."""
        report = ErasureReport(person=None)
        raw = await self.redis.hmget(keys.conversation(conversation_id), "slack_channel", "card_ts", "claimed_by")
        channel, ts, claimed_by = (json.loads(as_str(v)) if v else None for v in raw)
        cards = await self._listed_cards(conversation_id)
        cards |= {(c[0], c[1]) for c in (ref.split("|", 1) for ref in cards_known) if len(c) == 2}
        if channel and ts:
            cards.add((channel, ts))
        await self._remove(conversation_id, cards, claimed_by, report)
        report.keys_deleted += await self._drop_persons(persons)
        for stream, name in self._outcome_streams():
            report.stream_entries += sum((await self._drop_entries(stream, {conversation_id}, name)).values())
        log.info("erasure_swept", conversation_id=conversation_id, keys_deleted=report.keys_deleted,
                 slack_messages=report.slack_messages, stream_entries=report.stream_entries)
        return report

    async def _drop_persons(self, persons: Sequence[str]) -> int:
        """The persons' keys again, and the identities a merge in flight pointed at them (only those still
        pointing there: one the customer has used since belongs to the new person they became)."""
        dropped = 0
        for person in persons:
            for ident in [as_str(i) for i in await self.redis.smembers(f"{keys.person(person)}:idents")]:
                if as_str(await self.redis.get(keys.ident(ident)) or "") == person:
                    dropped += int(await self.redis.delete(*_identity_keys(ident)))
            dropped += int(await self.redis.delete(*_person_keys(person)))
        return dropped

    async def _listed_cards(self, conversation_id: str) -> set[tuple[str, str]]:
        return {(c[0], c[1]) for c in (as_str(m).split("|", 1) for m in
                                       await self.redis.smembers(keys.cards(conversation_id)))}

    async def _remove(
        self, conversation_id: str, cards: set[tuple[str, str]], claimed_by: str | None, report: ErasureReport,
        extra: list[str] | None = None,
    ) -> None:
        """Blank the cards, then delete every key the conversation has and its place in shared lists."""
        for channel, ts in sorted(cards):
            await self._erase_card(conversation_id, channel, ts, report)
        doomed = [keys.conversation(conversation_id), keys.transcript(conversation_id), keys.effects(conversation_id),
                  keys.claim(conversation_id), keys.closed(conversation_id), keys.cards(conversation_id),
                  keys.conversation_partition(conversation_id), keys.resolves(conversation_id),
                  keys.held_replies(conversation_id),
                  f"{keys.PREFIX}webchat:out:{conversation_id}", f"{keys.PREFIX}csat:{conversation_id}",
                  keys.csat_asked(conversation_id), f"{keys.PREFIX}sla:done:{conversation_id}",
                  keys.webchat_sessions(conversation_id), *(extra or [])]
        doomed += [keys.thread(channel, ts) for channel, ts in cards]
        # Web chat session records hold the visitor's name and email for up to a day: gone now, not at expiry (and
        # the widget's token with them: its next connect is refused and it asks for a new session).
        sessions = await self.redis.zrange(keys.webchat_sessions(conversation_id), 0, -1)
        doomed += [keys.webchat_session(as_str(sid)) for sid in sessions]
        report.keys_deleted += int(await self.redis.delete(*doomed))
        await self.redis.lrem(keys.RECENT, 0, conversation_id)
        if claimed_by:
            await self.redis.srem(keys.agent_open(claimed_by), conversation_id)
        for deadlines in self.deadlines:
            await deadlines.cancel(conversation_id)

    def _outcome_streams(self) -> tuple[tuple[str, str], ...]:
        """Streams whose entries quote a conversation's text, with the field naming the conversation."""
        return ((keys.OUTCOMES, "conversation_id"), (keys.AUDIT, "conversation_id"),
                (PARKED_OUTCOMES, "conversation_id"), (keys.DEAD, "conv"), (STATUS_STREAM, "conversation_id"))

    async def _unlisted_cards(
        self, conv: Conversation, seen_in: set[str], report: ErasureReport
    ) -> set[tuple[str, str]]:
        """Cards the list misses (posted before it existed, or by an escalation that crashed before listing
        its card), read from every channel the policy (and a running canary) posts to and those the listed
        cards are in, over the conversation's life: from its creation to an hour past its last change.

        Opt-in (`deep`): Slack allows few history reads a minute, and every card posted since the list
        exists is on it. A channel that cannot be read is named in the report, not a failed erasure."""
        if self.desk is None:
            return set()
        channels = set(seen_in)
        if self.policies is not None:
            channels |= set((await self.policies.current()).channels())
            canary = await self.policies.canary()
            if canary is not None:
                channels |= set(canary.policy.channels())
        if conv.decision is not None and conv.decision.channel:
            channels.add(conv.decision.channel)
        oldest = conv.created_at.timestamp() - 5
        latest = max(conv.updated_at, conv.resolved_at or conv.updated_at).timestamp() + UNLISTED_MARGIN_S
        found: set[tuple[str, str]] = set()
        for channel in sorted(channels):
            try:
                refs = await self.desk.cards_between(conv.id, channel, oldest, latest)
            except SlackApiError as exc:
                report.kept.append(f"channel {channel} not searched for cards of {conv.id}: "
                                   f"{exc.response.get('error')}")
                continue
            found |= {(ref.channel, ref.ts) for ref in refs}
        return found

    async def _erase_card(self, conversation_id: str, channel: str, ts: str, report: ErasureReport) -> None:
        """Every card the conversation had (transfers and escalations leave older ones): the customer's
        messages in its thread are deleted and the card itself, which quotes them, is blanked."""
        if self.desk is None:
            return
        client = self.desk.client
        try:
            replies = await client.conversations_replies(channel=channel, ts=ts, include_all_metadata=True, limit=1000)
            thread: list[dict[str, Any]] = replies.get("messages", [])
            ours = thread[0].get("bot_id") if thread else None  # the card is ours: so is what its bot posted
            for msg in thread[1:]:
                # Not only our copies of the customer's messages: our notes say their rating, the STOP they
                # texted, what could not be delivered to them. The thread is about them and the card is blanked.
                if (msg.get("metadata") or {}).get("event_type") == "switchboard_message" or (
                        ours and msg.get("bot_id") == ours):
                    await client.chat_delete(channel=channel, ts=msg["ts"])
                    report.slack_messages += 1
                elif msg.get("bot_id"):
                    report.kept.append(f"another app's message {msg['ts']} in {channel} (delete in Slack)")
                else:
                    report.kept.append(f"agent message {msg['ts']} in {channel} (delete in Slack)")
            erased = f"🗑️ Customer data erased on request (`{conversation_id}`)"
            await client.chat_update(channel=channel, ts=ts, text="Customer data erased",
                                     blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": erased}}])
            report.slack_messages += 1
        except SlackApiError as exc:
            report.kept.append(f"Slack card {ts} of {conversation_id}: {exc.response.get('error')}")

    async def _merged_into(self, person: str) -> set[str]:
        """Every person merged into this one, through chains of merges (their keys hold the same customer)."""
        found, frontier = set(), {person}
        while frontier:
            into = frontier.pop()
            for _, fields in await self._rows(keys.MERGES):
                if fields.get("into") == into and "undo" not in fields and fields.get("from") not in found:
                    found.add(fields["from"])
                    frontier.add(fields["from"])
        found.discard(person)
        return found

    async def _drop_merges(self, persons: set[str]) -> int:
        """The merge log names the person's identities (emails, phone numbers)."""
        doomed = [i for i, f in await self._rows(keys.MERGES) if f.get("into") in persons or f.get("from") in persons]
        return int(await self.redis.xdel(keys.MERGES, *doomed)) if doomed else 0

    async def _drop_merges_naming(self, persons: set[str], idents: set[str], conv_ids: set[str]) -> int:
        """A narrower erasure: the merges of these persons that name an erased identity or conversation (the
        others, of the accounts that live on, stay undoable)."""
        doomed = [i for i, f in await self._rows(keys.MERGES)
                  if (f.get("into") in persons or f.get("from") in persons)
                  and (idents & set(json.loads(f.get("identities", "[]")))
                       or conv_ids & set(json.loads(f.get("conversations", "[]"))))]
        return int(await self.redis.xdel(keys.MERGES, *doomed)) if doomed else 0

    async def _drop_retries(self, conv_ids: set[str]) -> int:
        """Replies waiting for a retry hold the customer's key and the reply's text."""
        doomed = [m async for m, _ in self.redis.zscan_iter(RETRY_KEY)
                  if json.loads(as_str(m)).get("conv") in conv_ids]
        return int(await self.redis.zrem(RETRY_KEY, *doomed)) if doomed else 0

    async def _rows(self, stream: str) -> list[tuple[str, dict[str, str]]]:
        return stream_rows(await self.redis.xrange(stream))

    async def _drop_entries(self, stream: str, conv_ids: set[str], field_name: str) -> dict[str, int]:
        """XDEL every entry about these conversations; returns how many were dropped per conversation."""

        def about(data: dict[str, str]) -> str | None:
            named = data.get(field_name)
            return json.loads(data["data"]).get(field_name) if named is None and "data" in data else named

        dropped: dict[str, int] = {}
        for _, data in await xdel_where(self.redis, stream, lambda d: about(d) in conv_ids):
            conv_id = str(about(data))
            dropped[conv_id] = dropped.get(conv_id, 0) + 1
        return dropped


async def sweep_entry(p: Pipeline, fields: Mapping[str, str], ack: Ack | None = None) -> None:
    """The worker's handler for a `SWEEP` entry."""
    if p.eraser is None:  # a worker is always given one (`runtime`); this is a partial test wiring
        raise RuntimeError("an erasure sweep needs an eraser")
    persons = [person for person in fields.get("persons", "").split(",") if person]
    await p.eraser.sweep(fields["conv"], json.loads(fields.get("cards", "[]")), persons)
