"""The alerts worker: flagged and declined payments e-mailed to the fraud team, a burst as one
digest, an SMTP failure retried through the delay queues like a webhook.

`handle` (given to a `Consumer`) buffers each delivery and waits until its mail is settled;
`run` owns the flusher that sends the buffer as one mail when its oldest alert is
`digest_window_s` old or `digest_max` alerts are waiting. The buffer never holds more than the
consumer's prefetch: the broker sends no more unacknowledged messages than that.

After the SMTP server accepted a mail, a row goes into `alert_mails` and every message of it is
acknowledged. When it did not, each job is republished to the delay queue of its next attempt
(or, after the last one, to the dead-letter queue) and then acknowledged. A message that is no
alert job is rejected, which the broker dead-letters. Delivery is at-least-once: a redelivered
message (a worker that died after mailing, before acknowledging) is mailed again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
import msgspec

from webhooks import mail
from webhooks.consumer import Delivery
from webhooks.events import AlertData, alert_decoder
from webhooks.jobs import BadJob, Job, job_of
from webhooks.schedule import delay_for
from webhooks.topology import JobQueues

log = logging.getLogger(__name__)

_RECORD_MAIL = "INSERT INTO alert_mails (recipients, subject, event_ids) VALUES ($1, $2, $3)"


class AlertStatistics(msgspec.Struct, frozen=True, kw_only=True):
    mails_sent: int
    alerts_mailed: int
    # Mails the SMTP server did not accept (each one's alerts were retried or buried).
    failures: int
    retries_scheduled: int
    dead_lettered: int
    malformed: int
    # Alerts only logged: no recipients configured.
    logged: int
    # Mails sent but not written to alert_mails (the database failed; logged instead).
    unrecorded: int
    buffered: int


@dataclass
class _Counters:
    mails_sent: int = 0
    alerts_mailed: int = 0
    failures: int = 0
    retries_scheduled: int = 0
    dead_lettered: int = 0
    malformed: int = 0
    logged: int = 0
    unrecorded: int = 0


@dataclass(frozen=True, eq=False)
class _Pending:
    delivery: Delivery
    job: Job
    alert: AlertData
    arrived_s: float
    # True once mailed, False when the mail failed (the delivery then schedules its retry).
    mailed: asyncio.Future[bool]


class AlertWorker:
    """Buffers alert deliveries and mails them, alone or as a digest.

    Run `handle` under a `Consumer` of `queues` and `run` beside it, both with the same stop
    event. No `recipients`: every alert is logged at INFO and acknowledged, nothing is mailed.
    """

    def __init__(self, pool: asyncpg.Pool, queues: JobQueues, *, smtp: mail.SmtpConfig,
                 recipients: Sequence[str], sender: str, digest_window_s: float = 5.0,
                 digest_max: int = 50) -> None:
        if digest_max < 1 or digest_window_s < 0:
            raise ValueError("digest_max must be at least 1 and digest_window_s not negative")
        self._pool = pool
        self._queues = queues
        self._smtp = smtp
        self._recipients = tuple(recipients)
        self._sender = sender
        self._digest_window_s = digest_window_s
        self._digest_max = digest_max
        self._pending: list[_Pending] = []
        self._wake = asyncio.Event()
        self._closed = False
        self._counters = _Counters()

    def statistics(self) -> AlertStatistics:
        return AlertStatistics(**vars(self._counters), buffered=len(self._pending))

    async def handle(self, delivery: Delivery) -> None:
        """Settle one message: buffered, mailed and acknowledged, or retried, or rejected."""
        message = delivery.message
        try:
            job = job_of(message)
            alert = alert_decoder.decode(job.body)
        except (BadJob, msgspec.DecodeError) as exc:
            self._counters.malformed += 1
            log.warning("%s: rejecting message %r, not an alert job (dead-lettered): %s",
                        self._queues.work, message.message_id, exc)
            await message.reject(requeue=False)
            return
        if not self._recipients:
            self._counters.logged += 1
            log.info("alert not mailed (alerts disabled: no recipients): %s",
                     mail.summary_of(alert))
            await message.ack()
            return
        if self._closed:
            # The flusher has stopped: back to the queue for the next worker.
            await message.nack(requeue=True)
            return
        if await self._buffer(delivery, job, alert):
            await message.ack()
        else:
            await self._retry(delivery, job)

    async def _buffer(self, delivery: Delivery, job: Job, alert: AlertData) -> bool:
        loop = asyncio.get_running_loop()
        pending = _Pending(delivery, job, alert, loop.time(), loop.create_future())
        self._pending.append(pending)
        # The first alert starts the window; a full digest goes out at once.
        if len(self._pending) == 1 or len(self._pending) >= self._digest_max:
            self._wake.set()
        return await pending.mailed

    async def _retry(self, delivery: Delivery, job: Job) -> None:
        delay_ms = delay_for(self._queues.schedule_ms, job.attempt)
        if delay_ms is None:
            log.error("%s: alert %s not mailed after %d attempts; dead-lettered",
                      self._queues.work, job.event_id, job.attempt)
            await delivery.bury(job)
            self._counters.dead_lettered += 1
        else:
            await delivery.schedule_retry(job, delay_ms)
            self._counters.retries_scheduled += 1
        await delivery.message.ack()

    async def run(self, stop: asyncio.Event) -> None:
        """Mail the buffer whenever it is due until `stop` is set, then what is left."""
        while not stop.is_set():
            due_in_s = self._due_in_s()
            if due_in_s is not None and due_in_s <= 0:
                await self._flush()
                continue
            self._wake.clear()
            await _wait_any(stop, self._wake, timeout_s=due_in_s)
        self._closed = True
        while self._pending:
            await self._flush()

    def _due_in_s(self) -> float | None:
        """Seconds until the buffer must go out; None when it is empty."""
        if not self._pending:
            return None
        if len(self._pending) >= self._digest_max:
            return 0.0
        oldest_s = self._pending[0].arrived_s
        return oldest_s + self._digest_window_s - asyncio.get_running_loop().time()

    async def _flush(self) -> None:
        batch = self._pending[:self._digest_max]
        self._pending = self._pending[self._digest_max:]
        # The channel of a stale delivery closed (the consumer reconnected): the broker
        # redelivers it, so mailing it now would mail it twice.
        live = [p for p in batch if not p.delivery.channel.is_closed]
        mailed: bool | None = None
        try:
            if live:
                mailed = await self._mail(live)
        finally:
            for pending in batch:
                if mailed is None or pending not in live:
                    # Stale, cancelled or crashed: the message is not acknowledged here.
                    pending.mailed.cancel()
                elif not pending.mailed.done():
                    pending.mailed.set_result(mailed)

    async def _mail(self, batch: list[_Pending]) -> bool:
        # A redelivered duplicate in the same batch is mailed once, both are acknowledged.
        alerts = list({p.alert.event_id: p.alert for p in batch}.values())
        message = mail.compose(alerts, sender=self._sender, recipients=self._recipients)
        try:
            await mail.send(self._smtp, message, sender=self._sender, recipients=self._recipients)
        except mail.MailNotSent as exc:
            self._counters.failures += 1
            log.warning("%s: %d alert(s) not mailed (each retried or dead-lettered): %s",
                        self._queues.work, len(alerts), exc)
            return False
        self._counters.mails_sent += 1
        self._counters.alerts_mailed += len(alerts)
        log.info("mailed %r to %s", message["Subject"], ", ".join(self._recipients))
        await self._record(message["Subject"], [alert.event_id for alert in alerts])
        return True

    async def _record(self, subject: str, event_ids: list[str]) -> None:
        try:
            await self._pool.execute(_RECORD_MAIL, list(self._recipients), subject, event_ids)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            # The team has the mail: sending it again to repair the record would be worse.
            self._counters.unrecorded += 1
            log.error("alert mail %r sent but not recorded in alert_mails (events %s): %s",
                      subject, ", ".join(event_ids), exc)


async def _wait_any(*events: asyncio.Event, timeout_s: float | None) -> None:
    """Wait until one of `events` is set or `timeout_s` has passed."""
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
