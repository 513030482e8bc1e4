"""A customer's plain "thanks" / "ok, that helped" is a closing, not a question for a person.

The most common reply to a good bot answer is a thank-you. With no KB entry for it, it used to be handed
off: a card for "Thanks, that helped!", a "a person will reply on Monday" notice to a customer who was
done, and an automation *failure* label for an answer that worked. The bot now answers such a message
briefly, which keeps the conversation with the bot, so its silence check later records the success.

Deliberately narrow: the whole message must be acknowledgement phrases and a few harmless words around
them ("thank you so much for the help"). Anything else in it (a question, a complaint, "but", "still",
"not", a '?') makes it an ordinary message, so "thanks but it still doesn't work" is handed off as before.
"""

from __future__ import annotations

import re

ACKNOWLEDGEMENTS = (
    "thanks", "thank you", "thankyou", "thank u", "thanx", "thx", "ty", "tysm", "cheers", "many thanks",
    "much appreciated", "appreciate it", "i appreciate it", "appreciated",
    "that helped", "that helps", "this helped", "this helps", "it helped", "it helps", "helpful",
    "that was helpful", "that's helpful", "that is helpful", "very helpful", "super helpful",
    "great", "perfect", "awesome", "excellent", "brilliant", "wonderful", "fantastic", "cool", "nice",
    "lovely", "amazing", "ok", "okay", "okey", "k", "kk", "alright", "all right", "fine", "good",
    "sounds good", "got it", "understood", "noted", "i see", "makes sense", "that works", "works for me",
    "it worked", "that worked", "that did it", "solved", "sorted", "all good", "that's all", "that is all",
    "bye", "goodbye", "have a nice day", "have a good day", "have a great day",
)
"""Phrases that close or acknowledge. Each is matched as whole words, longest first."""

AROUND = frozenset(
    "so very much a lot again oh ah and that's that it's it this was is for the your you all really "
    "just indeed too as well quick answer reply info information help tip".split()
)
"""Words allowed next to an acknowledgement ("thanks so much for the quick answer"). No negation, no
"but"/"still", no problem or topic word: with one of those the message says more than thanks."""

REPLY = "You're welcome! If there's anything else, just write here."

MAX_WORDS = 12
"""A closing is short; a longer message is telling us something else."""

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
_PHRASES = sorted((tuple(p.split()) for p in ACKNOWLEDGEMENTS), key=len, reverse=True)


def is_acknowledgement(text: str) -> bool:
    """True when `text` only thanks, acknowledges or says goodbye.

    >>> [is_acknowledgement(t) for t in ("Thanks, that helped!", "ok thanks 👍", "Perfect, cheers")]
    [True, True, True]
    >>> [is_acknowledgement(t) for t in ("thanks but it still doesn't work", "Thanks. How do I reset my password?",
    ...                                  "thanks for nothing", "ok", "no thanks")]
    [False, False, False, True, False]
    """
    if "?" in text:
        return False
    words = _WORD.findall(text.lower().replace("\u2019", "'"))
    if not words or len(words) > MAX_WORDS:
        return False
    i, acknowledged = 0, False
    while i < len(words):
        phrase = next((p for p in _PHRASES if tuple(words[i:i + len(p)]) == p), None)
        if phrase is not None:
            i += len(phrase)
            acknowledged = True
        elif words[i] in AROUND:
            i += 1
        else:
            return False
    return acknowledged
