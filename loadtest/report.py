"""The bench's findings as text for the terminal and as a JSON document for machines: each
run's numbers, the max-throughput search, and the edge as a share of the ceiling."""

from __future__ import annotations

import math
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec

from loadtest.results import RunResult


class TargetReport(msgspec.Struct, kw_only=True):
    """Everything measured against one server (the edge, or the bare aiohttp ceiling)."""

    target: str
    description: str
    server_processes: int
    runs: list[RunResult] = msgspec.field(default_factory=list)  # open loop, by rate
    closed: RunResult | None = None  # --mode closed
    search_steps: list[RunResult] = msgspec.field(default_factory=list)
    search_best: RunResult | None = None
    search_stopped_because: str | None = None
    highest_rate_under_limit: float | None = None


class BenchDocument(msgspec.Struct, kw_only=True):
    started_at: str
    finished_at: str = ""
    git: dict[str, Any]
    machine: dict[str, Any]
    settings: dict[str, Any]
    edge: TargetReport
    ceiling: TargetReport | None = None
    comparison: list[str] = msgspec.field(default_factory=list)


def ms(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}/s"


def errors_text(run: RunResult) -> str:
    if not run.errors:
        return "errors: none"
    return "errors: " + ", ".join(f"{kind} x{count:,}" for kind, count in run.errors.items())


def run_line(run: RunResult) -> str:
    load = f"open {rate(run.rate)}" if run.mode == "open" else f"closed c={run.concurrency}"
    lat = run.latency
    cpu = "" if run.server_cpu_s is None else f"  server CPU {run.server_cpu_s:.1f} s"
    if run.machine_busy is not None:
        cpu += f"  machine {run.machine_busy:.0%} busy"
    if any(run.services_cpu_s.values()):
        cpu += "  " + " ".join(f"{name} {spent:.1f} s"
                               for name, spent in run.services_cpu_s.items())
    return (f"{load:<15} achieved {rate(run.achieved_rps):>9}  ok {run.ok:,}/{run.sent:,}  "
            f"p50 {ms(lat.p50)}  p95 {ms(lat.p95)}  p99 {ms(lat.p99)}  p99.9 {ms(lat.p99_9)}  "
            f"max {ms(lat.max)} ms  {errors_text(run)}{cpu}  sender CPU {run.sender_cpu_s:.1f} s")


def stage_lines(run: RunResult) -> list[str]:
    if not run.stages:
        return []
    lines = [f"    {'stage':<12} {'items':>8} {'batch':>6} {'wait ms':>8} {'service ms':>10}"
             f" {'share':>6}"]
    for s in run.stages:
        lines.append(f"    {s.stage:<12} {s.items:>8,} {s.batch_mean:>6.1f} "
                     f"{ms(s.queue_wait_ms):>8} {ms(s.service_ms):>10} {s.share:>6.0%}")
    if run.screening_mean_ms:
        rest = 1 - sum(s.share for s in run.stages)
        lines.append(f"    screening mean {ms(run.screening_mean_ms)} ms; edge and hand-offs "
                     f"outside the stages {max(rest, 0.0):.0%}")
    return lines


def target_lines(report: TargetReport) -> list[str]:
    lines = [f"{report.target}: {report.description}"]
    for run in [*report.runs, *([report.closed] if report.closed else [])]:
        lines += ["  " + run_line(run), *stage_lines(run)]
    if report.search_steps:
        lines.append("  max search (closed loop, concurrency raised step by step):")
        lines += ["    " + run_line(run) for run in report.search_steps]
        best = report.search_best
        lines.append(f"    stopped: {report.search_stopped_because}; best sustained "
                     + (f"{rate(best.ok_rps)} at c={best.concurrency}, p99 {ms(best.latency.p99)}"
                        f" ms" if best else "none"))
        lines += stage_lines(best) if best else []
    if report.runs:
        lines.append(f"  highest offered rate with p99 under the limit: "
                     f"{rate(report.highest_rate_under_limit)}")
    return lines


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.0%}" if b else "-"


def comparison_lines(edge: TargetReport, ceiling: TargetReport) -> list[str]:
    lines = []
    if edge.search_best and ceiling.search_best:
        e, c = edge.search_best.ok_rps, ceiling.search_best.ok_rps
        lines.append(f"edge max {e:,.0f} tx/s = {_ratio(e, c)} of bare aiohttp {c:,.0f} req/s")
    ceiling_by_rate = {run.rate: run for run in ceiling.runs}
    for run in edge.runs:
        other = ceiling_by_rate.get(run.rate)
        if other is None:
            continue
        lines.append(
            f"at {rate(run.rate)}: p50 {ms(run.latency.p50)} vs {ms(other.latency.p50)} ms, "
            f"p99 {ms(run.latency.p99)} vs {ms(other.latency.p99)} ms; achieved "
            f"{_ratio(run.ok_rps, other.ok_rps)} of the ceiling's")
    lines.append(f"highest rate with p99 under the limit: edge "
                 f"{rate(edge.highest_rate_under_limit)}, ceiling "
                 f"{rate(ceiling.highest_rate_under_limit)} (of the rates tried)")
    return lines


def text(document: BenchDocument) -> str:
    lines = target_lines(document.edge)
    if document.ceiling is not None:
        lines += ["", *target_lines(document.ceiling), "", "edge vs ceiling:"]
        lines += ["  " + line for line in document.comparison]
    return "\n".join(lines)


def git_state(root: Path) -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                                  timeout=10, check=True)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip()

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"),
            "dirty": None if status is None else bool(status)}


def machine() -> dict[str, Any]:
    return {"cpu_count": os.cpu_count(), "platform": platform.platform(),
            "machine": platform.machine(), "processor": platform.processor(),
            "python": sys.version.split()[0], "loadavg": list(os.getloadavg())}


def write_json(path: Path, document: BenchDocument) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(msgspec.json.format(msgspec.json.encode(document), indent=1))
