"""A Pipeline: stages chained in order, one intake, tracking of every accepted item, drain."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import msgspec

from pipeline.errors import ShuttingDown
from pipeline.item import Item
from pipeline.stage import Clock, Stage, StageStatistics


class PipelineStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """Every stage at one instant, in order; `pending`: accepted items not yet answered."""

    stages: tuple[StageStatistics, ...]
    pending: int


class Pipeline:
    """Stages run in order: stage i's outputs are put (with backpressure) into stage i+1.

    `clock` sets the items' deadlines; give the stages the same clock.
    """

    def __init__(self, stages: Sequence[Stage], *, clock: Clock = time.monotonic) -> None:
        if not stages:
            raise ValueError("a pipeline needs at least one stage")
        names = [stage.name for stage in stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names must be unique: {names}")
        self._stages = tuple(stages)
        self._by_name = {stage.name: stage for stage in stages}
        for stage, after in zip(self._stages, self._stages[1:], strict=False):
            stage.next = after
        for stage in self._stages:
            stage.on_settled = self._settled
        self._clock = clock
        self._pending: set[Item] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    def stage(self, name: str) -> Stage:
        return self._by_name[name]

    async def start(self) -> None:
        # Downstream first, so no stage hands items to a stage that is not running yet.
        for stage in reversed(self._stages):
            stage.start()

    def submit_nowait(self, payload: Any, *, deadline_s: float) -> Item:
        """Accept one item with `deadline_s` seconds to live, or raise Overloaded /
        ShuttingDown at once. The caller awaits `item.future`."""
        item = Item(payload, self._clock() + deadline_s,
                    asyncio.get_running_loop().create_future())
        self._stages[0].put_nowait(item)
        self._pending.add(item)
        self._idle.clear()
        return item

    def _settled(self, item: Item) -> None:
        pending = self._pending
        pending.discard(item)
        if not pending:
            self._idle.set()

    async def wait_idle(self) -> None:
        """Return once every accepted item has been answered."""
        await self._idle.wait()

    async def drain(self, timeout_s: float) -> None:
        """Stop intake now, wait up to timeout_s for every accepted item to be answered, fail
        the ones still pending with ShuttingDown, then stop the workers."""
        self._stages[0].close()
        try:
            async with asyncio.timeout(timeout_s):
                await self._idle.wait()
        except TimeoutError:
            for item in list(self._pending):
                if not item.future.done():
                    item.future.set_exception(ShuttingDown(
                        f"not answered within the {timeout_s:g} s shutdown timeout"))
                self._settled(item)
        await self._stop_stages()

    async def _stop_stages(self) -> None:
        """Stop every stage, even if one of them raises; then raise the first error."""
        errors: list[Exception] = []
        for stage in self._stages:
            try:
                await stage.stop()
            except Exception as exc:  # a worker died; stop the other stages all the same
                errors.append(exc)
        if errors:
            raise errors[0]

    def statistics(self) -> PipelineStatistics:
        return PipelineStatistics(stages=tuple(stage.statistics() for stage in self._stages),
                                  pending=len(self._pending))
