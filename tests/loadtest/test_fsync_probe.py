"""The disk-flush probe: it flushes for as long as asked, reports ordered percentiles, prints
the slow flushes with their time, and leaves nothing behind."""

from __future__ import annotations

import io
from datetime import datetime
from pathlib import Path

from loadtest.fsync_probe import probe


def test_it_measures_flushes_and_cleans_up(tmp_path: Path) -> None:
    out = io.StringIO()
    n, latency = probe(str(tmp_path), 0.2, interval_s=0.001, slow_ms=-1.0, out=out,
                       now=lambda: datetime(2026, 11, 29, 20, 5, 41, 223000))
    assert n >= 5
    assert 0 < latency.p50 <= latency.p99 <= latency.p99_9 <= latency.max
    lines = out.getvalue().splitlines()
    assert len(lines) == n  # slow_ms < 0: every flush is reported
    assert lines[0].startswith("20:05:41.223 slow fdatasync ")
    assert list(tmp_path.iterdir()) == []


def test_only_flushes_over_the_threshold_are_printed(tmp_path: Path) -> None:
    out = io.StringIO()
    probe(str(tmp_path), 0.05, interval_s=0.001, slow_ms=60_000, out=out)
    assert out.getvalue() == ""
