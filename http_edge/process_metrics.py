"""Metrics of several edge processes on one port: sum their statistics snapshots, render them.

Pure functions over records; where the snapshots come from (files in a run directory) is
`ops/metrics_share.py`'s business. Counters and histogram buckets are summed, and so are the
stage gauges (queue depth, in flight, workers, capacity: totals over the processes). Processes
that have exited are folded into `RetiredTotals` with their gauges zeroed, so the summed
counters never go backwards when a rolling restart or a crash replaces a process.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TypeVar

import msgspec

from http_edge.metrics import EdgeSnapshot, render_snapshot
from pipeline import HistogramSnapshot, PipelineStatistics

# Fields of a stage's statistics that describe the present, not a history: a process that has
# exited contributes nothing to them.
STAGE_GAUGES = ("workers", "queue_depth", "queue_max", "in_flight")

S = TypeVar("S", bound=msgspec.Struct)


class ProcessSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """One edge process's statistics at `written_at_s` (Unix time)."""

    pid: int
    written_at_s: float
    edge: EdgeSnapshot
    pipeline: PipelineStatistics


class RetiredTotals(msgspec.Struct, frozen=True, kw_only=True):
    """The counters of every process that has exited (`pids`), gauges zeroed."""

    pids: tuple[int, ...]
    edge: EdgeSnapshot
    pipeline: PipelineStatistics


def merge_histograms(a: HistogramSnapshot, b: HistogramSnapshot) -> HistogramSnapshot:
    """The sum of two snapshots; `a` alone when the bounds differ (code of another version)."""
    if a.bounds != b.bounds:
        return a
    return HistogramSnapshot(a.bounds, tuple(x + y for x, y in zip(a.counts, b.counts,
                                                                   strict=True)),
                             a.sum + b.sum, a.count + b.count)


def _add(a: S, b: S) -> S:
    """Field by field: numbers summed, histograms merged, anything else (a name) kept."""
    values: dict[str, object] = {}
    for name in a.__struct_fields__:
        x, y = getattr(a, name), getattr(b, name)
        if isinstance(x, HistogramSnapshot):
            values[name] = merge_histograms(x, y)
        elif isinstance(x, int | float) and not isinstance(x, bool):
            values[name] = x + y
    return msgspec.structs.replace(a, **values)


def merge_edge(a: EdgeSnapshot, b: EdgeSnapshot) -> EdgeSnapshot:
    requests = Counter({(m, r, s): n for m, r, s, n in a.requests})
    requests.update({(m, r, s): n for m, r, s, n in b.requests})
    return EdgeSnapshot(
        requests=tuple(sorted((*key, count) for key, count in requests.items())),
        decisions=dict(sorted((Counter(a.decisions) + Counter(b.decisions)).items())),
        screening_ms=merge_histograms(a.screening_ms, b.screening_ms),
        loop_lag_ms=merge_histograms(a.loop_lag_ms, b.loop_lag_ms))


def merge_pipelines(a: PipelineStatistics, b: PipelineStatistics) -> PipelineStatistics:
    """Stages matched by name, in `a`'s order, then any only `b` has."""
    theirs = {stage.name: stage for stage in b.stages}
    stages = [_add(stage, theirs.pop(stage.name)) if stage.name in theirs else stage
              for stage in a.stages]
    stages += theirs.values()
    return PipelineStatistics(stages=tuple(stages), pending=a.pending + b.pending)


def without_gauges(pipeline: PipelineStatistics) -> PipelineStatistics:
    zero = dict.fromkeys(STAGE_GAUGES, 0)
    return PipelineStatistics(
        stages=tuple(msgspec.structs.replace(stage, **zero) for stage in pipeline.stages),
        pending=0)


def retire(totals: RetiredTotals | None, snapshot: ProcessSnapshot) -> RetiredTotals:
    """`totals` with an exited process's last snapshot folded in."""
    pipeline = without_gauges(snapshot.pipeline)
    if totals is None:
        return RetiredTotals(pids=(snapshot.pid,), edge=snapshot.edge, pipeline=pipeline)
    return RetiredTotals(pids=(*totals.pids, snapshot.pid),
                         edge=merge_edge(totals.edge, snapshot.edge),
                         pipeline=merge_pipelines(totals.pipeline, pipeline))


def _process_lines(live: Sequence[ProcessSnapshot], now_s: float) -> Iterable[str]:
    yield "# HELP sentinel_edge_processes edge processes whose statistics this answer sums"
    yield "# TYPE sentinel_edge_processes gauge"
    yield f"sentinel_edge_processes {len(live)}"
    name = "sentinel_process_http_requests_total"
    yield f"# HELP {name} HTTP requests answered, per edge process"
    yield f"# TYPE {name} counter"
    for snap in live:
        yield f'{name}{{process="{snap.pid}"}} {sum(n for *_, n in snap.edge.requests)}'
    name = "sentinel_process_snapshot_age_seconds"
    yield f"# HELP {name} age of the statistics an edge process last shared"
    yield f"# TYPE {name} gauge"
    for snap in live:
        yield f'{name}{{process="{snap.pid}"}} {max(0.0, now_s - snap.written_at_s):.3f}'


def render_processes(own: ProcessSnapshot, peers: Sequence[ProcessSnapshot],
                     retired: RetiredTotals | None, *, now_s: float) -> str:
    """The Prometheus text of the sum of `own`, the live `peers` and the retired processes
    (the same series as one process renders), then a few series per process."""
    retired_pids = set(retired.pids) if retired is not None else set()
    live = [own, *sorted((p for p in peers if p.pid not in retired_pids and p.pid != own.pid),
                         key=lambda p: p.pid)]
    edge, pipeline = own.edge, own.pipeline
    for snap in live[1:]:
        edge, pipeline = merge_edge(edge, snap.edge), merge_pipelines(pipeline, snap.pipeline)
    if retired is not None:
        edge = merge_edge(edge, retired.edge)
        pipeline = merge_pipelines(pipeline, retired.pipeline)
    return render_snapshot(edge, pipeline) + "\n".join(_process_lines(live, now_s)) + "\n"

