"""The built-in answer bot: TF-IDF nearest example over a knowledge base, with a confidence floor.

It answers only when it is confident and the conversation shows no sign the customer wants or needs a
person; otherwise it hands off with a reason. A wrong confident answer costs more trust than a quick
handoff, hence the floor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import structlog

from gateway.domain import Conversation, Outcome, Scores
from gateway.ports import BotReply
from integrations.automation import acknowledge
from integrations.automation.handoff import (
    HandoffRules,
    answer_did_not_help,
    asks_for_human,
    frustrated,
    handoff_reasons,
    unaddressed_problem,
)
from integrations.automation.kb import KnowledgeBase, load_kb
from integrations.automation.tfidf import TfidfIndex, surface, surface_similarity
from router.policy import Policy, load_policy

log = structlog.get_logger("switchboard.automation")

DEFAULT_FLOOR = 0.35
TIE = 1e-9
"""Similarities this close are the same score (float sums over the same terms in another order)."""
ACKNOWLEDGED = "acknowledgement"
"""`BotReply.intent` of the bot's reply to a plain thank-you (no KB entry: see `acknowledge`)."""
CLOSING_CHECKS = (asks_for_human, frustrated, answer_did_not_help)
"""The hand-off checks a thank-you still goes through. Not the repeat check ("Thanks, that helped!" twice is
no unanswered question) nor the answer count (a thanks after the third answer needs no person either)."""


class PolicySource(Protocol):
    """Where the live policy comes from (`gateway.policy_store.PolicyStore`: cached ~1 s, canary-aware)."""

    async def routed_under(self, conversation_id: str) -> Policy:
        """The policy of the canary arm that routed the conversation (the live one outside a canary)."""
        ...


@dataclass(frozen=True, slots=True)
class FixedPolicy:
    """A policy that never changes (tests, scripts): a `PolicySource` without Redis."""

    policy: Policy

    async def routed_under(self, conversation_id: str) -> Policy:
        return self.policy


def rules_of(policy: Policy) -> HandoffRules:
    return HandoffRules(
        human_phrases=policy.human_request_phrases,
        frustration_keywords=policy.escalation_keywords,
        sentiment_floor=policy.thresholds.sentiment_floor,
        repeat_similarity=policy.thresholds.repeat_similarity,
    )


@dataclass(frozen=True, slots=True)
class Match:
    intent: str
    confidence: float
    answer: str
    example: str
    handoff: bool = False
    """The nearest entry is a problem a person must handle (`Intent.handoff`): never answer it."""


