"""The RabbitMQ queues of one kind of job (webhooks, alerts) and how they are declared.

    <prefix>.<job>                 work queue (quorum): the relay publishes here, workers consume
    <prefix>.<job>.delay.<ms>ms    one per distinct retry delay (quorum, message TTL): nobody
                                   consumes; an expired message is dead-lettered back to the
                                   work queue, so no consumer sleeps holding a message
    <prefix>.<job>.dead            after the last attempt (and for poison messages that were
                                   delivered `DELIVERY_LIMIT` times without an ack)

Every queue is a durable quorum queue; messages are persistent and published with confirms.
Dead-lettering is `at-least-once` (it needs `overflow=reject-publish`): a broker failure
while a retry moves between queues duplicates it rather than dropping it. Messages sent via
the default exchange to a queue name with `mandatory`, so a missing queue is an error, not a
silent drop. Per-tier queues instead of one queue with per-message TTLs: a message expires only
at the head of its queue, so a 5 s retry would wait behind a 10 h one.
"""

from __future__ import annotations

from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractChannel
from pamqp.common import FieldTable

from webhooks.schedule import JITTER

# A message delivered this often without an ack (a worker crashing on it) is dead-lettered.
DELIVERY_LIMIT = 20


@dataclass(frozen=True)
class JobQueues:
    prefix: str
    job: str
    schedule_ms: tuple[int, ...]

    @property
    def work(self) -> str:
        return f"{self.prefix}.{self.job}"

    @property
    def dead(self) -> str:
        return f"{self.work}.dead"

    def delay(self, delay_ms: int) -> str:
        return f"{self.work}.delay.{delay_ms}ms"

    def names(self) -> list[str]:
        return [self.work, self.dead, *(self.delay(d) for d in sorted(set(self.schedule_ms)))]


def _quorum(**arguments: int | str) -> FieldTable:
    return {"x-queue-type": "quorum", **arguments}


def _dead_letter_to(queue: str) -> dict[str, str]:
    return {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": queue,
            "x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"}


async def declare(channel: AbstractChannel, queues: JobQueues) -> aio_pika.abc.AbstractQueue:
    """Declare every queue of the job (idempotent); returns the work queue."""
    await channel.declare_queue(queues.dead, durable=True, arguments=_quorum())
    work = await channel.declare_queue(
        queues.work, durable=True,
        arguments=_quorum(**{"x-delivery-limit": DELIVERY_LIMIT}, **_dead_letter_to(queues.dead)))
    for delay_ms in sorted(set(queues.schedule_ms)):
        # The queue's TTL bounds the jittered per-message expiry from above.
        await channel.declare_queue(
            queues.delay(delay_ms), durable=True,
            arguments=_quorum(**{"x-message-ttl": round(delay_ms * (1 + JITTER)) + 1},
                              **_dead_letter_to(queues.work)))
    return work


async def delete(channel: AbstractChannel, queues: JobQueues) -> None:
    """Delete the job's queues (tests clean up their own per-run names with it)."""
    for name in queues.names():
        await channel.queue_delete(name)
