"""What one load run measured: the raw samples of each sender process, merged into a frozen
record of throughput, latency percentiles, errors and a per-second series."""

from __future__ import annotations

import math
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import msgspec

PERCENTILES = {"p50": 0.50, "p95": 0.95, "p99": 0.99, "p99_9": 0.999}


@dataclass(frozen=True)
class Samples:
    """One sender process's measured requests: when each was due (open loop: its scheduled
    time; closed loop: when it was sent) in seconds from the start of the measured window,
    its latency from then, and error counts by kind."""

    offsets_s: array[float]
    latencies_ms: array[float]
    errors: dict[str, int]
    last_done_s: float  # when the last measured answer came, from the window's start
    cpu_s: float  # the sender's own CPU time for the run


class Latency(msgspec.Struct, frozen=True):
    p50: float
    p95: float
    p99: float
    p99_9: float
    max: float
    mean: float


class Second(msgspec.Struct, frozen=True, array_like=True):
    """One second of the run, by due time: requests, p50 and p99 in ms."""

    second: int
    count: int
    p50: float
    p99: float


class StageTime(msgspec.Struct, frozen=True):
    """A pipeline stage's part of the screening time over the run (from /metrics deltas)."""

    stage: str
    items: int
    batch_mean: float
    queue_wait_ms: float  # mean per item
    service_ms: float  # mean per micro-batch: every item of the batch waits for all of it
    share: float  # (queue wait + service) / mean screening time


class RunResult(msgspec.Struct, frozen=True, kw_only=True):
    label: str
    target: str  # "edge" or "ceiling"
    mode: str  # "open" or "closed"
    rate: float | None = None  # open loop: the offered rate, requests/s
    concurrency: int | None = None  # closed loop: requests in flight
    seconds: float
    sent: int
    ok: int
    errors: dict[str, int]
    achieved_rps: float  # every answered request (errors included) per second
    ok_rps: float
    latency: Latency
    per_second: list[Second]
    stages: list[StageTime] | None = None
    screening_mean_ms: float | None = None  # the edge's own measure, from /metrics
    server_cpu_s: float | None = None  # the server's processes, over the measured window
    sender_cpu_s: float = 0.0  # the sender processes, over the whole run
    machine_busy: float | None = None  # share of all cores busy over the measured window
    # PostgreSQL, Redis and RabbitMQ on this machine, over the measured window
    services_cpu_s: dict[str, float] = {}

    @property
    def error_share(self) -> float:
        return (self.sent - self.ok) / self.sent if self.sent else 1.0


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest rank: the smallest value with at least a share `q` of values at or below it."""
    if not sorted_values:
        return math.nan
    rank = math.ceil(q * len(sorted_values))
    return sorted_values[min(len(sorted_values), max(rank, 1)) - 1]


def latency_of(values_ms: Iterable[float]) -> Latency:
    ordered = sorted(values_ms)
    points = {name: percentile(ordered, q) for name, q in PERCENTILES.items()}
    return Latency(**points, max=ordered[-1] if ordered else math.nan,
                   mean=math.fsum(ordered) / len(ordered) if ordered else math.nan)


def per_second(offsets_s: Sequence[float], latencies_ms: Sequence[float]) -> list[Second]:
    buckets: dict[int, list[float]] = {}
    for offset, latency in zip(offsets_s, latencies_ms, strict=True):
        buckets.setdefault(int(offset), []).append(latency)
    seconds = []
    for second in sorted(buckets):
        values = sorted(buckets[second])
        seconds.append(Second(second, len(values), percentile(values, 0.5),
                              percentile(values, 0.99)))
    return seconds


def merge_errors(parts: Iterable[dict[str, int]]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for part in parts:
        total.update(part)
    return dict(total.most_common())


def summarise(samples: Sequence[Samples], *, label: str, target: str, mode: str,
              seconds: float, rate: float | None = None,
              concurrency: int | None = None) -> RunResult:
    """Merge the sender processes' samples. Open loop: throughput over the time from the
    window's start to the last answer (late answers stretch it); closed loop: over the
    window (each worker stops sending at its end)."""
    offsets = [o for s in samples for o in s.offsets_s]
    latencies = [v for s in samples for v in s.latencies_ms]
    errors = merge_errors(s.errors for s in samples)
    sent = len(latencies)
    ok = sent - sum(errors.values())
    elapsed_s = seconds
    if mode == "open":
        elapsed_s = max([seconds, *(s.last_done_s for s in samples)])
    return RunResult(
        label=label, target=target, mode=mode, rate=rate, concurrency=concurrency,
        seconds=seconds, sent=sent, ok=ok, errors=errors, achieved_rps=sent / elapsed_s,
        ok_rps=ok / elapsed_s, latency=latency_of(latencies),
        per_second=per_second(offsets, latencies),
        sender_cpu_s=math.fsum(s.cpu_s for s in samples))
