"""The webhook worker: one delivery attempt per message, then ack, retry or dead-letter.

For each job: look up the merchant's endpoint now (URL, delivery flag, live secrets), POST the
signed body, record the attempt, then
    2xx        -> delivered
    410 Gone   -> the merchant's delivery is disabled (only for the URL that answered)
    otherwise  -> the next delay tier (a Retry-After moves it later), or after the last
                  attempt the dead-letter queue and the event's status `failed`
and only then acknowledge. A crash anywhere before the ack redelivers the message: the
merchant may see the event twice, always with the same `webhook-id`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import msgspec

from webhooks.attempts import Attempt, AttemptLog
from webhooks.consumer import Delivery
from webhooks.endpoints import Endpoint, EndpointCache
from webhooks.http_client import Answer, WebhookClient
from webhooks.jobs import BadJob, Job, job_of
from webhooks.schedule import delay_for

log = logging.getLogger(__name__)


class WebhookStatistics(msgspec.Struct, frozen=True, kw_only=True):
    delivered: int
    retried: int
    failed: int
    gone: int
    skipped: int
    rejected: int


def _skip_reason(endpoint: Endpoint | None) -> str:
    if endpoint is None:
        return "merchant unknown"
    if endpoint.url is None:
        return "merchant has no webhook URL"
    if not endpoint.delivery_enabled:
        return "merchant delivery disabled"
    return "merchant has no valid signing secret"


class WebhookWorker:
    def __init__(self, *, endpoints: EndpointCache, attempts: AttemptLog,
                 client: WebhookClient, schedule_ms: tuple[int, ...],
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._endpoints = endpoints
        self._attempts = attempts
        self._client = client
        self._schedule_ms = schedule_ms
        self._clock = clock
        self._counts = dict.fromkeys(
            ("delivered", "retry", "failed", "gone", "skipped", "rejected"), 0)

    def statistics(self) -> WebhookStatistics:
        c = self._counts
        return WebhookStatistics(delivered=c["delivered"], retried=c["retry"],
                                 failed=c["failed"], gone=c["gone"], skipped=c["skipped"],
                                 rejected=c["rejected"])

    async def handle(self, delivery: Delivery) -> None:
        try:
            job = job_of(delivery.message)
            await self._attempt(delivery, job)
        except (BadJob, asyncpg.IntegrityConstraintViolationError, asyncpg.DataError) as exc:
            # Not a job of ours (no headers, or naming no transaction): straight to the
            # dead-letter queue (the work queue's DLX), never redelivered in a loop.
            log.error("%s: %s: dead-lettered", delivery.queues.work, exc)
            self._counts["rejected"] += 1
            await delivery.message.reject(requeue=False)

    async def _attempt(self, delivery: Delivery, job: Job) -> None:
        endpoint = await self._endpoints.get(job.merchant_id)
        attempted_at = self._clock()
        if endpoint is None or not endpoint.deliverable:
            await self._record(job, endpoint, attempted_at, None, "skipped",
                               error=_skip_reason(endpoint))
            await delivery.message.ack()
            return
        assert endpoint.url is not None  # deliverable
        answer = await self._client.post(endpoint.url, event_id=job.event_id, body=job.body,
                                         secrets=endpoint.secrets,
                                         now_s=attempted_at.timestamp())
        await self._settle(delivery, job, endpoint, attempted_at, answer)

    async def _settle(self, delivery: Delivery, job: Job, endpoint: Endpoint,
                      attempted_at: datetime, answer: Answer) -> None:
        if answer.ok:
            await self._record(job, endpoint, attempted_at, answer, "delivered")
        elif answer.status_code == 410:
            assert endpoint.url is not None
            await self._endpoints.disable_gone(job.merchant_id, endpoint.url)
            await self._record(job, endpoint, attempted_at, answer, "gone")
        else:
            delay_ms = delay_for(self._schedule_ms, job.attempt,
                                 retry_after_s=answer.retry_after_s)
            if delay_ms is None:
                await self._record(job, endpoint, attempted_at, answer, "failed")
                await delivery.bury(job)
            else:
                await self._record(job, endpoint, attempted_at, answer, "retry",
                                   next_attempt_at=attempted_at + timedelta(milliseconds=delay_ms))
                await delivery.schedule_retry(job, delay_ms)
        await delivery.message.ack()

    async def _record(self, job: Job, endpoint: Endpoint | None, attempted_at: datetime,
                      answer: Answer | None, outcome: str, *, error: str | None = None,
                      next_attempt_at: datetime | None = None) -> None:
        await self._attempts.record(Attempt(
            event_id=job.event_id, transaction_id=job.transaction_id,
            merchant_id=job.merchant_id, replay_id=job.replay_id, attempt=job.attempt,
            url=None if endpoint is None else endpoint.url, attempted_at=attempted_at,
            status_code=None if answer is None else answer.status_code,
            latency_ms=None if answer is None else round(answer.latency_ms, 3),
            error=error if answer is None else answer.error, outcome=outcome,
            next_attempt_at=next_attempt_at))
        self._counts[outcome] += 1
