"""Stages chained into a Pipeline: flow, short-circuits, backpressure, deadlines, drain, stats."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from pipeline import (
    DeadlineExceeded,
    Finish,
    Item,
    Overloaded,
    Pipeline,
    PipelineStatistics,
    ShuttingDown,
    Stage,
    StageFailed,
)
from tests.pipeline.conftest import FakeClock, Recorder, config, wait_until

MakePipeline = Callable[..., Pipeline]


async def answers(items: list[Item], *, timeout_s: float = 2.0) -> list[Any]:
    async with asyncio.timeout(timeout_s):
        return list(await asyncio.gather(*(item.future for item in items),
                                         return_exceptions=True))


def submit(pipeline: Pipeline, payloads: list[Any], *, deadline_s: float = 10.0) -> list[Item]:
    return [pipeline.submit_nowait(payload, deadline_s=deadline_s) for payload in payloads]


# -- flow --------------------------------------------------------------------------------


async def test_values_flow_through_every_stage(make_pipeline: MakePipeline) -> None:
    pipeline = make_pipeline(("add", Recorder(lambda p: p + 1), {"batch_max": 4, "queue_max": 32}),
                             ("mul", Recorder(lambda p: p * 10), {"batch_max": 8}),
                             ("str", Recorder(str), {}))
    await pipeline.start()
    items = submit(pipeline, list(range(20)))
    assert await answers(items) == [str((i + 1) * 10) for i in range(20)]
    assert list(items[0].timings_ms) == ["add", "mul", "str"]
    assert all(ms >= 0 for item in items for ms in item.timings_ms.values())


async def test_finish_skips_the_remaining_stages(make_pipeline: MakePipeline) -> None:
    later = Recorder()
    pipeline = make_pipeline(
        ("first", Recorder(lambda p: Finish(f"early {p}") if p % 2 else p), {"batch_max": 8}),
        ("second", later, {}))
    await pipeline.start()
    items = submit(pipeline, [0, 1, 2, 3])
    assert await answers(items) == [0, "early 1", 2, "early 3"]
    assert later.payloads == [0, 2]
    assert list(items[1].timings_ms) == ["first"]
    assert pipeline.stage("first").statistics().completed == 4


async def test_exception_outcome_fails_only_that_item(make_pipeline: MakePipeline) -> None:
    refused = PermissionError("card blocked")
    later = Recorder()
    pipeline = make_pipeline(("check", Recorder(lambda p: refused if p == 2 else p),
                              {"batch_max": 8}),
                             ("after", later, {}))
    await pipeline.start()
    assert await answers(submit(pipeline, [1, 2, 3])) == [1, refused, 3]
    assert later.payloads == [1, 3]
    stats = pipeline.stage("check").statistics()
    assert (stats.completed, stats.failed) == (2, 1)


async def test_handler_error_fails_its_batch_only(make_pipeline: MakePipeline) -> None:
    boom = ConnectionError("redis down")
    calls = 0

    async def flaky(payloads: list[Any]) -> list[Any]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise boom
        return payloads

    pipeline = make_pipeline(("flaky", flaky, {"batch_max": 2}), ("after", Recorder(), {}))
    await pipeline.start()
    first = await answers(submit(pipeline, [1, 2]))
    assert all(isinstance(e, StageFailed) and e.__cause__ is boom for e in first)
    assert await answers(submit(pipeline, [3])) == [3]
    await pipeline.wait_idle()
    assert pipeline.statistics().pending == 0


# -- backpressure ------------------------------------------------------------------------


async def test_full_intake_raises_overloaded(make_pipeline: MakePipeline) -> None:
    handler = Recorder(held=True)
    pipeline = make_pipeline(("intake", handler, {"queue_max": 2}))
    await pipeline.start()
    accepted = submit(pipeline, [0])
    await handler.wait_batches(1)
    accepted += submit(pipeline, [1, 2])
    with pytest.raises(Overloaded) as raised:
        pipeline.submit_nowait(3, deadline_s=10)
    assert raised.value.stage == "intake"
    assert raised.value.retry_after_s > 0
    assert raised.value.code == "overloaded"
    assert pipeline.statistics().pending == 3
    handler.gate.set()
    assert await answers(accepted) == [0, 1, 2]


async def test_a_slow_stage_holds_back_the_one_before(make_pipeline: MakePipeline) -> None:
    fast, slow = Recorder(), Recorder(held=True)
    pipeline = make_pipeline(("fast", fast, {"queue_max": 1}),
                             ("slow", slow, {"queue_max": 1}))
    await pipeline.start()
    items = [pipeline.submit_nowait(0, deadline_s=10)]
    await slow.wait_batches(1)  # slow holds 0
    items += submit(pipeline, [1])
    await wait_until(lambda: pipeline.stage("slow").statistics().queue_depth == 1)
    items += submit(pipeline, [2])
    await fast.wait_batches(3)  # fast handled 2 and now waits for room in slow's queue
    items += submit(pipeline, [3])
    fast_stats = pipeline.stage("fast").statistics()
    slow_stats = pipeline.stage("slow").statistics()
    assert (fast_stats.in_flight, fast_stats.queue_depth) == (1, 1)
    assert (slow_stats.in_flight, slow_stats.queue_depth) == (1, 1)
    with pytest.raises(Overloaded):
        pipeline.submit_nowait(4, deadline_s=10)
    slow.gate.set()
    assert await answers(items) == [0, 1, 2, 3]


# -- deadlines ---------------------------------------------------------------------------


async def test_deadline_is_a_budget_from_submission(make_pipeline: MakePipeline,
                                                    clock: FakeClock) -> None:
    handler = Recorder()
    pipeline = make_pipeline(("only", handler, {"batch_max": 8}), clock=clock)
    await pipeline.start()
    item = pipeline.submit_nowait("late", deadline_s=0.5)
    assert item.deadline_s == clock() + 0.5
    clock.advance(0.6)
    [error] = await answers([item])
    assert isinstance(error, DeadlineExceeded) and error.stage == "only"
    assert handler.batches == []


async def test_deadline_can_pass_in_a_later_stage(make_pipeline: MakePipeline,
                                                  clock: FakeClock) -> None:
    def slow(payload: Any) -> Any:
        clock.advance(2)  # the first stage took two seconds
        return payload

    second = Recorder()
    pipeline = make_pipeline(("first", Recorder(slow), {}), ("second", second, {}), clock=clock)
    await pipeline.start()
    [error] = await answers(submit(pipeline, ["x"], deadline_s=1))
    assert isinstance(error, DeadlineExceeded) and error.stage == "second"
    assert second.batches == []
    assert pipeline.stage("second").statistics().expired == 1


async def test_timings_are_queue_wait_plus_service(make_pipeline: MakePipeline,
                                                   clock: FakeClock) -> None:
    def three_ms(payload: Any) -> Any:
        clock.advance(0.003)
        return payload

    pipeline = make_pipeline(("work", Recorder(three_ms), {}), clock=clock)
    await pipeline.start()
    item = pipeline.submit_nowait("x", deadline_s=10)
    clock.advance(0.002)  # waits 2 ms in the queue
    assert await answers([item]) == ["x"]
    assert item.timings_ms["work"] == pytest.approx(5.0)
    stats = pipeline.stage("work").statistics()
    assert stats.queue_wait_ms.sum == pytest.approx(2.0)
    assert stats.service_ms.sum == pytest.approx(3.0)


# -- drain -------------------------------------------------------------------------------


async def test_drain_answers_everything_accepted(make_pipeline: MakePipeline) -> None:
    first, second = Recorder(held=True), Recorder()
    pipeline = make_pipeline(("first", first, {"batch_max": 2}), ("second", second, {}))
    await pipeline.start()
    items = submit(pipeline, list(range(5)))
    await first.wait_batches(1)
    draining = asyncio.create_task(pipeline.drain(timeout_s=5))
    await wait_until(lambda: not pipeline.stage("first").accepting)
    with pytest.raises(ShuttingDown):
        pipeline.submit_nowait(99, deadline_s=10)
    first.gate.set()
    async with asyncio.timeout(2):
        await draining
    assert await answers(items) == [0, 1, 2, 3, 4]
    stats = pipeline.statistics()
    assert stats.pending == 0
    assert all(stage.workers == 0 for stage in stats.stages)


async def test_submit_after_drain_raises_shutting_down(make_pipeline: MakePipeline) -> None:
    pipeline = make_pipeline(("only", Recorder(), {}))
    await pipeline.start()
    await pipeline.drain(timeout_s=1)
    with pytest.raises(ShuttingDown) as raised:
        pipeline.submit_nowait(1, deadline_s=10)
    assert raised.value.code == "shutting_down"
    assert pipeline.stage("only").statistics().rejected == 1


async def test_drain_timeout_fails_the_rest(make_pipeline: MakePipeline) -> None:
    stuck = Recorder(held=True)  # never released
    pipeline = make_pipeline(("stuck", stuck, {}), ("after", Recorder(), {}))
    await pipeline.start()
    items = submit(pipeline, [1, 2, 3])
    await stuck.wait_batches(1)
    async with asyncio.timeout(2):
        await pipeline.drain(timeout_s=0.01)
    errors = await answers(items)
    assert all(isinstance(error, ShuttingDown) for error in errors)
    assert "0.01 s shutdown timeout" in str(errors[0])
    stats = pipeline.statistics()
    assert stats.pending == 0
    assert all(stage.workers == 0 and stage.in_flight == 0 for stage in stats.stages)


async def test_drain_reports_a_dead_worker_after_stopping_every_stage(
        make_pipeline: MakePipeline, caplog: pytest.LogCaptureFixture) -> None:
    def broken(item: Item) -> None:
        raise KeyError("bug")

    pipeline = make_pipeline(("first", Recorder(), {}), ("second", Recorder(), {}))
    pipeline.stage("first").on_settled = broken
    await pipeline.start()
    # The first handler returns its payload, Finish("x"), as the outcome: the item is
    # answered, then on_settled raises and the worker dies.
    items = submit(pipeline, [Finish("x")])
    await wait_until(lambda: "died" in caplog.text)
    with pytest.raises(KeyError, match="bug"):
        await pipeline.drain(timeout_s=0.01)
    assert await answers(items) == ["x"]
    assert all(stage.workers == 0 for stage in pipeline.statistics().stages)


async def test_wait_idle_returns_once_every_item_is_answered(make_pipeline: MakePipeline) -> None:
    pipeline = make_pipeline(("a", Recorder(), {"batch_max": 64, "batch_wait_ms": 1,
                                                "queue_max": 1024, "workers": 2}),
                             ("b", Recorder(), {"batch_max": 16, "queue_max": 8}))
    await pipeline.wait_idle()  # nothing accepted yet
    await pipeline.start()
    items = submit(pipeline, list(range(500)))
    assert pipeline.statistics().pending == 500
    async with asyncio.timeout(2):
        await pipeline.wait_idle()
    assert all(item.future.done() for item in items)
    assert [item.future.result() for item in items] == list(range(500))


# -- statistics and wiring ---------------------------------------------------------------


async def test_statistics_count_items_batches_and_waits(make_pipeline: MakePipeline) -> None:
    pipeline = make_pipeline(("a", Recorder(), {"batch_max": 4, "queue_max": 32}),
                             ("b", Recorder(lambda p: ValueError() if p == 0 else p),
                              {"batch_max": 32}))
    await pipeline.start()
    await answers(submit(pipeline, list(range(10))))
    stats = pipeline.statistics()
    assert isinstance(stats, PipelineStatistics)
    a, b = stats.stages
    assert (a.name, a.workers, a.queue_max, a.queue_depth, a.in_flight) == ("a", 1, 32, 0, 0)
    assert (a.accepted, a.completed, a.failed, a.expired, a.rejected) == (10, 10, 0, 0, 0)
    assert (b.accepted, b.completed, b.failed) == (10, 9, 1)
    assert a.batch_size.count == 3 and a.batch_size.sum == 10  # 4 + 4 + 2
    assert a.batch_size.counts[a.batch_size.bounds.index(4)] == 3
    assert a.service_ms.count == 3
    assert a.queue_wait_ms.count == 10
    with pytest.raises(AttributeError):
        stats.pending = 1  # type: ignore[misc]


def test_a_pipeline_needs_uniquely_named_stages() -> None:
    with pytest.raises(ValueError, match="at least one stage"):
        Pipeline([])
    with pytest.raises(ValueError, match="unique"):
        Pipeline([Stage("x", Recorder(), config()), Stage("x", Recorder(), config())])


def test_stage_lookup() -> None:
    first, second = Stage("first", Recorder(), config()), Stage("second", Recorder(), config())
    pipeline = Pipeline([first, second])
    assert pipeline.stage("second") is second
    assert first.next is second and second.next is None
    with pytest.raises(KeyError):
        pipeline.stage("third")
