"""Dry runs: replay recent conversations through `decide()` with the current and the proposed policy.

`decide()` is pure, so the only honest question is which inputs to give it. We replay each conversation
as it stood when it was first routed (its messages up to the first human reply, `now` = the last of
those), with its stored scores; when the change touches skill keywords (which the scorer reads), both
arms are re-scored with the same scorer, so the difference comes from the policy alone.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field

import redis.asyncio as aioredis
import structlog

from gateway import keys
from gateway.domain import Conversation, Decision, RouteKind, Scores, is_bot_answer, is_human_reply
from gateway.store import ConversationStore
from learners import coldstart
from learners.base import Scorer
from router.context import RoutingContext
from router.decide import decide
from router.policy import Policy

log = structlog.get_logger(__name__)

DEFAULT_N = 500
LOAD_CONCURRENCY = 50


@dataclass(frozen=True)
class Example:
    conversation_id: str
    text: str
    before: str
    after: str
    reasons: list[str]


@dataclass
class DryRun:
    replayed: int = 0
    changed: int = 0
    skipped: int = 0
    moves: Counter[tuple[str, str]] = field(default_factory=Counter)
    examples: list[Example] = field(default_factory=list)


def destination(decision: Decision) -> str:
    """Where a decision sends the conversation, as a lead reads it."""
    return "bot" if decision.route is RouteKind.AUTOMATION else f"#{decision.channel}"


def as_routed(conv: Conversation) -> Conversation:
    """The conversation as the router first saw it: up to the first human reply, bot answers kept."""
    kept = []
    for m in conv.messages:
        if is_human_reply(m):
            break
        kept.append(m)
    return conv.model_copy(update={"messages": kept})


def context_of(conv: Conversation, automation: bool = True) -> RoutingContext:
    """The same context the pipeline builds, from the transcript alone (and whether a bot is configured)."""
    return RoutingContext(
        sentiment_history=tuple(coldstart.sentiment(m.text) for m in conv.inbound[-10:]),
        bot_answers=sum(1 for m in conv.messages if is_bot_answer(m)),
        automation=automation,
    )


def _text(conv: Conversation) -> str:
    return "\n".join(m.text for m in conv.inbound[-5:])


def replay(
    conversations: list[Conversation], current: Policy, proposed: Policy, scorer: Scorer | None = None,
    automation: bool = True,
) -> DryRun:
    """Pure: the same conversations and policies always give the same answer (tests rely on it)."""
    result = DryRun()
    rescore = scorer is not None and current.skill_keywords() != proposed.skill_keywords()
    for full in conversations:
        conv = as_routed(full)
        if not conv.inbound or (full.scores is None and not rescore):
            result.skipped += 1
            continue
        ctx = context_of(conv, automation)
        now = conv.messages[-1].at
        old_scores: Scores | None = full.scores
        new_scores: Scores | None = full.scores
        if rescore and scorer is not None:
            old_scores = scorer.score(_text(conv), current.skill_keywords())
            new_scores = scorer.score(_text(conv), proposed.skill_keywords())
        assert old_scores is not None and new_scores is not None
        before = decide(conv, old_scores, current, ctx, now)
        after = decide(conv, new_scores, proposed, ctx, now)
        result.replayed += 1
        a, b = destination(before), destination(after)
        if a == b:
            continue  # a priority change alone keeps the queue: not "routed differently"
        result.changed += 1
        result.moves[(a, b)] += 1
        if len(result.examples) < 3:
            result.examples.append(Example(full.id, conv.last_inbound_text[:140], a, b, after.reasons))
    return result


async def recent_conversations(redis: aioredis.Redis, store: ConversationStore, n: int = DEFAULT_N
                               ) -> list[Conversation]:
    """The last `n` routed conversations (newest first) that still exist, each once: a commit redis-py resent after
    its connection dropped (the first send applied, its answer lost) lists a new conversation twice."""
    raw = await redis.lrange(keys.RECENT, 0, n - 1)
    ids = list(dict.fromkeys(i.decode() if isinstance(i, bytes) else str(i) for i in raw))
    sem = asyncio.Semaphore(LOAD_CONCURRENCY)

    async def load(cid: str) -> Conversation | None:
        async with sem:
            return await store.load(cid)

    loaded = await asyncio.gather(*(load(i) for i in ids))
    return [c for c in loaded if c is not None]
