"""A Pipeline: stages chained in order, one intake, tracking of every accepted item, drain."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import msgspec

from pipeline.errors import ShuttingDown
from pipeline.stage import Clock, Item, Stage, StageStatistics


class PipelineStatistics(msgspec.Struct, frozen=True):
    stages: tuple[StageStatistics, ...]
    pending: int


class Pipeline:
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
        self._accepting = False

    def stage(self, name: str) -> Stage:
        return self._by_name[name]

    async def start(self) -> None:
        for stage in self._stages:
            stage.start()
        self._accepting = True

    def submit_nowait(self, payload: Any, *, deadline_s: float) -> Item:
        """Accept one item, or raise Overloaded / ShuttingDown at once. Await `item.future`."""
        if not self._accepting:
            raise ShuttingDown()
        item = Item(payload, self._clock() + deadline_s,
                    asyncio.get_running_loop().create_future())
        self._stages[0].put_nowait(item)
        self._pending.add(item)
        self._idle.clear()
        return item

    def _settled(self, item: Item) -> None:
        self._pending.discard(item)
        if not self._pending:
            self._idle.set()

    async def wait_idle(self) -> None:
        """Return once every accepted item has been answered."""
        await self._idle.wait()

    async def drain(self, timeout_s: float) -> None:
        """Stop intake, answer everything already accepted (up to timeout_s), stop workers."""
        self._accepting = False
        try:
            async with asyncio.timeout(timeout_s):
                await self._idle.wait()
        except TimeoutError:
            for item in list(self._pending):
                if not item.future.done():
                    item.future.set_exception(ShuttingDown(
                        f"not finished within the {timeout_s:g} s shutdown timeout"))
                self._settled(item)
        finally:
            for stage in self._stages:
                await stage.stop()

    def statistics(self) -> PipelineStatistics:
        return PipelineStatistics(tuple(stage.statistics() for stage in self._stages),
                                  len(self._pending))
