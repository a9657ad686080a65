"""Fixtures for the pipeline runtime: a fake clock, a recording handler, stage factories."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import pytest

from pipeline import Item, Pipeline, Stage, StageConfig


class FakeClock:
    """A monotonic clock that only moves when told to: deadline tests take no time."""

    def __init__(self, now_s: float = 1000.0) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s

    def advance(self, seconds: float) -> None:
        self.now_s += seconds


class Recorder:
    """A handler that records each batch, maps each payload with `outcome`, and can be held
    at its gate until the test opens it."""

    def __init__(self, outcome: Callable[[Any], Any] = lambda payload: payload, *,
                 held: bool = False) -> None:
        self.outcome = outcome
        self.batches: list[list[Any]] = []
        self.gate = asyncio.Event()
        if not held:
            self.gate.set()
        self._called = asyncio.Condition()

    async def __call__(self, payloads: list[Any]) -> Sequence[Any]:
        self.batches.append(list(payloads))
        async with self._called:
            self._called.notify_all()
        await self.gate.wait()
        return [self.outcome(payload) for payload in payloads]

    async def wait_batches(self, count: int, *, timeout_s: float = 2.0) -> None:
        async with asyncio.timeout(timeout_s), self._called:
            await self._called.wait_for(lambda: len(self.batches) >= count)

    @property
    def payloads(self) -> list[Any]:
        return [payload for batch in self.batches for payload in batch]


async def wait_until(condition: Callable[[], bool], *, timeout_s: float = 2.0) -> None:
    """Let the event loop run until `condition()` holds; fail after timeout_s."""
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 - yields to the workers, never sleeps
            await asyncio.sleep(0)


def make_item(payload: Any, *, deadline_s: float = math.inf) -> Item:
    return Item(payload, deadline_s, asyncio.get_running_loop().create_future())


def config(*, workers: int = 1, batch_max: int = 1, batch_wait_ms: float = 0.0,
           queue_max: int = 16, wait_when_idle: bool = True) -> StageConfig:
    return StageConfig(workers=workers, batch_max=batch_max, batch_wait_ms=batch_wait_ms,
                       queue_max=queue_max, wait_when_idle=wait_when_idle)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def make_stage() -> AsyncIterator[Callable[..., Stage]]:
    """Build stages (not started); whatever is still running is stopped after the test."""
    made: list[Stage] = []

    def make(handler: Any, *, name: str = "s", clock: Callable[[], float] | None = None,
             **settings: Any) -> Stage:
        stage = (Stage(name, handler, config(**settings)) if clock is None
                 else Stage(name, handler, config(**settings), clock=clock))
        made.append(stage)
        return stage

    yield make
    for stage in made:
        await stage.stop()


@pytest.fixture
async def make_pipeline(make_stage: Callable[..., Stage]) -> AsyncIterator[
        Callable[..., Pipeline]]:
    """Build a pipeline of `(name, handler, settings)` stages, started by the test; drained
    after it."""
    made: list[Pipeline] = []

    def make(*specs: tuple[str, Any, dict[str, Any]],
             clock: Callable[[], float] | None = None) -> Pipeline:
        stages = [make_stage(handler, name=name, clock=clock, **settings)
                  for name, handler, settings in specs]
        pipeline = Pipeline(stages) if clock is None else Pipeline(stages, clock=clock)
        made.append(pipeline)
        return pipeline

    yield make
    for pipeline in made:
        await pipeline.drain(timeout_s=0.5)
