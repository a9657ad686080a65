"""The after-commit processes: `sentinel relay`, `sentinel worker webhooks|alerts`.

Each builds its resources from Settings, runs until SIGINT/SIGTERM sets `stop`, then finishes
in-flight work and closes them. Any number of each may run: relays elect one leader, workers
share their queue.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable

import uvloop

from ledger.repository import open_pool
from ops.settings import Settings
from webhooks.alerts import AlertWorker
from webhooks.attempts import AttemptLog
from webhooks.connections import wait_or_stop
from webhooks.consumer import Consumer
from webhooks.endpoints import EndpointCache
from webhooks.http_client import WebhookClient
from webhooks.mail import SmtpConfig, parse_recipients
from webhooks.relay import Relay
from webhooks.schedule import parse_schedule
from webhooks.topology import JobQueues
from webhooks.worker import WebhookWorker

log = logging.getLogger(__name__)


def webhook_queues(settings: Settings) -> JobQueues:
    return JobQueues(settings.amqp_prefix, "webhooks",
                     parse_schedule(settings.webhook_retry_schedule))


def alert_queues(settings: Settings) -> JobQueues:
    return JobQueues(settings.amqp_prefix, "alerts", parse_schedule(settings.alert_retry_schedule))


def build_relay(settings: Settings) -> Relay:
    return Relay(dsn=settings.database_url, amqp_url=settings.amqp_url,
                 webhooks=webhook_queues(settings), alerts=alert_queues(settings),
                 batch_max=settings.relay_batch_max, poll_s=settings.relay_poll_ms / 1000,
                 takeover_s=settings.relay_takeover_s)


# How often a running relay or worker logs its statistics record.
REPORT_EVERY_S = 60.0


async def report(name: str, statistics: Callable[[], object], stop: asyncio.Event) -> None:
    """Log `statistics()` every REPORT_EVERY_S until stop, then once more."""
    while not await wait_or_stop(stop, REPORT_EVERY_S):
        log.info("%s: %s", name, statistics())
    log.info("%s stopped: %s", name, statistics())


async def run_relay(settings: Settings, stop: asyncio.Event) -> None:
    relay = build_relay(settings)
    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(relay.run(stop))
        tasks.create_task(report("relay", relay.statistics, stop))


async def run_webhook_worker(settings: Settings, stop: asyncio.Event) -> None:
    pool = await open_pool(settings.database_url, min_size=1, max_size=4)
    try:
        async with WebhookClient(
                connections=settings.webhook_prefetch, timeout_s=settings.webhook_timeout_s,
                allow_private_networks=settings.webhook_allow_private_networks) as client:
            queues = webhook_queues(settings)
            worker = WebhookWorker(endpoints=EndpointCache(pool), attempts=AttemptLog(pool),
                                   client=client, schedule_ms=queues.schedule_ms)

            async def database_ready() -> None:
                await pool.fetchval("SELECT 1")

            consumer = Consumer(settings.amqp_url, queues, worker.handle,
                                prefetch=settings.webhook_prefetch, ready=database_ready,
                                drain_timeout_s=settings.shutdown_timeout_s)
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(consumer.run(stop))
                tasks.create_task(report("webhook worker", worker.statistics, stop))
    finally:
        await pool.close()


async def run_alert_worker(settings: Settings, stop: asyncio.Event) -> None:
    pool = await open_pool(settings.database_url, min_size=1, max_size=2)
    try:
        queues = alert_queues(settings)
        worker = AlertWorker(
            pool, queues,
            smtp=SmtpConfig(host=settings.smtp_host, port=settings.smtp_port,
                            username=settings.smtp_username, password=settings.smtp_password,
                            starttls=settings.smtp_starttls, timeout_s=settings.smtp_timeout_s),
            recipients=parse_recipients(settings.alert_to), sender=settings.alert_from,
            digest_window_s=settings.alert_digest_window_s,
            digest_max=settings.alert_digest_max)
        consumer = Consumer(settings.amqp_url, queues, worker.handle,
                            prefetch=settings.alert_prefetch,
                            drain_timeout_s=settings.shutdown_timeout_s)
        # handle() waits for the mail that run() sends: both run until stop, neither alone.
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(consumer.run(stop))
            tasks.create_task(worker.run(stop))
            tasks.create_task(report("alert worker", worker.statistics, stop))
    finally:
        await pool.close()


def _run_until_signalled(main: Callable[[asyncio.Event], Awaitable[None]]) -> int:
    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    uvloop.run(runner())
    return 0


def _relay(settings: Settings, args: argparse.Namespace) -> int:
    log.info("relay: campaigning for the lead (one leader per database)")
    return _run_until_signalled(lambda stop: run_relay(settings, stop))


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    runners = {"webhooks": run_webhook_worker, "alerts": run_alert_worker}
    queues = {"webhooks": webhook_queues, "alerts": alert_queues}[args.kind](settings)
    log.info("worker %s: consuming %s", args.kind, queues.work)
    return _run_until_signalled(lambda stop: runners[args.kind](settings, stop))


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    relay = sub.add_parser("relay", help="publish committed events to RabbitMQ (outbox relay)")
    relay.set_defaults(run=_relay)
    worker = sub.add_parser("worker", help="run a delivery worker")
    worker.add_argument("kind", choices=("webhooks", "alerts"),
                        help="webhooks: signed POSTs to merchants; alerts: e-mail to the "
                             "fraud team")
    worker.set_defaults(run=_worker)
