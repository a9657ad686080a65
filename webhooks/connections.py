"""What the after-commit workers share about their connections: which failures are transient
(the broker or the database went away: start the session over) and an interruptible wait."""

from __future__ import annotations

import asyncio

import aio_pika
import aiormq
import asyncpg

# A connection refused, dropped or timed out, a nack or an unroutable return: the session
# (leadership term, consumer subscription) ends and starts over after a pause.
TRANSIENT = (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError,
             aiormq.exceptions.AMQPError, aio_pika.exceptions.AMQPException, RuntimeError)


async def wait_or_stop(stop: asyncio.Event, timeout_s: float) -> bool:
    """Sleep up to `timeout_s`, waking early on stop; True when stopping."""
    try:
        await asyncio.wait_for(stop.wait(), timeout_s)
    except TimeoutError:
        return False
    return True
