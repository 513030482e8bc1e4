"""The number a customer texted is remembered before their message is queued, so even the first answer to a first
text (a bot answer the worker sends at once) goes out from that number.

Before: it was remembered only after the ingest had queued the message; a worker quick enough answered before it,
from TWILIO_FROM_NUMBER, a number the customer had never written to."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import urlparse

import redis.asyncio as aioredis

from gateway import keys
from integrations.twilio.signature import compute
from tests.harness import Gateway, eventually
from tests.test_twilio import PUBLIC, SHOP, TOKEN, sms
from tests.twilio_gateway import sms_gw
from tests.twilio_standin import StandIn

__all__ = ["sms_gw"]
SUPPORT_LINE = "+18005550199"
CUSTOMER = "+14155550123"


@contextlib.asynccontextmanager
async def monitored(redis_url: str) -> AsyncIterator[list[str]]:
    """Every command Redis executes meanwhile, in its order (`MONITOR`; a script's own calls show as `[0 lua]`)."""
    url = urlparse(redis_url)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    writer.write(b"MONITOR\r\n")
    await writer.drain()
    assert (await reader.readline()).strip() == b"+OK"
    lines: list[str] = []

    async def read() -> None:
        while line := await reader.readline():
            lines.append(line.decode(errors="replace").strip())

    task = asyncio.create_task(read())
    try:
        yield lines
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        writer.close()


async def _texts(gw: Gateway, sid: str, body: str, to: str = SUPPORT_LINE, token: str = TOKEN,
                 form: dict[str, str] | None = None) -> int:
    form = form if form is not None else {**sms(sid=sid, frm=CUSTOMER, body=body), "To": to}
    signed = compute(token, f"{PUBLIC}/channels/twilio", form.items())
    async with gw.session.post(f"{gw.url}/channels/twilio", data=form, headers={"X-Twilio-Signature": signed}) as r:
        return r.status


async def test_the_number_is_remembered_before_the_message_is_queued(
    sms_gw: tuple[Gateway, StandIn], redis: aioredis.Redis, redis_url: str
) -> None:
    gw, standin = sms_gw
    via = keys.reply_via(f"sms:{CUSTOMER}")
    async with monitored(redis_url) as commands:
        assert await _texts(gw, "SM" + "1" * 32, "How long does shipping usually take?") == 200
        await asyncio.sleep(0.2)  # MONITOR's lines trail the commands a little
    remembered = [i for i, c in enumerate(commands) if '"SET"' in c and f'"{via}"' in c]
    queued = [i for i, c in enumerate(commands) if '"XADD"' in c and f'"{keys.inbound_stream(0)[:-1]}' in c
              and f'"sms:{CUSTOMER}"' in c]
    assert remembered and queued, commands
    # The worker can take the message from the stream as soon as it is added: by then the number must be known.
    assert remembered[0] < queued[0], commands

    (answer,) = await eventually(lambda: [c["form"] for c in standin.calls if c["form"]["To"] == CUSTOMER])
    assert answer["From"] == SUPPORT_LINE != SHOP


async def test_a_message_refused_at_the_door_remembers_nothing(
    sms_gw: tuple[Gateway, StandIn], redis: aioredis.Redis
) -> None:
    """A bad signature, a form that is no message, an empty one: nothing stored, and no number remembered."""
    gw, _ = sms_gw
    via = keys.reply_via(f"sms:{CUSTOMER}")
    assert await _texts(gw, "SM" + "2" * 32, "hello", token="not-the-auth-token") == 403
    no_sid = {k: v for k, v in sms(frm=CUSTOMER).items() if k != "MessageSid"} | {"To": SUPPORT_LINE}
    assert await _texts(gw, "", "", form=no_sid) == 400
    assert await _texts(gw, "SM" + "3" * 32, "   ") == 200  # empty: acknowledged and dropped
    assert not await redis.exists(via)
