"""The delivery side in-process for tests: a merchant site, the relay and a webhook worker.

RabbitMQ is reached through a TcpProxy, so a test can cut the line. The retry schedule is
compressed (milliseconds instead of hours); everything else is the production code path.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import msgspec
import pytest
from aiohttp import web
from aiosmtpd.controller import Controller

from ops.settings import Settings
from ops.workers import alert_queues, build_relay, run_webhook_worker, webhook_queues
from tests.webhooks.tcp_proxy import TcpProxy
from webhooks import topology

SCHEDULE = "300ms,600ms,900ms"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class MailServer:
    """aiosmtpd on a fixed free port, stoppable and startable again on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[tuple[str, list[str], EmailMessage]] = []
        self.reply = "250 OK"
        self._controller: Controller | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.reply.startswith("250"):
            message = email.message_from_bytes(envelope.content, policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            self.received.append((envelope.mail_from, list(envelope.rcpt_tos), message))
        return self.reply

    async def start(self) -> None:
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        await asyncio.to_thread(self._controller.start)

    async def stop(self) -> None:
        if self._controller is not None:
            await asyncio.to_thread(self._controller.stop)
            self._controller = None

    @property
    def mails(self) -> list[EmailMessage]:
        return [message for _, _, message in self.received]



@dataclass
class Received:
    name: str
    headers: dict[str, str]
    body: bytes
    at_s: float


@dataclass
class MerchantSite:
    """A merchant's webhook endpoint: `/hooks/{name}` answers what `answers[name]` says."""

    received: list[Received] = field(default_factory=list)
    # name -> status for the n-th request (0-based) of that name; default 200.
    answers: dict[str, Callable[[int], int]] = field(default_factory=dict)
    holds: dict[str, asyncio.Event] = field(default_factory=dict)
    port: int = 0
    runner: web.AppRunner | None = None

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/{name}"

    def of(self, name: str) -> list[Received]:
        return [r for r in self.received if r.name == name]

    async def _hook(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        count = len(self.of(name))
        self.received.append(Received(name, dict(request.headers), await request.read(),
                                      time.monotonic()))
        if name in self.holds:
            await self.holds[name].wait()
        status = self.answers.get(name, lambda n: 200)(count)
        return web.Response(status=status, text="ok" if status < 300 else "not now")

    async def start(self, port: int = 0) -> None:
        app = web.Application()
        app.router.add_post("/hooks/{name}", self._hook)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", port, reuse_address=True)
        await site.start()
        self.port = self.runner.addresses[0][1]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


@pytest.fixture(scope="session")
async def merchant_site() -> AsyncIterator[MerchantSite]:
    site = MerchantSite()
    await site.start()
    yield site
    await site.stop()


class Running:
    """A coroutine run as an owned task with its own stop event."""

    def __init__(self, main: Callable[[asyncio.Event], object]) -> None:
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] = asyncio.ensure_future(main(self.stop))  # type: ignore[arg-type]

    async def halt(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 30)


@dataclass
class DeliverySystem:
    settings: Settings
    proxy: TcpProxy
    relay: Running | None = None
    worker: Running | None = None

    def start_relay(self) -> None:
        self.relay_object = build_relay(self.settings)
        self.relay = Running(self.relay_object.run)

    def start_worker(self) -> None:
        self.worker = Running(lambda stop: run_webhook_worker(self.settings, stop))

    async def halt_worker(self) -> None:
        assert self.worker is not None
        await self.worker.halt()
        self.worker = None

    async def halt_relay(self) -> None:
        assert self.relay is not None
        await self.relay.halt()
        self.relay = None


def _via(url: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}{netloc[1]}127.0.0.1:{port}"))


@pytest.fixture(scope="session")
async def delivery(database: Settings, server: object) -> AsyncIterator[DeliverySystem]:
    """The relay and one webhook worker, through a proxy to RabbitMQ, for the whole run."""
    broker = urlsplit(database.amqp_url)
    proxy = TcpProxy(broker.hostname or "127.0.0.1", broker.port or 5672)
    await proxy.start()
    settings = msgspec.structs.replace(
        database, amqp_url=_via(database.amqp_url, proxy.port), webhook_retry_schedule=SCHEDULE,
        relay_poll_ms=10.0, relay_takeover_s=0.2, webhook_timeout_s=5.0,
        webhook_allow_private_networks=True)  # the merchant site listens on 127.0.0.1
    system = DeliverySystem(settings, proxy)
    system.start_relay()
    system.start_worker()
    yield system
    for running in (system.worker, system.relay):
        if running is not None:
            await running.halt()
    await proxy.close()
    connection = await aio_pika.connect(database.amqp_url)
    async with connection:
        channel = await connection.channel()
        # The queues of the compressed schedule and of the defaults (a subprocess started
        # without the schedule declares those).
        for queues in (webhook_queues(settings), alert_queues(settings),
                       webhook_queues(database), alert_queues(database)):
            await topology.delete(channel, queues)
