"""The max-throughput search's stop rule and the "highest rate under the p99 limit"."""

from __future__ import annotations

from loadtest.capacity import (
    SearchRule,
    best_sustained,
    highest_rate_under,
    search_max,
    stop_reason,
)
from tests.loadtest.conftest import MakeRun


def test_highest_rate_under_the_limit(make_run: MakeRun) -> None:
    runs = [make_run(rate=100, p99=20), make_run(rate=500, p99=150),
            make_run(rate=1000, p99=250), make_run(rate=2000, p99=900)]
    best = highest_rate_under(runs, 200.0)
    assert best is not None and best.rate == 500


def test_a_rate_that_fails_requests_or_falls_behind_does_not_count(make_run: MakeRun) -> None:
    runs = [make_run(rate=100, p99=20),
            make_run(rate=500, p99=5, ok=900),  # fast 503s are not a success
            make_run(rate=1000, p99=50, achieved=700)]  # answered only 70 % of the offer
    best = highest_rate_under(runs, 200.0)
    assert best is not None and best.rate == 100


def test_no_rate_under_the_limit(make_run: MakeRun) -> None:
    assert highest_rate_under([make_run(rate=100, p99=300)], 200.0) is None
    assert highest_rate_under([], 200.0) is None


def test_the_limit_is_strict(make_run: MakeRun) -> None:
    assert highest_rate_under([make_run(rate=100, p99=200.0)], 200.0) is None


def test_the_search_goes_on_while_throughput_grows(make_run: MakeRun) -> None:
    steps = [make_run(concurrency=8, achieved=100), make_run(concurrency=16, achieved=190)]
    assert stop_reason(steps, SearchRule()) is None


def test_the_search_stops_after_two_steps_without_gain(make_run: MakeRun) -> None:
    rule = SearchRule()
    steps = [make_run(concurrency=8, achieved=100), make_run(concurrency=16, achieved=200),
             make_run(concurrency=32, achieved=204)]
    assert stop_reason(steps, rule) is None
    steps.append(make_run(concurrency=64, achieved=190))
    assert stop_reason(steps, rule) == "throughput grew < 5% for 2 steps"


def test_the_search_stops_when_errors_or_p99_explode(make_run: MakeRun) -> None:
    rule = SearchRule(max_error_share=0.01, max_p99_ms=1000)
    assert "errors" in (stop_reason([make_run(concurrency=8, ok=900)], rule) or "")
    assert "p99" in (stop_reason([make_run(concurrency=8, p99=1500)], rule) or "")
    assert stop_reason([make_run(concurrency=8, sent=1, ok=0)], rule) is not None


def test_search_max_reports_the_best_sustained_step(make_run: MakeRun) -> None:
    throughput = {8: 300, 16: 600, 32: 800, 64: 900, 128: 950}
    p99 = {8: 20, 16: 30, 32: 60, 64: 400, 128: 2000}
    search = search_max(lambda c: make_run(concurrency=c, achieved=throughput[c], p99=p99[c]),
                        SearchRule(max_p99_ms=1000), steps=sorted(throughput))
    assert [run.concurrency for run in search.steps] == [8, 16, 32, 64, 128]
    assert search.best is not None and search.best.concurrency == 64
    assert search.stopped_because.startswith("p99")


def test_search_max_runs_every_step_when_nothing_stops_it(make_run: MakeRun) -> None:
    search = search_max(lambda c: make_run(concurrency=c, achieved=c * 10.0), SearchRule(),
                        steps=[1, 2, 4])
    assert len(search.steps) == 3 and search.stopped_because == "reached concurrency 4"
    assert search.best is not None and search.best.concurrency == 4


def test_best_sustained_ignores_failing_steps(make_run: MakeRun) -> None:
    steps = [make_run(concurrency=8, achieved=300), make_run(concurrency=16, achieved=500,
                                                             ok=800)]
    best = best_sustained(steps, SearchRule())
    assert best is not None and best.concurrency == 8
