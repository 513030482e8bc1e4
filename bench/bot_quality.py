"""Answer-bot and cold-start routing quality on the shared datasets; prints figures, writes nothing.

    python bench/bot_quality.py [--show-wrong] [--routing]

1. The README's "answered right / answered wrong / handed off" table: every bitext utterance through
   `AnswerBot.handle` with the default KB and policy, cold-start scores. Each bitext intent is mapped by
   hand to the default-KB entries whose answer fits it; `None` means a person must handle it, so any
   answer to it is wrong.
2. With `--routing`, what `decide()` gives the bot with cold-start scores: bitext's held-out 20 % with a KB
   trained on the other 80 % (the README's "52 %"), the default KB on all of bitext (share, and how many of
   those the bot then answers wrongly), and the problem/complaint share of what reaches the bot on bitext,
   banking77 and airline tweets (messages the bot should not get).

Kept in the repository so that the README's figures can be measured again after a KB or rule change.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import sys
from collections import Counter
from pathlib import Path

import structlog

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.domain import ChannelKind, Conversation, Customer, Direction, Message
from integrations.automation import AnswerBot, load_bitext, split_bitext
from learners.coldstart import PROFANITY, ColdStartScorer, words
from learners.datasets import DATA
from router.context import RoutingContext
from router.decide import decide
from router.policy import load_policy

FITS: dict[str, frozenset[str] | None] = {
    "track_order": frozenset({"order_status"}),
    "delivery_period": frozenset({"shipping_times", "order_status"}),
    "delivery_options": frozenset({"shipping_times"}),
    "get_refund": frozenset({"refund_policy"}),
    "check_refund_policy": frozenset({"refund_policy"}),
    "track_refund": frozenset({"refund_status"}),
    "recover_password": frozenset({"reset_password"}),
    "set_up_shipping_address": frozenset({"change_address"}),
    "change_shipping_address": frozenset({"change_address"}),
    "cancel_order": frozenset({"cancel_order"}),
    "check_cancellation_fee": frozenset({"cancel_order"}),
    "check_payment_methods": frozenset({"payment_methods"}),
    "check_invoice": frozenset({"invoice_copy"}),
    "get_invoice": frozenset({"invoice_copy"}),
    "create_account": frozenset({"create_account"}),
    "edit_account": frozenset({"edit_account", "change_email"}),
    "delete_account": frozenset({"delete_account"}),
    "contact_customer_service": frozenset({"contact_hours"}),
    "newsletter_subscription": frozenset({"newsletter"}),
    "place_order": frozenset({"place_order"}),
    "review": frozenset({"leave_review"}),
    "switch_account": None,
    "change_order": None,
    "registration_problems": None,
    "payment_issue": None,
    "complaint": None,
    "contact_human_agent": None,
}
"""Bitext intent → the default-KB entries whose answer fits it (None: a person must handle it)."""

PROBLEM_INTENTS = frozenset({"registration_problems", "payment_issue", "complaint", "contact_human_agent"})


def conversation(text: str) -> Conversation:
    return Conversation(
        id="conv_bench", customer=Customer(key="api:bench", channel=ChannelKind.API, external_id="bench"),
        messages=[Message(id="m0", direction=Direction.INBOUND, channel=ChannelKind.API, text=text)],
    )


def read(rel: str) -> list[dict[str, str]]:
    with (DATA / rel).open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


async def bot_table(show_wrong: bool) -> None:
    policy = load_policy()
    bot, scorer, seeds = AnswerBot(policy=policy), ColdStartScorer(), policy.skill_keywords()
    rows = load_bitext(DATA / "bitext" / "bitext_customer_support.csv")
    right = wrong = handed = problems_answered = 0
    wrong_examples: Counter[tuple[str, str]] = Counter()
    for r in rows:
        c = conversation(r.instruction)
        reply = await bot.handle(c, scorer.score(r.instruction, seeds))
        if not reply.answered:
            handed += 1
            continue
        fits = FITS[r.intent]
        if fits is not None and reply.intent in fits:
            right += 1
        else:
            wrong += 1
            wrong_examples[(r.intent, str(reply.intent))] += 1
            if show_wrong:
                print(f"  wrong: {r.intent} → {reply.intent}: {r.instruction!r}")
        problems_answered += r.intent in PROBLEM_INTENTS
    n = len(rows)
    print(f"bitext, default KB (n={n:,}): answered right {right:,} ({100 * right / n:.1f} %), "
          f"answered wrong {wrong:,} ({100 * wrong / n:.1f} %), handed off {handed:,} ({100 * handed / n:.1f} %)")
    print(f"  problem messages answered: {problems_answered} of "
          f"{sum(r.intent in PROBLEM_INTENTS for r in rows)}; wrong by (bitext intent, entry): "
          f"{dict(wrong_examples.most_common(8))}")


async def routing() -> None:
    policy = load_policy()
    scorer, seeds = ColdStartScorer(), policy.skill_keywords()
    ctx = RoutingContext(automation=True)

    def to_bot(text: str) -> bool:
        return decide(conversation(text), scorer.score(text, seeds), policy, ctx).route.value == "automation"

    rows = load_bitext(DATA / "bitext" / "bitext_customer_support.csv")
    _, test = split_bitext(rows, test_fraction=0.2)
    share = sum(to_bot(r.instruction) for r in test)
    print(f"bitext held-out (n={len(test)}): decide() gives the bot {100 * share / len(test):.1f} %")
    profane = [r for r in rows if PROFANITY & set(words(r.instruction))]
    print(f"  profane bitext utterances to the bot: {sum(to_bot(r.instruction) for r in profane)} of {len(profane)}")

    # The default KB over all of bitext: what reaches the bot, and what it then does with it.
    bot = AnswerBot(policy=policy)
    reached = right = wrong = problems = 0
    for r in rows:
        if not to_bot(r.instruction):
            continue
        reached += 1
        problems += r.intent in PROBLEM_INTENTS
        reply = await bot.handle(conversation(r.instruction), scorer.score(r.instruction, seeds))
        if reply.answered:
            fits = FITS[r.intent]
            right += fits is not None and reply.intent in fits
            wrong += not (fits is not None and reply.intent in fits)
    print(f"bitext, default KB (n={len(rows):,}): to the bot {reached:,} ({100 * reached / len(rows):.1f} %), "
          f"of which problem/complaint/human-request {problems}; answered right {right:,}, wrong {wrong}")

    examples = [(i.name, e) for i in bot.kb.intents if not i.handoff for e in i.examples]
    missed = [e for _, e in examples if not to_bot(e)]
    print(f"default KB's own how-to examples reaching the bot: {len(examples) - len(missed)} of {len(examples)}")

    bank = read("banking77/train.csv")
    got = answered = 0
    for line in bank:
        if to_bot(line["text"]):
            got += 1
            reply = await bot.handle(conversation(line["text"]), scorer.score(line["text"], seeds))
            answered += reply.answered
    print(f"banking77 (n={len(bank):,}): to the bot {got:,} ({100 * got / len(bank):.1f} %), answered by the "
          f"shop KB {answered} (a bank's questions: mostly wrong answers)")
    tweets = read("airline_tweets/tweets.csv")
    by_mood: Counter[str] = Counter()
    total: Counter[str] = Counter(t["airline_sentiment"] for t in tweets)
    for tweet in tweets:
        by_mood[tweet["airline_sentiment"]] += to_bot(tweet["text"])
    print("airline tweets: to the bot " + ", ".join(
        f"{m} {by_mood[m]:,}/{total[m]:,} ({100 * by_mood[m] / total[m]:.1f} %)" for m in sorted(total)))


def main() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))  # the bot logs every reply
    parser = argparse.ArgumentParser()
    parser.add_argument("--show-wrong", action="store_true")
    parser.add_argument("--routing", action="store_true")
    args = parser.parse_args()
    asyncio.run(bot_table(args.show_wrong))
    if args.routing:
        asyncio.run(routing())


if __name__ == "__main__":
    main()
