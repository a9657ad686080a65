"""One job on RabbitMQ: the event body plus headers that say which attempt this is.

The body is the exact bytes the merchant receives (or the alert's data); the headers carry
what a worker needs without parsing it. A retry republishes the same body with `attempt`
one higher to a delay queue, so every attempt of an event sends identical bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
from pamqp.common import FieldValue


class BadJob(Exception):
    """A message without the headers a job needs (not ours, or hand-published)."""

    code = "bad_job"


@dataclass(frozen=True)
class Job:
    event_id: str
    transaction_id: str
    merchant_id: str
    attempt: int
    body: bytes
    replay_id: int | None = None

    def headers(self) -> dict[str, FieldValue]:
        headers: dict[str, FieldValue] = {
            "event-id": self.event_id, "transaction-id": self.transaction_id,
            "merchant-id": self.merchant_id, "attempt": self.attempt}
        if self.replay_id is not None:
            headers["replay-id"] = self.replay_id
        return headers

    def next_attempt(self) -> Job:
        return Job(self.event_id, self.transaction_id, self.merchant_id, self.attempt + 1,
                   self.body, self.replay_id)


def job_of(message: AbstractIncomingMessage) -> Job:
    headers = message.headers or {}
    try:
        replay = headers.get("replay-id")
        return Job(event_id=str(headers["event-id"]),
                   transaction_id=str(headers["transaction-id"]),
                   merchant_id=str(headers["merchant-id"]),
                   attempt=int(str(headers.get("attempt", 1))),
                   body=message.body,
                   replay_id=None if replay is None else int(str(replay)))
    except (KeyError, TypeError, ValueError) as exc:
        raise BadJob(f"message {message.message_id!r} lacks job headers: {exc}") from None


async def publish(channel: AbstractChannel, queue: str, job: Job, *,
                  expiration_ms: int | None = None, timestamp: datetime | None = None) -> None:
    """Publish persistently to `queue` and wait for the broker's confirm.

    Raises aio-pika's/aiormq's errors when the broker nacks, returns it as unroutable (no
    such queue) or the connection drops: the caller has not handed the job over then.
    """
    message = aio_pika.Message(
        job.body, content_type="application/json", message_id=job.event_id,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT, headers=job.headers(),
        expiration=None if expiration_ms is None else expiration_ms / 1000,
        timestamp=timestamp)
    await channel.default_exchange.publish(message, routing_key=queue, mandatory=True)
