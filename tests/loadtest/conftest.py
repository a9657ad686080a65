"""A factory of run records for the pure-logic tests of the load tools."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from loadtest.results import Latency, RunResult

MakeRun = Callable[..., RunResult]


def _make_run(*, rate: float | None = None, concurrency: int | None = None,
              p99: float = 10.0, sent: int = 1000, ok: int | None = None,
              achieved: float | None = None, ok_rps: float | None = None) -> RunResult:
    ok = sent if ok is None else ok
    achieved = (rate or 100.0) if achieved is None else achieved
    return RunResult(
        label="t", target="edge", mode="open" if rate else "closed", rate=rate,
        concurrency=concurrency, seconds=10.0, sent=sent, ok=ok,
        errors={"HTTP 503 overloaded": sent - ok} if ok < sent else {},
        achieved_rps=achieved, ok_rps=achieved * ok / sent if ok_rps is None else ok_rps,
        latency=Latency(p50=p99 / 2, p95=p99, p99=p99, p99_9=p99, max=p99, mean=p99 / 2),
        per_second=[])


@pytest.fixture
def make_run() -> MakeRun:
    """`make_run(rate=100, p99=30)`: an open-loop run; `make_run(concurrency=8)`: closed."""
    return _make_run
