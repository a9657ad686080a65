"""The bench's PNG: latency percentiles against the offered rate, throughput against
closed-loop concurrency, and the edge's latency second by second (edge and ceiling)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.ticker import NullFormatter, ScalarFormatter

from loadtest.report import BenchDocument, TargetReport

_STYLE = {"edge": "-", "ceiling": "--"}
_MARKER = {"edge": "o", "ceiling": "s"}


def _plain_numbers(ax: Axes, *, x: bool = False) -> None:
    """Log axes labelled 20, 50, 100 rather than 2x10^1."""
    for axis in ([ax.xaxis] if x else []) + [ax.yaxis]:
        axis.set_major_formatter(ScalarFormatter())
        axis.set_minor_formatter(NullFormatter())


def _targets(document: BenchDocument) -> list[TargetReport]:
    return [document.edge] + ([document.ceiling] if document.ceiling else [])


def _nothing(ax: Axes, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what} in this run", ha="center", va="center",
            transform=ax.transAxes)
    ax.axis("off")


def _percentiles_vs_rate(ax: Axes, document: BenchDocument, limit_ms: float) -> None:
    if not document.edge.runs:
        return _nothing(ax, "open-loop runs")
    for target in _targets(document):
        runs = sorted(target.runs, key=lambda run: run.rate or 0.0)
        rates = [run.rate for run in runs]
        for name, color in (("p50", "tab:blue"), ("p99", "tab:orange"),
                            ("p99_9", "tab:red")):
            ax.plot(rates, [getattr(run.latency, name) for run in runs], _STYLE[target.target],
                    marker=_MARKER[target.target], color=color,
                    label=f"{target.target} {name.replace('_', '.')}")
    ax.axhline(limit_ms, color="grey", linewidth=0.8, linestyle=":",
               label=f"p99 limit {limit_ms:g} ms")
    ax.set(xlabel="offered rate (requests/s, open loop)", ylabel="latency from schedule (ms)",
           xscale="log", yscale="log", title="Latency vs offered rate")
    _plain_numbers(ax, x=True)
    ax.legend(fontsize=7)


def _throughput_vs_concurrency(ax: Axes, document: BenchDocument) -> None:
    if not (document.edge.search_steps or document.edge.closed):
        return _nothing(ax, "closed-loop runs")
    for target in _targets(document):
        steps = target.search_steps or ([target.closed] if target.closed else [])
        ax.plot([run.concurrency for run in steps], [run.ok_rps for run in steps],
                _STYLE[target.target], marker=_MARKER[target.target],
                label=f"{target.target} ok/s")
        if target.search_best is not None:
            best = target.search_best
            ax.annotate(f"{best.ok_rps:,.0f}/s", (best.concurrency or 0, best.ok_rps),
                        fontsize=7, textcoords="offset points", xytext=(4, 4))
    ax.set(xlabel="closed-loop concurrency", ylabel="answered OK per second", xscale="log",
           title="Closed loop: throughput vs concurrency")
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.legend(fontsize=7)


def _latency_over_time(ax: Axes, target: TargetReport) -> None:
    if not target.runs:
        return _nothing(ax, f"open-loop runs of the {target.target}")
    for run in target.runs:
        seconds = [s.second for s in run.per_second]
        line = ax.plot(seconds, [s.p99 for s in run.per_second], marker=".",
                       label=f"{run.rate:,.0f}/s p99")
        ax.plot(seconds, [s.p50 for s in run.per_second], linestyle=":",
                color=line[0].get_color(), label=f"{run.rate:,.0f}/s p50")
    ax.set(xlabel="second of the run (by scheduled send time)", ylabel="latency (ms)",
           yscale="log", title=f"{target.target}: latency over time, open loop")
    _plain_numbers(ax)
    ax.legend(fontsize=7)


def write_png(path: Path, document: BenchDocument, limit_ms: float) -> None:
    figure, axes = plt.subplots(2, 2, figsize=(13, 9))
    _percentiles_vs_rate(axes[0][0], document, limit_ms)
    _throughput_vs_concurrency(axes[0][1], document)
    _latency_over_time(axes[1][0], document.edge)
    if document.ceiling is not None:
        _latency_over_time(axes[1][1], document.ceiling)
    else:
        _nothing(axes[1][1], "ceiling")
    commit = (document.git.get("commit") or "?")[:10]
    figure.suptitle(f"SentinelStream bench {document.started_at} (commit {commit}, "
                    f"{document.machine.get('cpu_count')} CPUs)", fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
