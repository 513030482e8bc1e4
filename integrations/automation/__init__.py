"""Automation: the built-in answer bot and the signed-webhook adapter for an external bot."""

from integrations.automation.bot import AnswerBot, Match, automation_outcome
from integrations.automation.kb import (
    DEFAULT_KB_PATH,
    BitextRow,
    Intent,
    KnowledgeBase,
    KnowledgeBaseError,
    kb_from_bitext,
    load_bitext,
    load_kb,
    split_bitext,
)
from integrations.automation.webhook import WebhookAutomation, WebhookReply

__all__ = [
    "DEFAULT_KB_PATH",
    "AnswerBot",
    "BitextRow",
    "Intent",
    "KnowledgeBase",
    "KnowledgeBaseError",
    "Match",
    "WebhookAutomation",
    "WebhookReply",
    "automation_outcome",
    "kb_from_bitext",
    "load_bitext",
    "load_kb",
    "split_bitext",
]
