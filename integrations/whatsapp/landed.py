"""Did an earlier attempt of this reply part reach Meta? Asked before any resend that could double it.

Meta's send call has no idempotency key, and a timeout, a dropped connection or a 5xx can come after Meta
already accepted the message: resending then texts the customer twice. Unlike Twilio, Meta cannot be asked
what it took (there is no list of sent messages). What it does offer is `biz_opaque_callback_data`: a string we
set on the send and Meta echoes in every status webhook of that message. So each part is sent naming itself
(`callback_data`), the status webhook records "this part landed as wamid W" (`record`), and a successful answer
records the same (`settle`), so a worker that died after Meta's answer does not send the part again either.

Because the answer to "did it land?" arrives by webhook, a little after the attempt, there are three answers,
not two: landed (take its wamid), not yet known, and "given up waiting". Each attempt leaves a mark with the time
it began (`begin`, before the request: a worker can die mid-send); a resend while the latest mark is younger
than `UNSETTLED_S` is not made, the send answers a transient failure and the worker's retries come back. The
mark is the latest attempt's, not the first's (`integrations.twilio.parts.SentParts.begin` keeps the first):
after a resend past the bound, a second lost answer must again be waited out, not resent at the next retry.

Any status counts as landed, `failed` too: Meta took the request and gave it a wamid, the failure is told to the
agent by the status webhook (attributed through the conversation id in the callback data even when our sender
never saw the wamid), and a resend would tell the customer nothing new or, if it went through, contradict the
note the agent already has. A mark cleared by an answer that surely did not land (a 4xx: nothing was taken)
lets the next attempt go at once.
"""

from __future__ import annotations

import hashlib
import json

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from gateway.redis_conn import as_str
from integrations.twilio.parts import KEEP_S

log = structlog.get_logger(__name__)

UNSETTLED_S = 90.0
"""How long after an attempt began its status is waited for before the part is sent again. Meta's first
status (`sent`, which needs only Meta's servers, not the customer's phone) arrives within seconds; ninety is
fifteen seconds of send timeout plus a wide margin for a slow or re-delivered webhook, yet is passed by the
worker's sixth retry (about two minutes after the first: 2, 4, 8, 16, 32, 64 s), leaving half of its half hour
of retries for the resend. Past it, at least once beats a reply lost for good."""
TAG = "sb1"
"""Marks callback data as ours: another tool on the same WhatsApp account may set its own."""
_MAX_ID = 200


def ref(message_id: str, part: int) -> str:
    """A short, stable name for one part of one reply (long ids are hashed to keep the data small).

    >>> ref("out-1717000000.123", 0)
    'out-1717000000.123:0'
    >>> len(ref("x" * 1000, 2)) < 80
    True
    """
    mid = message_id if len(message_id) <= _MAX_ID else "h" + hashlib.sha256(message_id.encode()).hexdigest()
    return f"{mid}:{part}"


def callback_data(conversation_id: str, message_id: str, part: int) -> str:
    """What Meta echoes in the part's status webhooks; always well under Meta's 512 characters.

    >>> callback_data("conv_1", "out-9", 1)
    '{"sb1":"out-9:1","conv":"conv_1"}'
    """
    data: dict[str, str] = {TAG: ref(message_id, part)}
    if len(conversation_id) <= _MAX_ID:  # only to attribute statuses; the part's name is what matters
        data["conv"] = conversation_id
    return json.dumps(data, separators=(",", ":"))


def parse(data: str | None) -> tuple[str, str | None] | None:
    """(part ref, conversation id) from callback data we set; None for anyone else's (or none).

    >>> parse('{"sb1":"out-9:1","conv":"conv_1"}'), parse('{"sb1":"out-9:1"}'), parse("campaign-7")
    (('out-9:1', 'conv_1'), ('out-9:1', None), None)
    """
    if not data or len(data) > 512:
        return None
    try:
        raw = json.loads(data)
    except ValueError:
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get(TAG), str):
        return None
    conv = raw.get("conv")
    return str(raw[TAG]), conv if isinstance(conv, str) and conv else None


def landed_key(part_ref: str) -> str:
    return f"sb:whatsapp:landed:{part_ref}"


def begun_key(part_ref: str) -> str:
    return f"sb:whatsapp:attempt:{part_ref}"


class Landed:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis

    async def found(self, message_id: str, part: int) -> str | None:
        """The wamid Meta gave this part (reported by a status, or answered to an earlier attempt), or None."""
        raw = await self.redis.get(landed_key(ref(message_id, part)))
        return as_str(raw) if raw is not None else None

    async def begun(self, message_id: str, part: int) -> float | None:
        """When the latest attempt whose outcome is unknown began, or None."""
        raw = await self.redis.get(begun_key(ref(message_id, part)))
        try:
            return float(as_str(raw)) if raw is not None else None
        except ValueError:
            return None

    async def begin(self, message_id: str, part: int, now: float) -> None:
        await self.redis.set(begun_key(ref(message_id, part)), repr(now), ex=KEEP_S)

    async def settle(self, message_id: str, part: int, wamid: str | None, conversation_id: str) -> None:
        """The attempt's outcome is known: taken as `wamid`, or surely refused (None)."""
        name = ref(message_id, part)
        try:
            if wamid:
                await record(self.redis, name, wamid)
            await self.redis.delete(begun_key(name))
        except (RedisError, OSError):  # sent is sent: a lost note only means waiting before a needless resend
            log.warning("whatsapp_outcome_unrecorded", conversation_id=conversation_id, message_id=message_id,
                        part=part)


async def record(redis: aioredis.Redis, part_ref: str, wamid: str) -> bool:
    """Part `part_ref` landed as `wamid`; whether this is the first word of it (the first wamid is kept)."""
    return bool(await redis.set(landed_key(part_ref), wamid, nx=True, ex=KEEP_S))
