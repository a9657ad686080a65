"""How much a server sustains: the closed-loop search for its maximum throughput, and the
highest offered rate of a sweep at which p99 stays under a limit."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

from loadtest.results import RunResult

CONCURRENCY_STEPS = (8, 16, 32, 64, 128, 256, 512, 1024)


class SearchRule(NamedTuple):
    """A step counts as sustained when at most `max_error_share` of its requests failed and
    its p99 stayed under `max_p99_ms`; the search stops at the first step that is not, or
    after `patience` steps in a row without `min_gain` more throughput than the best so far."""

    max_error_share: float = 0.01
    max_p99_ms: float = 1000.0
    min_gain: float = 0.05
    patience: int = 2

    def sustained(self, run: RunResult) -> bool:
        return run.sent > 0 and run.error_share <= self.max_error_share and (
            run.latency.p99 <= self.max_p99_ms)


class MaxSearch(NamedTuple):
    steps: list[RunResult]
    best: RunResult | None  # the sustained step with the highest throughput
    stopped_because: str


def best_sustained(steps: Sequence[RunResult], rule: SearchRule) -> RunResult | None:
    sustained = [run for run in steps if rule.sustained(run)]
    return max(sustained, key=lambda run: run.ok_rps, default=None)


def stop_reason(steps: Sequence[RunResult], rule: SearchRule) -> str | None:
    """Why the search should end after the last of `steps`, or None to go on."""
    last = steps[-1]
    if last.sent == 0:
        return "no request answered"
    if last.error_share > rule.max_error_share:
        return f"errors {last.error_share:.1%} > {rule.max_error_share:.1%}"
    if last.latency.p99 > rule.max_p99_ms:
        return f"p99 {last.latency.p99:,.0f} ms > {rule.max_p99_ms:,.0f} ms"
    best_before = 0.0
    stalled = 0
    for run in steps:
        stalled = stalled + 1 if run.ok_rps < best_before * (1 + rule.min_gain) else 0
        best_before = max(best_before, run.ok_rps)
    if stalled >= rule.patience:
        return f"throughput grew < {rule.min_gain:.0%} for {stalled} steps"
    return None


def search_max(run_at: Callable[[int], RunResult], rule: SearchRule,
               steps: Sequence[int] = CONCURRENCY_STEPS) -> MaxSearch:
    """Raise the closed-loop concurrency step by step until `stop_reason` says stop."""
    done: list[RunResult] = []
    reason = f"reached concurrency {steps[-1]}"
    for concurrency in steps:
        done.append(run_at(concurrency))
        why = stop_reason(done, rule)
        if why is not None:
            reason = why
            break
    return MaxSearch(done, best_sustained(done, rule), reason)


def highest_rate_under(runs: Sequence[RunResult], p99_limit_ms: float, *,
                       max_error_share: float = 0.001,
                       min_achieved: float = 0.95) -> RunResult | None:
    """The open-loop run with the highest offered rate whose p99 stayed under the limit while
    the server kept up: at most `max_error_share` failed and it answered at least
    `min_achieved` of the offered rate."""
    kept_up = [run for run in runs
               if run.rate and run.sent and run.latency.p99 < p99_limit_ms
               and run.error_share <= max_error_share
               and run.achieved_rps >= min_achieved * run.rate]
    return max(kept_up, key=lambda run: run.rate or 0.0, default=None)
