"""A RabbitMQ consumer that survives the broker: prefetch, owned tasks, reconnect, drain.

Each delivery runs in its own task (at most `prefetch` at once: the broker sends no more
unacknowledged messages than that); the handler acknowledges it. When the connection drops,
unacknowledged messages go back to their queue and are redelivered, to this worker after it
reconnects or to another one: a crash or an outage costs a duplicate attempt (same event id),
never a lost job. A handler that fails (its database is down) ends the session the same way,
and the next one subscribes only once `ready()` passes, so an outage does not spin messages
through redeliveries (a quorum queue dead-letters a message after DELIVERY_LIMIT of them).
Stopping cancels the subscription and lets in-flight deliveries finish.

Retries: `schedule_retry` republishes the job, attempt + 1, to the delay queue of its tier;
when no attempt is left `bury` sends it to the dead-letter queue. Both wait for the confirm;
the handler acknowledges the original only afterwards.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from webhooks import topology
from webhooks.connections import TRANSIENT
from webhooks.connections import wait_or_stop as _wait
from webhooks.jobs import Job, publish
from webhooks.schedule import jittered_ms

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delivery:
    """One message as the handler sees it, with the channel to publish its retry on."""

    message: AbstractIncomingMessage
    channel: AbstractChannel
    queues: topology.JobQueues

    async def schedule_retry(self, job: Job, delay_ms: int) -> None:
        await publish(self.channel, self.queues.delay(delay_ms), job.next_attempt(),
                      expiration_ms=jittered_ms(delay_ms))

    async def bury(self, job: Job) -> None:
        await publish(self.channel, self.queues.dead, job)


Handler = Callable[[Delivery], Coroutine[object, object, None]]
Probe = Callable[[], Awaitable[object]]


async def _always_ready() -> None:
    return None


@dataclass
class Consumer:
    amqp_url: str
    queues: topology.JobQueues
    handle: Handler
    prefetch: int = 100
    ready: Probe = _always_ready
    retry_s: float = 1.0
    drain_timeout_s: float = 30.0
    sessions: int = 0
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _failed: asyncio.Event = field(default_factory=asyncio.Event)
    _subscribed: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_subscribed(self) -> None:
        await self._subscribed.wait()

    async def run(self, stop: asyncio.Event) -> None:
        """Consume, reconnecting after failures, until `stop` is set."""
        while not stop.is_set():
            try:
                await self._session(stop)
            except TRANSIENT as exc:
                log.warning("%s consumer: %s: %s; reconnecting in %.1f s", self.queues.work,
                            type(exc).__name__, exc, self.retry_s)
                await _wait(stop, self.retry_s)

    async def _session(self, stop: asyncio.Event) -> None:
        await self.ready()
        self._failed.clear()
        connection = await aio_pika.connect(self.amqp_url, timeout=5)
        lost = asyncio.Event()
        connection.close_callbacks.add(lambda *_: lost.set())
        try:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            channel.close_callbacks.add(lambda *_: lost.set())
            await channel.set_qos(prefetch_count=self.prefetch)
            queue = await topology.declare(channel, self.queues)

            session = self.sessions + 1

            async def on_message(message: AbstractIncomingMessage) -> None:
                self._start(Delivery(message, channel, self.queues), session)

            tag = await queue.consume(on_message)
            self.sessions += 1
            self._subscribed.set()
            await _first(stop.wait(), lost.wait(), self._failed.wait())
            if lost.is_set():
                raise ConnectionError("connection to RabbitMQ lost")
            if self._failed.is_set():
                raise ConnectionError("a delivery failed; its messages go back to the queue")
            await queue.cancel(tag)
            await self._drain()
        finally:
            self._subscribed.clear()
            await connection.close()

    def _start(self, delivery: Delivery, session: int) -> None:
        task = asyncio.get_running_loop().create_task(self.handle(delivery))
        self._tasks.add(task)
        task.add_done_callback(functools.partial(self._finished, session))

    def _finished(self, session: int, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s: a delivery failed", self.queues.work, exc_info=task.exception())
            if session == self.sessions:
                # The message is still unacknowledged: end the session so it comes back.
                self._failed.set()

    async def _drain(self) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=self.drain_timeout_s)


async def _first(*waits: Awaitable[object]) -> None:
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
