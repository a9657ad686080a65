"""Summing several edge processes' statistics: the sum renders like one process that saw it all."""

from __future__ import annotations

import msgspec

from http_edge.metrics import EdgeSnapshot, EdgeStatistics, render_metrics, render_snapshot
from http_edge.process_metrics import (
    ProcessSnapshot,
    merge_edge,
    merge_histograms,
    merge_pipelines,
    render_processes,
    retire,
)
from pipeline import Histogram, HistogramSnapshot, PipelineStatistics, StageStatistics


def histogram(*values: float, bounds: tuple[float, ...] = (1, 10)) -> HistogramSnapshot:
    h = Histogram(bounds)
    for value in values:
        h.observe(value)
    return h.snapshot()


def stage(name: str, *, depth: int = 0, accepted: int = 0, waits: tuple[float, ...] = (),
          workers: int = 2, queue_max: int = 100) -> StageStatistics:
    return StageStatistics(
        name=name, workers=workers, queue_depth=depth, queue_max=queue_max, in_flight=depth,
        accepted=accepted, completed=accepted, failed=0, expired=0, rejected=0,
        queue_wait_ms=histogram(*waits), service_ms=histogram(*waits),
        batch_size=histogram(*(1 for _ in waits)))


def pipeline(*stages: StageStatistics, pending: int = 0) -> PipelineStatistics:
    return PipelineStatistics(stages=stages, pending=pending)


def edge(*events: tuple[str, str, int, str | None, float]) -> EdgeStatistics:
    statistics = EdgeStatistics()
    for method, route, status, decision, ms in events:
        statistics.count_request(method, route, status)
        if decision is not None:
            statistics.count_decision(decision, ms)
    return statistics


A_EVENTS = [("POST", "/v1/transactions", 200, "approve", 3.0),
            ("GET", "/healthz", 200, None, 0.0),
            ("POST", "/v1/transactions", 503, None, 0.0)]
B_EVENTS = [("POST", "/v1/transactions", 200, "decline", 40.0),
            ("POST", "/v1/transactions", 200, "approve", 0.7)]


def snapshot(pid: int, statistics: EdgeStatistics, stats: PipelineStatistics,
             written_at_s: float = 100.0) -> ProcessSnapshot:
    return ProcessSnapshot(pid=pid, written_at_s=written_at_s, edge=statistics.snapshot(),
                           pipeline=stats)


def test_the_sum_renders_like_one_process_that_saw_everything():
    a = snapshot(11, edge(*A_EVENTS), pipeline(stage("s1", depth=1, accepted=2, waits=(0.5,)),
                                               stage("s2", accepted=2), pending=1))
    b = snapshot(22, edge(*B_EVENTS), pipeline(stage("s1", depth=3, accepted=5, waits=(5, 50)),
                                               stage("s2", accepted=4), pending=2))
    both = edge(*A_EVENTS, *B_EVENTS)
    expected = pipeline(
        stage("s1", depth=4, accepted=7, waits=(0.5, 5, 50), workers=4, queue_max=200),
        stage("s2", accepted=6, workers=4, queue_max=200), pending=3)

    text = render_processes(a, [b], None, now_s=100.5)

    assert text.startswith(render_metrics(both, expected))
    assert "sentinel_edge_processes 2\n" in text
    assert 'sentinel_process_http_requests_total{process="11"} 3\n' in text
    assert 'sentinel_process_http_requests_total{process="22"} 2\n' in text
    assert 'sentinel_process_snapshot_age_seconds{process="22"} 0.500\n' in text


def test_an_exited_process_keeps_its_counters_and_loses_its_gauges():
    gone = snapshot(33, edge(*B_EVENTS), pipeline(stage("s1", depth=5, accepted=9, waits=(2,)),
                                                  pending=5))
    totals = retire(None, gone)
    assert totals.pids == (33,)
    (s1,) = totals.pipeline.stages
    assert (s1.queue_depth, s1.in_flight, s1.workers, s1.queue_max) == (0, 0, 0, 0)
    assert (s1.accepted, s1.queue_wait_ms.count) == (9, 1)
    assert totals.pipeline.pending == 0

    live = snapshot(44, edge(*A_EVENTS), pipeline(stage("s1", depth=1, accepted=1)))
    text = render_processes(live, [gone], totals, now_s=100.0)
    # The retired process is counted once (through the totals, not its stale file) ...
    assert 'sentinel_decisions_total{decision="decline"} 1\n' in text
    assert 'sentinel_decisions_total{decision="approve"} 2\n' in text
    assert 'sentinel_stage_items_accepted_total{stage="s1"} 10\n' in text
    # ... and only the live one has gauges and a per-process series.
    assert 'sentinel_stage_queue_depth{stage="s1"} 1\n' in text
    assert "sentinel_edge_processes 1\n" in text
    assert 'process="33"' not in text

    again = retire(totals, snapshot(55, edge(*A_EVENTS), pipeline(stage("s1", accepted=1))))
    assert again.pids == (33, 55)
    assert again.pipeline.stages[0].accepted == 10
    assert sum(n for *_, n in again.edge.requests) == 5


def test_stages_are_matched_by_name_and_new_ones_appended():
    merged = merge_pipelines(pipeline(stage("a", accepted=1), stage("b", accepted=2)),
                             pipeline(stage("b", accepted=3), stage("c", accepted=4)))
    assert [(s.name, s.accepted) for s in merged.stages] == [("a", 1), ("b", 5), ("c", 4)]


def test_histograms_of_other_bounds_are_not_mixed():
    ours, theirs = histogram(0.5, 5), histogram(0.5, bounds=(1, 2, 3))
    assert merge_histograms(ours, theirs) == ours
    summed = merge_histograms(ours, histogram(20))
    assert summed.counts == (1, 2, 3) and summed.count == 3 and summed.sum == 25.5


def test_one_process_renders_what_it_always_rendered():
    statistics = edge(*A_EVENTS)
    stats = pipeline(stage("s1", depth=1, accepted=2, waits=(0.5,)))
    assert render_metrics(statistics, stats) == render_snapshot(statistics.snapshot(), stats)
    assert render_processes(snapshot(1, statistics, stats), [], None, now_s=100).startswith(
        render_metrics(statistics, stats))


def test_event_loop_lag_is_summed_rendered_and_missing_from_older_records():
    a, b = EdgeStatistics(), EdgeStatistics()
    a.loop_lag_ms.observe(2.0)
    b.loop_lag_ms.observe(120.0)
    b.loop_lag_ms.observe(0.5)
    merged = merge_edge(a.snapshot(), b.snapshot())
    assert merged.loop_lag_ms.count == 3
    assert merged.loop_lag_ms.sum == 122.5

    text = render_snapshot(merged, pipeline())
    assert "# TYPE sentinel_event_loop_lag_ms histogram\n" in text
    assert "sentinel_event_loop_lag_ms_count{} 3\n" in text
    assert "sentinel_event_loop_lag_ms_sum{} 122.5\n" in text

    # A process of the previous version (rolling restart) wrote no loop lag: it still merges.
    record = msgspec.json.decode(msgspec.json.encode(a.snapshot()))
    del record["loop_lag_ms"]
    older = msgspec.convert(record, EdgeSnapshot)
    assert older.loop_lag_ms.count == 0
    assert merge_edge(older, b.snapshot()).loop_lag_ms.count == 2
