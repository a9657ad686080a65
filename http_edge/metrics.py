"""Edge counters and the Prometheus text rendering of them and of the pipeline's statistics.

Stages never call a metrics library: `/metrics` reads `Pipeline.statistics()` records and the
edge's own counters when scraped, so the hot path only bumps integers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import msgspec

from pipeline import Histogram, HistogramSnapshot, PipelineStatistics

LATENCY_BOUNDS_MS = (0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500,
                     1000, 2000)


class EdgeSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """The edge's counters at one instant: what `/metrics` renders and a process shares."""

    # (method, route, status, count), sorted
    requests: tuple[tuple[str, str, int, int], ...]
    decisions: dict[str, int]
    screening_ms: HistogramSnapshot
    # How late the event loop ran its timers (pipeline/loop_lag.py). A default, so that a
    # process of the previous version (no such field) still merges during a rolling restart.
    loop_lag_ms: HistogramSnapshot = msgspec.field(
        default_factory=lambda: Histogram(LATENCY_BOUNDS_MS).snapshot())


class EdgeStatistics:
    """Counters the edge keeps per process: requests, decisions, screening latency, and how
    late its event loop runs (fed by a LoopLagMonitor)."""

    def __init__(self) -> None:
        self.requests: Counter[tuple[str, str, int]] = Counter()
        self.decisions: Counter[str] = Counter()
        self.screening_ms = Histogram(LATENCY_BOUNDS_MS)
        self.loop_lag_ms = Histogram(LATENCY_BOUNDS_MS)

    def count_request(self, method: str, route: str, status: int) -> None:
        self.requests[(method, route, status)] += 1

    def count_decision(self, decision: str, elapsed_ms: float) -> None:
        self.decisions[decision] += 1
        self.screening_ms.observe(elapsed_ms)

    def snapshot(self) -> EdgeSnapshot:
        return EdgeSnapshot(
            requests=tuple(sorted((*key, count) for key, count in self.requests.items())),
            decisions=dict(sorted(self.decisions.items())),
            screening_ms=self.screening_ms.snapshot(), loop_lag_ms=self.loop_lag_ms.snapshot())


def _escape(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**labels: object) -> str:
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


def _histogram(name: str, snap: HistogramSnapshot, **labels: object) -> Iterable[str]:
    for bound, count in zip((*snap.bounds, "+Inf"), snap.counts, strict=True):
        yield f"{name}_bucket{_labels(**labels, le=bound)} {count}"
    yield f"{name}_sum{_labels(**labels)} {snap.sum}"
    yield f"{name}_count{_labels(**labels)} {snap.count}"


def _header(name: str, kind: str, text: str) -> Iterable[str]:
    yield f"# HELP {name} {text}"
    yield f"# TYPE {name} {kind}"


def _pipeline_lines(stats: PipelineStatistics) -> Iterable[str]:
    gauges = (("queue_depth", "items waiting in the stage's queue"),
              ("queue_max", "capacity of the stage's queue"),
              ("in_flight", "items taken by a worker and not yet handed on"),
              ("workers", "worker tasks of the stage"))
    for field, text in gauges:
        name = f"sentinel_stage_{field}"
        yield from _header(name, "gauge", text)
        for stage in stats.stages:
            yield f"{name}{_labels(stage=stage.name)} {getattr(stage, field)}"
    counters = ("accepted", "completed", "failed", "expired", "rejected")
    for field in counters:
        name = f"sentinel_stage_items_{field}_total"
        yield from _header(name, "counter", f"items {field} by the stage")
        for stage in stats.stages:
            yield f"{name}{_labels(stage=stage.name)} {getattr(stage, field)}"
    histograms = (("queue_wait_ms", "time an item waited in the stage's queue"),
                  ("service_ms", "time the stage's handler took per micro-batch"),
                  ("batch_size", "items per micro-batch"))
    for field, text in histograms:
        name = f"sentinel_stage_{field}"
        yield from _header(name, "histogram", text)
        for stage in stats.stages:
            yield from _histogram(name, getattr(stage, field), stage=stage.name)


def render_metrics(edge: EdgeStatistics, pipeline: PipelineStatistics) -> str:
    return render_snapshot(edge.snapshot(), pipeline)


def render_snapshot(edge: EdgeSnapshot, pipeline: PipelineStatistics) -> str:
    lines: list[str] = []
    lines += _header("sentinel_http_requests_total", "counter", "HTTP requests answered")
    for method, route, status, count in sorted(edge.requests):
        lines.append(f"sentinel_http_requests_total"
                     f"{_labels(method=method, route=route, status=status)} {count}")
    lines += _header("sentinel_decisions_total", "counter", "screening decisions answered")
    for decision, count in sorted(edge.decisions.items()):
        lines.append(f"sentinel_decisions_total{_labels(decision=decision)} {count}")
    lines += _header("sentinel_screening_ms", "histogram", "time to answer a screening")
    lines += _histogram("sentinel_screening_ms", edge.screening_ms)
    lines += _header("sentinel_event_loop_lag_ms", "histogram",
                     "how much later than asked the event loop ran a 50 ms timer")
    lines += _histogram("sentinel_event_loop_lag_ms", edge.loop_lag_ms)
    lines += _pipeline_lines(pipeline)
    return "\n".join(lines) + "\n"