class AnswerBot:
    """Implements `gateway.ports.Automation`.

    The hand-off rules (ask-for-human phrases, escalation keywords, sentiment floor, repeat similarity)
    are read from the policy on every call, not copied at start-up: a lead's `/switchboard keyword …`
    or `threshold …` reaches the bot as soon as it reaches the router, canary arm included.
    """

    def __init__(
        self,
        kb: KnowledgeBase | None = None,
        policy: Policy | PolicySource | None = None,
        floor: float = DEFAULT_FLOOR,
        rules: HandoffRules | None = None,
        acknowledgement: str | None = acknowledge.REPLY,
    ) -> None:
        self.kb = kb or load_kb()
        self.acknowledgement = acknowledgement
        """The reply to a plain thank-you or goodbye; None hands those off like any unmatched message."""
        self.floor = floor
        self.policies: PolicySource = (
            FixedPolicy(policy or load_policy()) if policy is None or isinstance(policy, Policy) else policy
        )
        self.fixed_rules = rules
        """Overrides the policy's rules (tests of the hand-off checks)."""
        self._owner: list[int] = []
        docs: list[str] = []
        for i, intent in enumerate(self.kb.intents):
            docs.extend(intent.examples)
            self._owner.extend([i] * len(intent.examples))
        self._docs = docs
        self._surfaces = [surface(d) for d in docs]
        self.index = TfidfIndex(docs)

    async def rules(self, conversation: Conversation) -> HandoffRules:
        if self.fixed_rules is not None:
            return self.fixed_rules
        return rules_of(await self.policies.routed_under(conversation.id))

    def match(self, text: str) -> Match | None:
        """Nearest example wins; its cosine similarity is the confidence (1.0 = same words).

        Examples the index scores alike (within `TIE`) are told apart by the words it ignores: first an
        example that *is* the question (same words, punctuation and case aside), then the one closest in
        its full wording (`surface_similarity`), and only then KB order. Filler removal leaves many short
        examples as the same one or two terms: "Where is my refund?" and "I want a refund" are both just
        "refund", and picking the earlier entry answered a refund-status question with the refund policy.
        """
        sims = self.index.similarities(text)
        if not sims:
            return None
        best = max(sims.values())
        tied = sorted(d for d, s in sims.items() if s >= best - TIE)
        if len(tied) == 1:
            doc = tied[0]
        else:
            typed = surface(text)
            doc = max(tied, key=lambda d: (self._surfaces[d] == typed, surface_similarity(text, self._docs[d]), -d))
        intent = self.kb.intents[self._owner[doc]]
        return Match(intent.name, round(min(1.0, sims[doc]), 4), intent.answer, self._docs[doc], intent.handoff)

    async def handle(self, conversation: Conversation, scores: Scores) -> BotReply:
        bound = log.bind(conversation_id=conversation.id)
        question = conversation.last_inbound_text
        closing = self.acknowledgement is not None and acknowledge.is_acknowledgement(question)
        reasons = handoff_reasons(conversation, scores, await self.rules(conversation),
                                  *((CLOSING_CHECKS,) if closing else ()))
        if reasons:
            bound.info("bot_handoff", reasons=reasons)
            return BotReply(answered=False, handoff_reason="; ".join(reasons))
        if closing:
            # An answered reply, not a hand-off: no card, no "a person will reply" notice, and the silence
            # check the pipeline re-arms records the earlier answer as the success it was.
            bound.info("bot_answered", intent=ACKNOWLEDGED, confidence=1.0)
            return BotReply(answered=True, text=self.acknowledgement, confidence=1.0, intent=ACKNOWLEDGED)
        m = self.match(question) if question else None
        if m is not None and m.handoff and m.confidence >= self.floor:
            reason = f"needs a person: looks like '{m.intent}' ({m.confidence:.2f})"
            bound.info("bot_handoff", reasons=[reason])
            return BotReply(answered=False, confidence=m.confidence, intent=m.intent, handoff_reason=reason)
        if m is None or m.confidence < self.floor:
            reason = (
                f"no confident answer (best '{m.intent}' {m.confidence:.2f} < {self.floor:.2f})"
                if m else "no matching answer in the knowledge base"
            )
            bound.info("bot_handoff", reasons=[reason])
            return BotReply(answered=False, confidence=m.confidence if m else 0.0,
                            intent=m.intent if m else None, handoff_reason=reason)
        problem = unaddressed_problem(question, m.example)
        if problem:
            bound.info("bot_handoff", reasons=[problem], intent=m.intent)
            return BotReply(answered=False, confidence=m.confidence, intent=m.intent, handoff_reason=problem)
        bound.info("bot_answered", intent=m.intent, confidence=m.confidence)
        return BotReply(answered=True, text=m.answer, confidence=m.confidence, intent=m.intent)


def automation_outcome(conversation: Conversation, reply: BotReply, reopened: bool = False) -> Outcome:
    """The label the automation-success learner needs: did the bot finish the job alone?"""
    failed = reopened or not reply.answered
    return Outcome(
        conversation_id=conversation.id,
        kind="automation_handoff" if failed else "automation_resolved",
        text=conversation.last_inbound_text,
        automation_failed=failed,
        correction="reopened within window" if reopened else reply.handoff_reason,
        predicted={"intent": reply.intent, "confidence": reply.confidence},
    )
