"""The alerts worker against a real SMTP server (aiosmtpd), RabbitMQ and PostgreSQL.

Each test has its own queues (a compressed retry schedule, 200 ms then 400 ms) and its own
SMTP server on a free port; alert jobs are published to the work queue the way the relay does.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import aio_pika
import asyncpg
import pytest
from aio_pika.abc import AbstractChannel

from ops.settings import Settings
from tests.conftest import unique, wait_for
from tests.webhooks.conftest import MailServer
from webhooks import topology
from webhooks.alerts import AlertWorker
from webhooks.consumer import Consumer
from webhooks.events import TYPES, AlertData, encode, event_id
from webhooks.jobs import Job, publish
from webhooks.mail import SmtpConfig, body_of, compose, parse_recipients, subject_of
from webhooks.schedule import parse_schedule
from webhooks.topology import JobQueues

TEAM = ("fraud@bank.test", "oncall@bank.test")
SENDER = "sentinel@bank.test"


def make_alert(*, decision: str = "decline", risk_score: float = 0.87,
               reasons: tuple[str, ...] = ("velocity_1m", "country_mismatch")) -> AlertData:
    transaction_id = unique("t")
    now = datetime.now(UTC)
    return AlertData(
        event_id=event_id(transaction_id), type=TYPES[decision],
        transaction_id=transaction_id, account_id="acct-7", card_id="card-42",
        merchant_id="m-corner", merchant_category="grocery_pos", country="FR",
        amount="412.50", currency="EUR", decision=decision, risk_score=risk_score,
        reasons=list(reasons), rules_version=3, model_version="forest-1", event_time=now,
        recorded_at=now)


def job_of_alert(alert: AlertData) -> Job:
    return Job(event_id=alert.event_id, transaction_id=alert.transaction_id,
               merchant_id=alert.merchant_id, attempt=1, body=encode(alert))


@pytest.fixture
async def smtp() -> AsyncIterator[MailServer]:
    server = MailServer()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def channel(settings: Settings) -> AsyncIterator[AbstractChannel]:
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        yield await connection.channel(publisher_confirms=True, on_return_raises=True)


@pytest.fixture
async def queues(settings: Settings, channel: AbstractChannel) -> AsyncIterator[JobQueues]:
    queues = JobQueues(settings.amqp_prefix, f"alerts-{uuid.uuid4().hex[:8]}",
                       parse_schedule("200ms,400ms"))
    await topology.declare(channel, queues)
    yield queues
    await topology.delete(channel, queues)


def make_worker(pool: asyncpg.Pool, queues: JobQueues, smtp: MailServer, *,
                recipients: tuple[str, ...] = TEAM, digest_window_s: float = 0.05,
                digest_max: int = 50) -> AlertWorker:
    return AlertWorker(pool, queues, smtp=SmtpConfig(port=smtp.port, timeout_s=2.0),
                       recipients=recipients, sender=SENDER, digest_window_s=digest_window_s,
                       digest_max=digest_max)


@asynccontextmanager
async def running(settings: Settings, worker: AlertWorker,
                  queues: JobQueues) -> AsyncIterator[None]:
    """The worker and its consumer, as `sentinel worker alerts` runs them; stopped on exit."""
    stop = asyncio.Event()
    consumer = Consumer(settings.amqp_url, queues, worker.handle, prefetch=100, retry_s=0.1)
    both = asyncio.gather(consumer.run(stop), worker.run(stop))
    try:
        await asyncio.wait_for(consumer.wait_subscribed(), 10)
        yield
    finally:
        stop.set()
        await asyncio.wait_for(both, 10)


async def queue_depth(channel: AbstractChannel, name: str) -> int:
    queue = await channel.declare_queue(name, passive=True)
    count = queue.declaration_result.message_count
    assert count is not None
    return count


async def mail_rows(pool: asyncpg.Pool, alert: AlertData) -> list[asyncpg.Record]:
    return await pool.fetch("SELECT recipients, subject, event_ids FROM alert_mails "
                            "WHERE $1 = ANY(event_ids)", alert.event_id)


# --- composing (no services) -----------------------------------------------------------------

def test_one_alert_is_a_single_mail_with_everything_to_review_it():
    alert = make_alert(risk_score=0.8712)
    message = compose([alert], sender=SENDER, recipients=TEAM)
    assert message["Subject"] == (
        f"[SentinelStream] transaction.declined {alert.transaction_id} (risk 0.87)")
    assert message["To"] == "fraud@bank.test, oncall@bank.test"
    body = message.get_content()
    for text in (alert.transaction_id, "velocity_1m, country_mismatch", "0.87", "412.50 EUR",
                 "m-corner (grocery_pos, FR)", "card-42", "acct-7"):
        assert text in body


def test_a_digest_counts_each_outcome_and_lists_the_riskiest_first():
    alerts = [make_alert(risk_score=0.5), *(make_alert(risk_score=0.9) for _ in range(8)),
              *(make_alert(decision="flag", risk_score=0.7) for _ in range(3))]
    assert subject_of(alerts) == "[SentinelStream] 12 alerts: 9 declined, 3 flagged"
    assert subject_of(alerts[-3:]) == "[SentinelStream] 3 alerts: 3 flagged"
    body = body_of(alerts)
    positions = [body.index(alert.transaction_id) for alert in alerts]
    assert positions[0] > max(positions[1:])


def test_recipients_are_a_comma_separated_list_and_empty_means_none():
    assert parse_recipients(" a@x.test, b@y.test ,") == ("a@x.test", "b@y.test")
    assert parse_recipients("") == ()


# --- the worker ------------------------------------------------------------------------------

async def test_a_single_alert_is_mailed_recorded_and_acknowledged(
        settings, pool, smtp, queues, channel):
    worker = make_worker(pool, queues, smtp)
    alert = make_alert()
    async with running(settings, worker, queues):
        await publish(channel, queues.work, job_of_alert(alert))
        await wait_for(lambda: _true(len(smtp.received) == 1))
        await wait_for(lambda: _nonempty(mail_rows(pool, alert)))
    sender, recipients, message = smtp.received[0]
    assert (sender, recipients) == (SENDER, list(TEAM))
    assert message["Subject"] == (
        f"[SentinelStream] transaction.declined {alert.transaction_id} (risk 0.87)")
    body = message.get_content()
    assert alert.transaction_id in body and "velocity_1m, country_mismatch" in body
    [row] = await mail_rows(pool, alert)
    assert (row["recipients"], row["subject"], row["event_ids"]) == (
        list(TEAM), message["Subject"], [alert.event_id])
    assert await queue_depth(channel, queues.work) == 0
    stats = worker.statistics()
    assert (stats.mails_sent, stats.alerts_mailed, stats.failures, stats.buffered) == (1, 1, 0, 0)


async def test_a_burst_within_the_window_is_one_digest(settings, pool, smtp, queues, channel):
    worker = make_worker(pool, queues, smtp, digest_window_s=1.0)
    alerts = [make_alert(decision="decline" if i % 4 else "flag") for i in range(20)]
    async with running(settings, worker, queues):
        await asyncio.gather(*(publish(channel, queues.work, job_of_alert(a)) for a in alerts))
        await wait_for(lambda: _true(worker.statistics().alerts_mailed == 20))
    assert len(smtp.mails) == 1
    [message] = smtp.mails
    assert message["Subject"] == "[SentinelStream] 20 alerts: 15 declined, 5 flagged"
    body = message.get_content()
    assert all(body.count(alert.transaction_id) == 1 for alert in alerts)
    [row] = await mail_rows(pool, alerts[0])
    assert sorted(row["event_ids"]) == sorted(alert.event_id for alert in alerts)
    assert await queue_depth(channel, queues.work) == 0


async def test_a_full_digest_goes_at_once_and_stopping_sends_the_rest(
        settings, pool, smtp, queues, channel):
    worker = make_worker(pool, queues, smtp, digest_window_s=60.0, digest_max=2)
    alerts = [make_alert() for _ in range(5)]
    async with running(settings, worker, queues):
        for alert in alerts:
            await publish(channel, queues.work, job_of_alert(alert))
        await wait_for(lambda: _true(len(smtp.mails) == 2 and worker.statistics().buffered == 1))
    assert [m["Subject"] for m in smtp.mails] == [
        "[SentinelStream] 2 alerts: 2 declined", "[SentinelStream] 2 alerts: 2 declined",
        f"[SentinelStream] transaction.declined {alerts[4].transaction_id} (risk 0.87)"]
    assert await queue_depth(channel, queues.work) == 0


async def test_an_smtp_outage_is_retried_until_the_server_is_back(
        settings, pool, smtp, queues, channel):
    await smtp.stop()
    worker = make_worker(pool, queues, smtp)
    alert = make_alert()
    async with running(settings, worker, queues):
        await publish(channel, queues.work, job_of_alert(alert))
        await wait_for(lambda: _true(worker.statistics().retries_scheduled >= 1))
        await smtp.start()
        await wait_for(lambda: _nonempty(mail_rows(pool, alert)))
    assert len(smtp.mails) == 1 and alert.transaction_id in smtp.mails[0]["Subject"]
    stats = worker.statistics()
    assert stats.failures >= 1 and stats.mails_sent == 1 and stats.dead_lettered == 0
    assert await queue_depth(channel, queues.work) == 0


async def test_a_mail_never_accepted_is_dead_lettered_after_the_last_attempt(
        settings, pool, smtp, queues, channel):
    smtp.reply = "451 4.3.0 try later"
    worker = make_worker(pool, queues, smtp)
    alert = make_alert()
    async with running(settings, worker, queues):
        await publish(channel, queues.work, job_of_alert(alert))
        await wait_for(lambda: _true(worker.statistics().dead_lettered == 1))
    dead = await channel.declare_queue(queues.dead, passive=True)
    message = await dead.get(no_ack=True, fail=False, timeout=5)
    assert message is not None
    assert message.message_id == alert.event_id and message.headers["attempt"] == 3
    assert await mail_rows(pool, alert) == [] and smtp.mails == []
    stats = worker.statistics()
    assert (stats.failures, stats.retries_scheduled, stats.dead_lettered) == (3, 2, 1)
    assert await queue_depth(channel, queues.work) == 0


async def test_without_recipients_alerts_are_logged_and_acknowledged(
        settings, pool, smtp, queues, channel, caplog):
    caplog.set_level(logging.INFO, logger="webhooks.alerts")
    worker = make_worker(pool, queues, smtp, recipients=())
    alerts = [make_alert(), make_alert(decision="flag")]
    async with running(settings, worker, queues):
        for alert in alerts:
            await publish(channel, queues.work, job_of_alert(alert))
        await wait_for(lambda: _true(worker.statistics().logged == 2))
    assert smtp.mails == [] and await mail_rows(pool, alerts[0]) == []
    assert all(alert.transaction_id in caplog.text for alert in alerts)
    assert "alerts disabled" in caplog.text
    assert await queue_depth(channel, queues.work) == 0


async def test_malformed_messages_are_dead_lettered_and_the_worker_goes_on(
        settings, pool, smtp, queues, channel):
    worker = make_worker(pool, queues, smtp)
    alert = make_alert()
    async with running(settings, worker, queues):
        await channel.default_exchange.publish(
            aio_pika.Message(b"hello", message_id="stray"), routing_key=queues.work)
        not_json = Job(event_id="evt_x", transaction_id="x", merchant_id="m", attempt=1,
                       body=b"{not json")
        await publish(channel, queues.work, not_json)
        await wait_for(lambda: _true(worker.statistics().malformed == 2))
        await publish(channel, queues.work, job_of_alert(alert))
        await wait_for(lambda: _nonempty(mail_rows(pool, alert)))
    await wait_for(lambda: _equal(queue_depth(channel, queues.dead), 2))
    assert len(smtp.mails) == 1 and await queue_depth(channel, queues.work) == 0


async def _true(value: bool) -> bool:
    return value


async def _nonempty(rows: Any) -> bool:
    return bool(await rows)


async def _equal(count: Any, expected: int) -> bool:
    return bool(await count == expected)
