"""A Stage: a bounded asyncio queue, K worker tasks and micro-batching around one handler.

A worker waits for one item, then keeps taking items until it has `batch_max` or
`batch_wait_ms` have passed since the first, whichever comes first, and hands the payloads
to the handler in one call. The handler returns one outcome per payload: an exception fails
that item, `Finish(v)` answers it now, anything else goes on to the next stage (or answers
the item if this is the last stage).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec

from pipeline.errors import DeadlineExceeded, Overloaded, StageFailed
from pipeline.histogram import BATCH_SIZE_BOUNDS, LATENCY_MS_BOUNDS, Histogram, HistogramSnapshot

log = logging.getLogger(__name__)

Handler = Callable[[list[Any]], Awaitable[Sequence[Any]]]
Clock = Callable[[], float]

# What a shed request is told to wait; a queue drains in milliseconds, a second is generous.
RETRY_AFTER_S = 1.0


class StageConfig(msgspec.Struct, frozen=True, kw_only=True):
    workers: int
    batch_max: int
    batch_wait_ms: float
    queue_max: int


class Finish(msgspec.Struct, frozen=True):
    """A handler outcome that answers the item now, skipping the remaining stages."""

    value: Any


class Item:
    """One unit of work and the future its submitter awaits."""

    __slots__ = ("deadline_s", "enqueued_s", "future", "payload", "timings_ms")

    def __init__(self, payload: Any, deadline_s: float, future: asyncio.Future[Any]) -> None:
        self.payload = payload
        self.deadline_s = deadline_s
        self.future = future
        self.enqueued_s = 0.0
        self.timings_ms: dict[str, float] = {}


class StageStatistics(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    workers: int
    queue_depth: int
    queue_max: int
    in_flight: int
    accepted: int
    completed: int
    failed: int
    expired: int
    rejected: int
    queue_wait_ms: HistogramSnapshot
    service_ms: HistogramSnapshot
    batch_size: HistogramSnapshot


def _no_op(item: Item) -> None:
    pass


class Stage:
    def __init__(self, name: str, handler: Handler, config: StageConfig, *,
                 clock: Clock = time.monotonic) -> None:
        if config.workers < 1 or config.batch_max < 1 or config.queue_max < 1:
            raise ValueError(f"stage {name!r}: workers, batch_max and queue_max must be >= 1")
        self.name = name
        self.config = config
        self.next: Stage | None = None
        # Called once per item when its future is settled (the pipeline tracks pending items).
        self.on_settled: Callable[[Item], None] = _no_op
        self._handler = handler
        self._clock = clock
        self._queue: asyncio.Queue[Item] = asyncio.Queue(maxsize=config.queue_max)
        self._batch_wait_s = config.batch_wait_ms / 1000
        self._workers: list[asyncio.Task[None]] = []
        self._in_flight = 0
        self._accepted = self._completed = self._failed = self._expired = self._rejected = 0
        self._queue_wait_ms = Histogram(LATENCY_MS_BOUNDS)
        self._service_ms = Histogram(LATENCY_MS_BOUNDS)
        self._batch_size = Histogram(BATCH_SIZE_BOUNDS)

    # -- intake ---------------------------------------------------------------------------

    def put_nowait(self, item: Item) -> None:
        """Enqueue or raise Overloaded at once: the edge sheds load instead of queueing."""
        item.enqueued_s = self._clock()
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self._rejected += 1
            raise Overloaded(self.name, RETRY_AFTER_S) from None
        self._accepted += 1

    async def put(self, item: Item) -> None:
        """Enqueue, waiting for room: the backpressure between chained stages."""
        item.enqueued_s = self._clock()
        await self._queue.put(item)
        self._accepted += 1

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        if self._workers:
            raise RuntimeError(f"stage {self.name!r} is already running")
        for i in range(self.config.workers):
            task = asyncio.create_task(self._work(), name=f"stage-{self.name}-{i}")
            task.add_done_callback(self._worker_done)
            self._workers.append(task)

    def _worker_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("worker %s of stage %r died", task.get_name(), self.name,
                      exc_info=task.exception())

    async def stop(self) -> None:
        """Cancel the workers and wait for them (call after the pipeline drained)."""
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers.clear()

    # -- work -----------------------------------------------------------------------------

    async def _work(self) -> None:
        queue = self._queue
        batch_max = self.config.batch_max
        while True:
            batch = [await queue.get()]
            self._take_ready(batch, batch_max)
            if len(batch) < batch_max and self._batch_wait_s > 0:
                await self._fill(batch, batch_max)
            await self._run(batch)

    def _take_ready(self, batch: list[Item], batch_max: int) -> None:
        queue = self._queue
        while len(batch) < batch_max and not queue.empty():
            batch.append(queue.get_nowait())

    async def _fill(self, batch: list[Item], batch_max: int) -> None:
        loop = asyncio.get_running_loop()
        close_at = loop.time() + self._batch_wait_s
        while len(batch) < batch_max:
            remaining = close_at - loop.time()
            if remaining <= 0:
                return
            try:
                async with asyncio.timeout(remaining):
                    batch.append(await self._queue.get())
            except TimeoutError:
                return
            self._take_ready(batch, batch_max)

    def _live(self, batch: list[Item]) -> list[Item]:
        """Record queue waits; fail and drop the items whose deadline has passed."""
        now = self._clock()
        live = []
        for item in batch:
            self._queue_wait_ms.observe((now - item.enqueued_s) * 1000)
            if item.deadline_s <= now:
                self._expired += 1
                self._settle(item, error=DeadlineExceeded(self.name))
            else:
                live.append(item)
        return live

    async def _run(self, batch: list[Item]) -> None:
        live = self._live(batch)
        if not live:
            return
        self._in_flight += len(live)
        self._batch_size.observe(len(live))
        started = self._clock()
        try:
            outcomes = await self._handler([item.payload for item in live])
            if len(outcomes) != len(live):
                raise ValueError(f"handler returned {len(outcomes)} outcomes "
                                 f"for {len(live)} items")
        except Exception as exc:
            self._service_ms.observe((self._clock() - started) * 1000)
            log.exception("stage %r failed a batch of %d", self.name, len(live))
            self._failed += len(live)
            self._in_flight -= len(live)
            for item in live:
                self._settle(item, error=StageFailed(self.name, exc))
            return
        ended = self._clock()
        self._service_ms.observe((ended - started) * 1000)
        try:
            for item, outcome in zip(live, outcomes, strict=True):
                item.timings_ms[self.name] = (ended - item.enqueued_s) * 1000
                await self._hand_on(item, outcome)
        finally:
            self._in_flight -= len(live)

    async def _hand_on(self, item: Item, outcome: Any) -> None:
        if isinstance(outcome, BaseException):
            self._failed += 1
            self._settle(item, error=outcome)
            return
        self._completed += 1
        if isinstance(outcome, Finish):
            self._settle(item, value=outcome.value)
        elif self.next is None:
            self._settle(item, value=outcome)
        else:
            item.payload = outcome
            await self.next.put(item)

    def _settle(self, item: Item, *, value: Any = None,
                error: BaseException | None = None) -> None:
        future = item.future
        if not future.done():  # the submitter may have given up and cancelled it
            if error is None:
                future.set_result(value)
            else:
                future.set_exception(error)
        self.on_settled(item)

    # -- observation ----------------------------------------------------------------------

    def statistics(self) -> StageStatistics:
        return StageStatistics(
            name=self.name, workers=len(self._workers), queue_depth=self._queue.qsize(),
            queue_max=self.config.queue_max, in_flight=self._in_flight,
            accepted=self._accepted, completed=self._completed, failed=self._failed,
            expired=self._expired, rejected=self._rejected,
            queue_wait_ms=self._queue_wait_ms.snapshot(), service_ms=self._service_ms.snapshot(),
            batch_size=self._batch_size.snapshot())
