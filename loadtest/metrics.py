"""The edge's `/metrics` read by the bench: Prometheus text parsed into samples, and each
pipeline stage's share of the screening time from the difference of two scrapes."""

from __future__ import annotations

import re
import urllib.request

from loadtest.results import StageTime

# name{labels} value; labels may hold escaped quotes and backslashes.
_LINE = re.compile(r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})?\s+(?P<value>\S+)')
_LABEL = re.compile(r'(?P<key>[a-zA-Z_][a-zA-Z0-9_]*)="(?P<value>(?:[^"\\]|\\.)*)"')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}

SampleKey = tuple[str, tuple[tuple[str, str], ...]]
Metrics = dict[SampleKey, float]


def _unescape(value: str) -> str:
    return re.sub(r'\\[\\"n]', lambda m: _UNESCAPE[m.group(0)], value)


def parse(text: str) -> Metrics:
    """Every sample of a Prometheus text exposition, keyed by name and sorted labels."""
    samples: Metrics = {}
    for line in text.splitlines():
        match = _LINE.match(line)
        if line.startswith("#") or match is None:
            continue
        labels = tuple(sorted((m["key"], _unescape(m["value"]))
                              for m in _LABEL.finditer(match["labels"] or "")))
        samples[(match["name"], labels)] = float(match["value"])
    return samples


def fetch(base_url: str, timeout_s: float = 5.0) -> Metrics:
    with urllib.request.urlopen(base_url + "/metrics", timeout=timeout_s) as response:
        return parse(response.read().decode())


def delta(before: Metrics, after: Metrics) -> Metrics:
    """after - before for every sample in `after` (counters and histogram parts)."""
    return {key: value - before.get(key, 0.0) for key, value in after.items()}


def _stage_value(samples: Metrics, name: str, stage: str) -> float:
    return samples.get((name, (("stage", stage),)), 0.0)


def _mean(samples: Metrics, name: str, labels: tuple[tuple[str, str], ...] = ()) -> float:
    count = samples.get((f"{name}_count", labels), 0.0)
    return samples.get((f"{name}_sum", labels), 0.0) / count if count else 0.0


def stage_names(samples: Metrics) -> list[str]:
    """Stages in the order the edge lists them (the pipeline's order)."""
    names: list[str] = []
    for name, labels in samples:
        if name == "sentinel_stage_queue_wait_ms_count":
            names += [value for key, value in labels if key == "stage"]
    return names


def screening_mean_ms(change: Metrics) -> float:
    return _mean(change, "sentinel_screening_ms")


def stage_times(change: Metrics) -> list[StageTime]:
    """Per stage over the interval: mean queue wait per item, mean service per micro-batch,
    mean batch size, and (wait + service) as a share of the mean screening time. The rest of
    the screening time is the edge's own work and the hand-offs between stages."""
    total_ms = screening_mean_ms(change)
    times = []
    for stage in stage_names(change):
        labels = (("stage", stage),)
        wait_ms = _mean(change, "sentinel_stage_queue_wait_ms", labels)
        service_ms = _mean(change, "sentinel_stage_service_ms", labels)
        times.append(StageTime(
            stage=stage,
            items=round(_stage_value(change, "sentinel_stage_queue_wait_ms_count", stage)),
            batch_mean=_mean(change, "sentinel_stage_batch_size", labels),
            queue_wait_ms=wait_ms, service_ms=service_ms,
            share=(wait_ms + service_ms) / total_ms if total_ms else 0.0))
    return times
