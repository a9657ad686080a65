"""How long this machine's disk takes to flush a small write: the floor under every durable commit.

    .venv/bin/python -m loadtest.fsync_probe --seconds 300 --dir /var/lib/postgresql

Writes 8 KiB and `fdatasync`s it every 10 ms in `--dir` (put it on the filesystem of
PostgreSQL's WAL), prints each flush slower than `--slow-ms` with its wall-clock time, to line
up with the edge's `slow ledger call` warnings, then the percentiles. Run it beside a benchmark:
a stall that both show at the same instant is the disk's (BENCHMARKS.md, session 5).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from typing import TextIO

from loadtest.results import Latency, latency_of

BLOCK = os.urandom(8192)


def probe(directory: str, seconds: float, *, interval_s: float = 0.01, slow_ms: float = 20.0,
          out: TextIO = sys.stdout,
          now: Callable[[], datetime] = datetime.now) -> tuple[int, Latency]:
    """Flush for `seconds`; returns how many flushes and their latency (ms)."""
    latencies: list[float] = []
    with tempfile.NamedTemporaryFile(dir=directory, prefix="fsync-probe-") as file:
        fd = file.fileno()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            started = time.perf_counter()
            os.pwrite(fd, BLOCK, 0)
            os.fdatasync(fd)
            took_ms = (time.perf_counter() - started) * 1000
            latencies.append(took_ms)
            if took_ms > slow_ms:
                print(f"{now():%H:%M:%S.%f}"[:-3] + f" slow fdatasync {took_ms:.0f} ms",
                      file=out, flush=True)
            time.sleep(interval_s)
    return len(latencies), latency_of(latencies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--dir", default=".", help="a directory on the filesystem to probe")
    parser.add_argument("--slow-ms", type=float, default=20.0,
                        help="print every flush slower than this")
    args = parser.parse_args()
    if args.seconds <= 0:
        parser.error("--seconds must be > 0")
    n, latency = probe(args.dir, args.seconds, slow_ms=args.slow_ms)
    print(f"n={n} p50={latency.p50:.2f} p99={latency.p99:.2f} p99.9={latency.p99_9:.2f} "
          f"max={latency.max:.1f} ms")


if __name__ == "__main__":
    main()
