"""A Stage: a bounded queue, K owned worker tasks and micro-batching around one async handler.

A worker waits for one item, then keeps taking items until it has `batch_max` of them or
`batch_wait_ms` have passed, whichever comes first, drops the items whose deadline has passed,
and hands the payloads to the handler in one call. The handler returns one outcome per payload,
in order: an exception fails that item, `Finish(v)` answers it with `v`, anything else becomes
its payload for the next stage (or its answer, if this is the last stage).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec

from pipeline.errors import DeadlineExceeded, Overloaded, ShuttingDown, StageFailed
from pipeline.histogram import BATCH_SIZE_BOUNDS, LATENCY_MS_BOUNDS, Histogram, HistogramSnapshot
from pipeline.item import Finish, Item

log = logging.getLogger(__name__)

Handler = Callable[[list[Any]], Awaitable[Sequence[Any]]]
Clock = Callable[[], float]

# What a shed request is told to wait: a queue drains in milliseconds, a second is generous
# and is the smallest value a Retry-After header can carry.
RETRY_AFTER_S = 1.0


class StageConfig(msgspec.Struct, frozen=True, kw_only=True):
    """How a stage runs: worker tasks, micro-batch size and window, queue capacity.

    `wait_when_idle=False` makes the window adaptive: a worker waits for more items only while
    another worker of the stage is running a batch (the stage is busy, so a bigger batch saves
    work); an idle stage hands its first item on at once instead of holding it for the window.
    """

    workers: int
    batch_max: int
    batch_wait_ms: float
    queue_max: int
    wait_when_idle: bool = True


class StageStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """A stage at one instant. `in_flight`: items its workers hold (taken, not yet passed on)."""

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


def _ignore(item: Item) -> None:
    pass


class Stage:
    """One step of a pipeline. `start()` opens intake and starts the workers, `stop()` ends both."""

    def __init__(self, name: str, handler: Handler, config: StageConfig, *,
                 clock: Clock = time.monotonic, enforce_deadline: bool = True) -> None:
        if min(config.workers, config.batch_max, config.queue_max) < 1:
            raise ValueError(f"stage {name!r}: workers, batch_max and queue_max must be >= 1")
        if config.batch_wait_ms < 0:
            raise ValueError(f"stage {name!r}: batch_wait_ms must be >= 0")
        self.name = name
        self.config = config
        # Wired by the Pipeline: where outputs go, and who hears that an item was answered.
        self.next: Stage | None = None
        self.on_settled: Callable[[Item], None] = _ignore
        self._handler = handler
        self._clock = clock
        # False for stages after an irreversible step (a commit): the work is done, so the
        # item must be answered with its result, however late, never with a deadline error.
        self._enforce_deadline = enforce_deadline
        self._queue: asyncio.Queue[Item] = asyncio.Queue(maxsize=config.queue_max)
        self._batch_max = config.batch_max
        self._batch_wait_s = config.batch_wait_ms / 1000
        self._accepting = False
        self._workers: list[asyncio.Task[None]] = []
        self._in_flight = 0
        self._running = 0  # workers inside the handler
        self._accepted = self._completed = self._failed = self._expired = self._rejected = 0
        self._queue_wait_ms = Histogram(LATENCY_MS_BOUNDS)
        self._service_ms = Histogram(LATENCY_MS_BOUNDS)
        self._batch_size = Histogram(BATCH_SIZE_BOUNDS)

    # -- intake ---------------------------------------------------------------------------

    def put_nowait(self, item: Item) -> None:
        """Enqueue, or raise Overloaded / ShuttingDown at once: the edge sheds, never queues."""
        if not self._accepting:
            self._rejected += 1
            raise ShuttingDown(f"stage {self.name!r} is not accepting items")
        item.enqueued_s = self._clock()
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self._rejected += 1
            raise Overloaded(self.name, RETRY_AFTER_S) from None
        self._accepted += 1

    async def put(self, item: Item) -> None:
        """Enqueue, waiting for room: the backpressure between chained stages."""
        if not self._accepting:
            self._rejected += 1
            raise ShuttingDown(f"stage {self.name!r} is not accepting items")
        # Time blocked here counts as queue wait in this stage: the item is waiting for it.
        item.enqueued_s = self._clock()
        queue = self._queue
        if queue.full():
            await queue.put(item)
        else:
            queue.put_nowait(item)
        self._accepted += 1

    @property
    def accepting(self) -> bool:
        """Whether `put` and `put_nowait` take items (from `start()` until `close()`)."""
        return self._accepting

    def close(self) -> None:
        """Stop intake: `put` and `put_nowait` raise ShuttingDown; queued items still run."""
        self._accepting = False

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        if self._workers:
            raise RuntimeError(f"stage {self.name!r} is already running")
        self._accepting = True
        for i in range(self.config.workers):
            task = asyncio.create_task(self._work(), name=f"stage-{self.name}-{i}")
            task.add_done_callback(self._worker_done)
            self._workers.append(task)

    def _worker_done(self, task: asyncio.Task[None]) -> None:
        # Logged at once (a dead worker is a bug and costs capacity); stop() re-raises it.
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("worker %s of stage %r died", task.get_name(), self.name, exc_info=error)

    async def stop(self) -> None:
        """Close intake, cancel the workers and wait for them; the items still queued or in
        a worker's batch fail with ShuttingDown. Re-raises the exception a worker died of."""
        self.close()
        workers, self._workers = self._workers, []
        for task in workers:
            task.cancel()
        results = await asyncio.gather(*workers, return_exceptions=True)
        while not self._queue.empty():
            self._fail(self._queue.get_nowait(), ShuttingDown(f"stage {self.name!r} stopped"))
        for result in results:
            if isinstance(result, Exception):
                raise result

    # -- work -----------------------------------------------------------------------------

    async def _work(self) -> None:
        queue = self._queue
        while True:
            batch = [await queue.get()]
            self._in_flight += 1
            try:
                if self._batch_max > 1:
                    self._take_ready(batch)
                    if (self._batch_wait_s > 0 and len(batch) < self._batch_max
                            and (self._running or self.config.wait_when_idle)):
                        await self._fill(batch)
                await self._run(batch)
            except asyncio.CancelledError:
                for item in batch:
                    self._fail(item, ShuttingDown(f"stage {self.name!r} stopped"))
                raise
            finally:
                self._in_flight -= len(batch)

    def _take_ready(self, batch: list[Item]) -> None:
        """Add what is already queued, up to batch_max, without waiting."""
        queue = self._queue
        count = min(self._batch_max - len(batch), queue.qsize())
        for _ in range(count):
            batch.append(queue.get_nowait())
        self._in_flight += count

    async def _fill(self, batch: list[Item]) -> None:
        """Wait for more items until the batch is full or the batch window closes."""
        # One timer for the whole window, not one per item. Cancelling Queue.get() never
        # loses an item: it is only removed from the queue once get() returns it.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._batch_wait_s):
                while len(batch) < self._batch_max:
                    batch.append(await self._queue.get())
                    self._in_flight += 1
                    self._take_ready(batch)

    def _live(self, batch: list[Item]) -> list[Item]:
        """Record queue waits; fail and leave out the items whose deadline has passed."""
        now = self._clock()
        observe = self._queue_wait_ms.observe
        live = []
        for item in batch:
            observe((now - item.enqueued_s) * 1000)
            if item.deadline_s <= now and self._enforce_deadline:
                self._expired += 1
                self._fail(item, DeadlineExceeded(self.name))
            else:
                live.append(item)
        return live

    async def _run(self, batch: list[Item]) -> None:
        live = self._live(batch)
        if not live:
            return
        self._batch_size.observe(len(live))
        started = self._clock()
        self._running += 1
        try:
            outcomes = await self._handler([item.payload for item in live])
            if len(outcomes) != len(live):
                raise ValueError(f"handler returned {len(outcomes)} outcomes "
                                 f"for {len(live)} items")
        except (Exception, asyncio.CancelledError) as exc:
            if isinstance(exc, asyncio.CancelledError) and _being_cancelled():
                raise
            # The batch fails, the stage survives. A CancelledError that was not aimed at
            # this worker (leaked by the handler's libraries) is just another failure.
            self._service_ms.observe((self._clock() - started) * 1000)
            log.warning("stage %r failed a batch of %d: %r", self.name, len(live), exc)
            self._failed += len(live)
            for item in live:
                self._fail(item, StageFailed(self.name, exc))
            return
        finally:
            self._running -= 1
        ended = self._clock()
        self._service_ms.observe((ended - started) * 1000)
        await self._hand_on(live, outcomes, ended)

    async def _hand_on(self, live: list[Item], outcomes: Sequence[Any], ended_s: float) -> None:
        name, after = self.name, self.next
        for item, outcome in zip(live, outcomes, strict=True):
            item.timings_ms[name] = (ended_s - item.enqueued_s) * 1000
            if isinstance(outcome, BaseException):
                self._failed += 1
                self._fail(item, outcome)
                continue
            self._completed += 1
            if isinstance(outcome, Finish):
                self._resolve(item, outcome.value)
            elif after is None:
                self._resolve(item, outcome)
            else:
                item.payload = outcome
                await after.put(item)

    def _resolve(self, item: Item, value: Any) -> None:
        if not item.future.done():  # the submitter may have given up and cancelled it
            item.future.set_result(value)
        self.on_settled(item)

    def _fail(self, item: Item, error: BaseException) -> None:
        if not item.future.done():
            item.future.set_exception(error)
        self.on_settled(item)

    # -- observation ----------------------------------------------------------------------

    def statistics(self) -> StageStatistics:
        return StageStatistics(
            name=self.name, workers=sum(not task.done() for task in self._workers),
            queue_depth=self._queue.qsize(), queue_max=self.config.queue_max,
            in_flight=self._in_flight, accepted=self._accepted, completed=self._completed,
            failed=self._failed, expired=self._expired, rejected=self._rejected,
            queue_wait_ms=self._queue_wait_ms.snapshot(), service_ms=self._service_ms.snapshot(),
            batch_size=self._batch_size.snapshot())


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is None or task.cancelling() > 0
