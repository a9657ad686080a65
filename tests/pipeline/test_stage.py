"""One stage on its own: micro-batching, deadlines, failing handlers, intake, lifecycle."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest

from pipeline import (
    DeadlineExceeded,
    Item,
    Overloaded,
    ShuttingDown,
    Stage,
    StageConfig,
    StageFailed,
)
from tests.pipeline.conftest import FakeClock, Recorder, config, make_item, wait_until

MakeStage = Callable[..., Stage]


async def results(items: list[Item], *, timeout_s: float = 2.0) -> list[Any]:
    async with asyncio.timeout(timeout_s):
        return list(await asyncio.gather(*(item.future for item in items)))


# -- micro-batching ----------------------------------------------------------------------


async def test_batch_max_is_respected(make_stage: MakeStage) -> None:
    handler = Recorder()
    stage = make_stage(handler, batch_max=3, batch_wait_ms=0)
    stage.start()
    items = [make_item(i) for i in range(7)]
    for item in items:  # all queued before the worker first runs
        stage.put_nowait(item)
    assert await results(items) == list(range(7))
    assert handler.batches == [[0, 1, 2], [3, 4, 5], [6]]


async def test_batch_waits_for_more_items_within_the_window(make_stage: MakeStage) -> None:
    handler = Recorder()
    stage = make_stage(handler, batch_max=10, batch_wait_ms=20)
    stage.start()
    loop = asyncio.get_running_loop()
    started_s = loop.time()
    first, second = make_item("a"), make_item("b")
    stage.put_nowait(first)
    await wait_until(lambda: stage.statistics().in_flight == 1)  # the worker holds "a"
    stage.put_nowait(second)
    assert await results([first, second]) == ["a", "b"]
    assert handler.batches == [["a", "b"]]
    # Only two of ten arrived: the batch went out when the window closed, not before.
    assert loop.time() - started_s >= 0.020 * 0.9


async def test_an_idle_stage_without_wait_when_idle_hands_its_item_on_at_once(
        make_stage: MakeStage) -> None:
    handler = Recorder()
    stage = make_stage(handler, workers=2, batch_max=10, batch_wait_ms=60_000,
                       wait_when_idle=False)
    stage.start()
    lone = make_item("a")
    stage.put_nowait(lone)
    # No other worker is busy: the 60 s window is not waited for.
    assert await results([lone], timeout_s=2) == ["a"]
    assert handler.batches == [["a"]]


async def test_a_busy_stage_without_wait_when_idle_still_fills_its_batch(
        make_stage: MakeStage) -> None:
    handler = Recorder(held=True)
    stage = make_stage(handler, workers=2, batch_max=3, batch_wait_ms=60_000,
                       wait_when_idle=False)
    stage.start()
    first = make_item(0)
    stage.put_nowait(first)
    await handler.wait_batches(1)  # one worker is inside the handler, held at the gate
    others = [make_item(i) for i in (1, 2, 3)]
    stage.put_nowait(others[0])
    await wait_until(lambda: stage.statistics().in_flight == 2)  # the second worker waits
    stage.put_nowait(others[1])
    stage.put_nowait(others[2])
    handler.gate.set()
    assert await results([first, *others], timeout_s=2) == [0, 1, 2, 3]
    # The second worker waited for more while the first was busy: 1, 2 and 3 went together
    # (a full batch ends the window; without waiting, 1 would have gone alone).
    assert handler.batches == [[0], [1, 2, 3]]


async def test_batch_closes_after_the_window(make_stage: MakeStage) -> None:
    handler = Recorder()
    stage = make_stage(handler, batch_max=10, batch_wait_ms=1)
    stage.start()
    first = make_item("a")
    stage.put_nowait(first)
    assert await results([first]) == ["a"]
    second = make_item("b")
    stage.put_nowait(second)
    assert await results([second]) == ["b"]
    assert handler.batches == [["a"], ["b"]]


async def test_full_batch_goes_before_the_window_closes(make_stage: MakeStage) -> None:
    handler = Recorder()
    stage = make_stage(handler, batch_max=2, batch_wait_ms=60_000)
    stage.start()
    first, second = make_item("a"), make_item("b")
    stage.put_nowait(first)
    await wait_until(lambda: stage.statistics().in_flight == 1)
    stage.put_nowait(second)
    assert await results([first, second], timeout_s=2) == ["a", "b"]
    assert handler.batches == [["a", "b"]]


async def test_zero_wait_takes_only_what_is_already_queued(make_stage: MakeStage) -> None:
    handler = Recorder(held=True)
    stage = make_stage(handler, batch_max=10, batch_wait_ms=0)
    stage.start()
    queued = [make_item(i) for i in range(3)]
    for item in queued:
        stage.put_nowait(item)
    await handler.wait_batches(1)
    late = make_item(3)
    stage.put_nowait(late)
    handler.gate.set()
    assert await results([*queued, late]) == [0, 1, 2, 3]
    assert handler.batches == [[0, 1, 2], [3]]


async def test_several_workers_share_the_queue(make_stage: MakeStage) -> None:
    handler = Recorder(held=True)
    stage = make_stage(handler, workers=3, batch_max=1)
    stage.start()
    items = [make_item(i) for i in range(3)]
    for item in items:
        stage.put_nowait(item)
    await handler.wait_batches(3)  # three batches in the handler at once
    assert stage.statistics().in_flight == 3
    handler.gate.set()
    assert await results(items) == [0, 1, 2]


# -- outcomes and deadlines --------------------------------------------------------------


async def test_exception_outcome_fails_only_that_item(make_stage: MakeStage) -> None:
    refused = ValueError("no")
    stage = make_stage(Recorder(lambda p: refused if p == 1 else p * 10), batch_max=3)
    stage.start()
    items = [make_item(i) for i in range(3)]
    for item in items:
        stage.put_nowait(item)
    done = await asyncio.gather(*(item.future for item in items), return_exceptions=True)
    assert done == [0, refused, 20]
    stats = stage.statistics()
    assert (stats.completed, stats.failed) == (2, 1)


async def test_expired_items_fail_and_skip_the_handler(make_stage: MakeStage,
                                                       clock: FakeClock) -> None:
    handler = Recorder()
    stage = make_stage(handler, batch_max=10, clock=clock)
    stage.start()
    stale = make_item("stale", deadline_s=clock() + 1)
    fresh = make_item("fresh", deadline_s=clock() + 5)
    stage.put_nowait(stale)
    stage.put_nowait(fresh)
    clock.advance(2)
    assert await results([fresh]) == ["fresh"]
    with pytest.raises(DeadlineExceeded) as raised:
        await stale.future
    assert raised.value.stage == "s"
    assert handler.payloads == ["fresh"]
    assert stage.statistics().expired == 1


async def test_a_batch_of_expired_items_calls_no_handler(make_stage: MakeStage,
                                                         clock: FakeClock) -> None:
    handler = Recorder()
    stage = make_stage(handler, batch_max=10, clock=clock)
    stage.start()
    items = [make_item(i, deadline_s=clock() + 1) for i in range(3)]
    for item in items:
        stage.put_nowait(item)
    clock.advance(1)  # a deadline equal to now has passed
    done = await asyncio.gather(*(item.future for item in items), return_exceptions=True)
    assert all(isinstance(error, DeadlineExceeded) for error in done)
    assert handler.batches == []
    stats = stage.statistics()
    assert (stats.expired, stats.batch_size.count, stats.queue_wait_ms.count) == (3, 0, 3)


async def test_a_stage_after_a_commit_answers_late_items_instead_of_expiring_them(
        clock: FakeClock) -> None:
    handler = Recorder()
    stage = Stage("respond", handler, config(batch_max=10), clock=clock,
                  enforce_deadline=False)
    stage.start()
    try:
        late = make_item("committed", deadline_s=clock() + 1)
        stage.put_nowait(late)
        clock.advance(5)
        assert await results([late]) == ["committed"]
        assert stage.statistics().expired == 0
    finally:
        await stage.stop()


# -- failing handlers --------------------------------------------------------------------


async def test_handler_error_fails_the_batch_and_the_stage_survives(
        make_stage: MakeStage, caplog: pytest.LogCaptureFixture) -> None:
    boom = RuntimeError("database gone")
    calls = 0

    async def flaky(payloads: list[Any]) -> list[Any]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise boom
        return payloads

    stage = make_stage(flaky, batch_max=2)
    stage.start()
    batch = [make_item(1), make_item(2)]
    for item in batch:
        stage.put_nowait(item)
    for item in batch:
        with pytest.raises(StageFailed) as raised:
            await item.future
        assert raised.value.stage == "s"
        assert raised.value.__cause__ is boom
    after = make_item(3)
    stage.put_nowait(after)
    assert await results([after]) == [3]
    stats = stage.statistics()
    assert (stats.failed, stats.completed, stats.workers) == (2, 1, 1)
    assert stats.service_ms.count == 2
    assert "database gone" in caplog.text


async def test_wrong_number_of_outcomes_fails_the_batch(make_stage: MakeStage) -> None:
    async def short(payloads: list[Any]) -> list[Any]:
        return payloads[:-1]

    stage = make_stage(short, batch_max=2)
    stage.start()
    batch = [make_item(1), make_item(2)]
    for item in batch:
        stage.put_nowait(item)
    for item in batch:
        with pytest.raises(StageFailed) as raised:
            await item.future
        assert isinstance(raised.value.__cause__, ValueError)
        assert "1 outcomes for 2 items" in str(raised.value)


async def test_cancelled_error_leaked_by_a_handler_is_a_failure(make_stage: MakeStage) -> None:
    async def leaky(payloads: list[Any]) -> list[Any]:
        raise asyncio.CancelledError  # e.g. a client library's internal timeout

    stage = make_stage(leaky)
    stage.start()
    item = make_item(1)
    stage.put_nowait(item)
    with pytest.raises(StageFailed) as raised:
        await item.future
    assert isinstance(raised.value.__cause__, asyncio.CancelledError)
    assert stage.statistics().workers == 1


async def test_submitter_may_cancel_its_future(make_stage: MakeStage) -> None:
    handler = Recorder()
    stage = make_stage(handler)
    stage.start()
    gone, kept = make_item("gone"), make_item("kept")
    stage.put_nowait(gone)
    stage.put_nowait(kept)
    gone.future.cancel()
    assert await results([kept]) == ["kept"]
    assert gone.future.cancelled()


# -- intake ------------------------------------------------------------------------------


async def test_full_queue_raises_overloaded(make_stage: MakeStage) -> None:
    handler = Recorder(held=True)
    stage = make_stage(handler, queue_max=2)
    stage.start()
    items = [make_item(i) for i in range(3)]
    stage.put_nowait(items[0])
    await handler.wait_batches(1)  # the worker holds item 0; the queue has room for two
    stage.put_nowait(items[1])
    stage.put_nowait(items[2])
    with pytest.raises(Overloaded) as raised:
        stage.put_nowait(make_item(3))
    assert raised.value.stage == "s"
    assert 0 < raised.value.retry_after_s <= 5
    stats = stage.statistics()
    assert (stats.queue_depth, stats.queue_max, stats.in_flight) == (2, 2, 1)
    assert (stats.accepted, stats.rejected) == (3, 1)
    handler.gate.set()
    assert await results(items) == [0, 1, 2]


async def test_put_waits_for_room(make_stage: MakeStage) -> None:
    handler = Recorder(held=True)
    stage = make_stage(handler, queue_max=1)
    stage.start()
    items = [make_item(i) for i in range(3)]
    stage.put_nowait(items[0])
    await handler.wait_batches(1)
    stage.put_nowait(items[1])
    blocked = asyncio.ensure_future(stage.put(items[2]))
    await wait_until(lambda: stage.statistics().queue_depth == 1)
    assert not blocked.done()
    handler.gate.set()
    async with asyncio.timeout(2):
        await blocked
    assert await results(items) == [0, 1, 2]


async def test_closed_intake_raises_shutting_down(make_stage: MakeStage) -> None:
    stage = make_stage(Recorder())
    with pytest.raises(ShuttingDown):  # not started yet
        stage.put_nowait(make_item(0))
    stage.start()
    assert stage.accepting
    stage.close()
    assert not stage.accepting
    with pytest.raises(ShuttingDown):
        stage.put_nowait(make_item(1))
    with pytest.raises(ShuttingDown):
        await stage.put(make_item(2))
    assert stage.statistics().rejected == 3


# -- lifecycle ---------------------------------------------------------------------------


def test_config_is_frozen_and_keyword_only() -> None:
    settings = config(workers=2)
    with pytest.raises(AttributeError):
        settings.workers = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        StageConfig(1, 1, 0.0, 1)  # type: ignore[call-arg]


@pytest.mark.parametrize("settings", [{"workers": 0}, {"batch_max": 0}, {"queue_max": 0},
                                      {"batch_wait_ms": -1}])
def test_config_is_checked(settings: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="'bad'"):
        Stage("bad", Recorder(), config(**settings))


async def test_start_twice_is_refused(make_stage: MakeStage) -> None:
    stage = make_stage(Recorder(), workers=2)
    stage.start()
    assert stage.statistics().workers == 2
    with pytest.raises(RuntimeError, match="already running"):
        stage.start()


async def test_stop_fails_what_is_left(make_stage: MakeStage) -> None:
    handler = Recorder(held=True)
    stage = make_stage(handler, queue_max=4)
    stage.start()
    items = [make_item(i) for i in range(3)]
    for item in items:
        stage.put_nowait(item)
    await handler.wait_batches(1)
    await stage.stop()
    done = await asyncio.gather(*(item.future for item in items), return_exceptions=True)
    assert all(isinstance(error, ShuttingDown) for error in done)
    stats = stage.statistics()
    assert (stats.workers, stats.queue_depth, stats.in_flight) == (0, 0, 0)
    assert not stage.accepting


async def test_a_dead_worker_is_logged_and_reraised_by_stop(
        make_stage: MakeStage, caplog: pytest.LogCaptureFixture) -> None:
    def broken(item: Item) -> None:
        raise KeyError("bug")

    stage = make_stage(Recorder())
    stage.on_settled = broken
    stage.start()
    stage.put_nowait(make_item(1))
    await wait_until(lambda: "worker stage-s-0 of stage 's' died" in caplog.text)
    assert caplog.records[-1].levelno == logging.ERROR
    assert stage.statistics().workers == 0
    with pytest.raises(KeyError, match="bug"):
        await stage.stop()
    await stage.stop()  # nothing left to report


def test_item_repr() -> None:
    future: asyncio.Future[Any] = asyncio.Future(loop=asyncio.new_event_loop())
    try:
        assert repr(Item("p", 2.5, future)) == "Item('p', deadline_s=2.5, done=False)"
    finally:
        future.get_loop().close()
