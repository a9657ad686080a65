"""The open-loop schedule, the split of closed-loop workers, error kinds and the recorder."""

from __future__ import annotations

import pytest

from loadtest.sender import Recorder, error_kind, schedule, workers_of


def test_the_processes_share_the_schedule_without_gaps_or_overlap() -> None:
    shares = [list(schedule(1000.0, 2.5, p, 3)) for p in range(3)]
    merged = sorted(k for share in shares for k, _ in share)
    assert merged == list(range(2500))
    assert [k for k, _ in shares[1][:3]] == [1, 4, 7]


def test_request_k_is_due_k_over_rate_seconds_after_the_start() -> None:
    assert list(schedule(4.0, 1.0, 0, 1)) == [(0, 0.0), (1, 0.25), (2, 0.5), (3, 0.75)]
    assert list(schedule(4.0, 1.0, 1, 2)) == [(1, 0.25), (3, 0.75)]


def test_a_fractional_rate_rounds_the_count_down() -> None:
    assert len(list(schedule(2.5, 3.0, 0, 1))) == 7


@pytest.mark.parametrize(("concurrency", "processes"), [(8, 2), (7, 2), (1, 3), (100, 7)])
def test_closed_loop_workers_add_up(concurrency: int, processes: int) -> None:
    shares = [workers_of(concurrency, p, processes) for p in range(processes)]
    assert sum(shares) == concurrency
    assert max(shares) - min(shares) <= 1


@pytest.mark.parametrize(("status", "body", "kind"), [
    (503, b'{"type":"x","status":503,"code":"overloaded","title":"Overloaded"}',
     "HTTP 503 overloaded"),
    (429, b'{"code":"card_rate_limited"}', "HTTP 429 card_rate_limited"),
    (502, b"<html>bad gateway</html>", "HTTP 502"),
    (500, b'["not", "a", "problem"]', "HTTP 500"),
    (500, b'{"code": 7}', "HTTP 500"),
])
def test_error_kind_names_the_status_and_the_problem_code(status: int, body: bytes,
                                                          kind: str) -> None:
    assert error_kind(status, body) == kind


def test_the_recorder_skips_the_warmup_and_times_from_the_due_time() -> None:
    recorder = Recorder(window_start=100.0)
    recorder.record(due=99.5, done=100.2, error=None)  # warm-up: not counted
    recorder.record(due=100.5, done=100.75, error=None)
    recorder.record(due=101.0, done=103.0, error="timeout")
    samples = recorder.samples(cpu_s=1.0)
    assert list(samples.offsets_s) == [0.5, 1.0]
    assert list(samples.latencies_ms) == [250.0, 2000.0]
    assert samples.errors == {"timeout": 1}
    assert samples.last_done_s == 3.0
