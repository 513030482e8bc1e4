"""A customer's rating teaches no learner, by decision (see `learners.outcomes.labels_of`), and is not left pending.

A rating is only asked for when an agent resolves a conversation, so it grades a person's handling after
the resolve already taught the skill, mood and urgency; the bot, which did not end the conversation, was
labelled when it handed off. The reviewer found the README promising "transfers and CSAT feed the
learners" while a rating counted as `result="nothing"`: the code is right, the README sentence is corrected.
These tests pin the decision, including for a rating outcome that someday carries the conversation's text.
"""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from gateway.csat import rating_outcome
from gateway.domain import ChannelKind, Conversation, Customer, Outcome
from learners import snapshot
from learners.outcomes import OUTCOMES_STREAM, labels_of, publish_outcome
from learners.process import GROUP, run_learner
from tests.test_learners_process import fast, until


def _conversation() -> Conversation:
    customer = Customer(key="webchat:c1", channel=ChannelKind.WEBCHAT, external_id="c1")
    return Conversation(id="conv_1", customer=customer, agent="U0ALICE", skill="billing")


def test_a_rating_teaches_no_learner() -> None:
    for stars in (1, 5):
        assert labels_of(rating_outcome(_conversation(), stars)).pairs == {}
        # Nor would it with the text: a rating after a person's resolve is about that person's handling.
        texted = Outcome(conversation_id="conv_1", kind="resolved", text="my invoice is wrong", csat=stars,
                         agent="U0ALICE")
        assert labels_of(texted).pairs == {}


def test_a_resolve_still_teaches_when_it_carries_a_rating() -> None:
    """The form's own labels are what a resolve teaches, whatever rating rides along."""
    outcome = Outcome(conversation_id="c", kind="resolved", text="my invoice is wrong", final_skill="billing",
                      mood="negative", urgency=0.4, csat=1)
    assert set(labels_of(outcome).pairs) == {"skill", "sentiment", "urgency"}


async def test_the_learner_acknowledges_a_rating_and_publishes_nothing(redis: aioredis.Redis) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(run_learner(redis, stop=stop, config=fast("l1")))
    try:
        await publish_outcome(redis, rating_outcome(_conversation(), 1))

        async def read_and_acked() -> bool:
            groups = await redis.xinfo_groups(OUTCOMES_STREAM)
            return bool(groups) and groups[0]["entries-read"] == 1 and groups[0]["pending"] == 0

        await until(read_and_acked)
        await asyncio.sleep(0.2)
        assert await snapshot.current_version(redis) == 0
        assert (await redis.xpending(OUTCOMES_STREAM, GROUP))["pending"] == 0
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
