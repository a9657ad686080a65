"""End-to-end benchmark of the screening endpoint, open and closed loop, against a bare
aiohttp ceiling measured in the same run (docs/benchmarking.md).

    make bench                                   # = .venv/bin/python -m loadtest.bench
    .venv/bin/python -m loadtest.bench --rates 100,500,1000,2000 --seconds 10
    .venv/bin/python -m loadtest.bench --mode closed --concurrency 64 --no-ceiling
    .venv/bin/python -m loadtest.bench --url http://127.0.0.1:8080 --token "$TOKEN"

By default it starts `sentinel serve` itself on a free port (with the environment's
SENTINEL_* settings), creates and funds its own accounts, sends from `--processes` sender
processes, stops the edge, then drives a bare aiohttp + uvloop server (`loadtest.ceiling`)
with the same load and reports the edge as a share of it. Open-loop latency is measured from
each request's *scheduled* send time (no coordinated omission). Results go to
`.cache/bench/bench-<time>.json` and `.png`, server logs to `.cache/bench/logs-<time>/`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
import urllib.error
import uuid
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, NamedTuple

import msgspec
import redis

from http_edge.auth import TokenIssuer
from loadtest import metrics, plot, report
from loadtest.accounts import SetupError, open_accounts
from loadtest.capacity import CONCURRENCY_STEPS, SearchRule, highest_rate_under, search_max
from loadtest.report import BenchDocument, TargetReport
from loadtest.results import RunResult, summarise
from loadtest.sender import ClosedJob, Job, OpenJob, SenderConfig
from loadtest.sender_pool import SenderError, SenderPool, start_time
from loadtest.servers import (
    ROOT,
    ServerError,
    ServerGroup,
    ceiling_group,
    drop_redis_keys,
    edge_group,
    free_port,
    machine_cpu_s,
    services_cpu_s,
    wait_listeners_settled,
)
from loadtest.workload import MIN_MERCHANTS, SimulatedClock, build_world
from ops.settings import load_settings

READY_TIMEOUT_S = 180.0
PAUSE_S = 1.0  # between runs: the server drains what the last one left queued


class Bench:
    """Runs jobs through the sender pool against one server and measures the server's side
    (its /metrics and CPU) around each run's measured window."""

    def __init__(self, pool: SenderPool, args: argparse.Namespace, run_id: str,
                 headers: dict[str, str]) -> None:
        self._pool = pool
        self._args = args
        self._run_id = run_id
        self._headers = headers

    def measure(self, target: str, url: str, server: ServerGroup | None, *,
                read_metrics: bool, rate: float | None = None, concurrency: int | None = None,
                seconds: float) -> RunResult:
        a = self._args
        label = f"{self._run_id}-{target[0]}" + (f"r{rate:g}" if rate else f"c{concurrency}")
        time.sleep(PAUSE_S)
        job: Job = (OpenJob(label, url, self._headers, rate, a.warmup_seconds, seconds,
                            start_time()) if rate else
                    ClosedJob(label, url, self._headers, concurrency or 1, a.warmup_seconds,
                              seconds, start_time()))
        self._pool.start(job)
        # The server's side is read when the measured window opens and once every answer is in.
        time.sleep(max(0.0, job.start_at + a.warmup_seconds - time.monotonic()))
        before = ServerSide.read(url if read_metrics else None, server)
        samples = self._pool.collect(a.warmup_seconds + seconds + a.timeout_s + 30)
        after = ServerSide.read(url if read_metrics else None, server)
        result = summarise(samples, label=label, target=target,
                           mode="open" if rate else "closed", seconds=seconds, rate=rate,
                           concurrency=concurrency)
        result = msgspec.structs.replace(result, **before.changes_until(after))
        print(f"[{target}] {report.run_line(result)}", flush=True)
        return result

    def target(self, target: str, description: str, url: str, server: ServerGroup | None,
               *, processes: int, read_metrics: bool = True) -> TargetReport:
        a = self._args
        out = TargetReport(target=target, description=description, server_processes=processes)
        if a.mode in ("open", "full"):
            out.runs = [self.measure(target, url, server, read_metrics=read_metrics, rate=r,
                                     seconds=a.seconds) for r in a.rates]
            best = highest_rate_under(out.runs, a.p99_limit_ms)
            out.highest_rate_under_limit = best.rate if best else None
        if a.mode == "closed":
            out.closed = self.measure(target, url, server, read_metrics=read_metrics,
                                      concurrency=a.concurrency, seconds=a.seconds)
        if a.mode in ("max", "full"):
            steps = [c for c in CONCURRENCY_STEPS if c <= a.max_concurrency]
            search = search_max(
                lambda c: self.measure(target, url, server, read_metrics=read_metrics,
                                       concurrency=c, seconds=a.step_seconds),
                SearchRule(max_p99_ms=a.max_p99_ms), steps)
            out.search_steps, out.search_best = search.steps, search.best
            out.search_stopped_because = search.stopped_because
        return out


class ServerSide(NamedTuple):
    """What the bench reads of the server around a run: its /metrics, its CPU, the machine's."""

    metrics: metrics.Metrics | None
    server_cpu_s: float | None
    machine: tuple[float, float]  # busy and total CPU seconds of the whole machine
    services: dict[str, float]  # CPU seconds of PostgreSQL, Redis, RabbitMQ on this machine

    @classmethod
    def read(cls, metrics_url: str | None, server: ServerGroup | None) -> ServerSide:
        return cls(_scrape(metrics_url) if metrics_url else None,
                   server.cpu_s() if server else None, machine_cpu_s(), services_cpu_s())

    def changes_until(self, later: ServerSide) -> dict[str, Any]:
        """The RunResult fields the server's side fills in, from this reading to `later`."""
        busy, total = (b - a for a, b in zip(self.machine, later.machine, strict=True))
        changes: dict[str, Any] = {"machine_busy": busy / total if total else None,
                                   "services_cpu_s": {name: later.services[name] - spent
                                                      for name, spent in self.services.items()}}
        if self.server_cpu_s is not None and later.server_cpu_s is not None:
            changes["server_cpu_s"] = later.server_cpu_s - self.server_cpu_s
        if self.metrics is not None and later.metrics is not None:
            change = metrics.delta(self.metrics, later.metrics)
            changes["stages"] = metrics.stage_times(change)
            changes["screening_mean_ms"] = metrics.screening_mean_ms(change)
        return changes


def _scrape(url: str) -> metrics.Metrics | None:
    try:
        return metrics.fetch(url)
    except (urllib.error.URLError, OSError) as exc:
        print(f"could not read {url}/metrics: {exc}", file=sys.stderr)
        return None


def _token(args: argparse.Namespace) -> str:
    if args.token:
        return str(args.token)
    s = load_settings()
    issuer = TokenIssuer(s.jwt_secret, issuer=s.jwt_issuer, audience=s.jwt_audience)
    return issuer.issue("loadtest-bench", ["admin"], ttl_s=24 * 3600)


def _run(args: argparse.Namespace, document: BenchDocument, log_dir: Path) -> None:
    run_id = uuid.uuid4().hex[:8]
    world = build_world(f"lb{run_id}", args.accounts, args.merchants, args.seed)
    headers = {"Authorization": f"Bearer {_token(args)}", "Content-Type": "application/json"}
    clock = (SimulatedClock.starting(args.history_days, args.time_speedup)
             if args.time_speedup > 0 else None)
    config = SenderConfig(world, args.connections, args.timeout_s, args.seed, clock)
    with contextlib.ExitStack() as stack:
        edge: ServerGroup | None = None
        url, processes = args.url, 1
        if url is None:
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            # Its own Redis namespace, dropped at the end: a run leaves ~100k keys (velocity
            # history lives 91 days) that would otherwise pile up in the developer's Redis.
            prefix = f"{load_settings().redis_prefix}-bench-{run_id}"
            stack.callback(_drop_redis_keys, prefix)
            edge = stack.enter_context(
                edge_group(port, args.edge_processes, log_dir, redis_prefix=prefix))
            print(f"starting sentinel serve on {url} (logs in {log_dir})", flush=True)
            edge.wait_ready(url + "/readyz", READY_TIMEOUT_S)
            processes = wait_listeners_settled(port)
        print(f"creating and funding {len(world.accounts):,} accounts", flush=True)
        body_bytes = asyncio.run(open_accounts(url, headers, world))
        pool = stack.enter_context(SenderPool(args.processes, config))
        bench = Bench(pool, args, run_id, headers)
        document.edge = bench.target(
            "edge", f"SentinelStream at {url}, "
            + (f"{processes} process(es) listening" if edge else "started elsewhere"),
            url, edge, processes=processes)
        if edge is not None:
            edge.stop()  # the ceiling gets the machine to itself
        if not args.no_ceiling:
            count = args.ceiling_processes or processes
            port = free_port()
            ceiling_url = f"http://127.0.0.1:{port}"
            group = stack.enter_context(ceiling_group(port, count, body_bytes, log_dir))
            group.wait_ready(ceiling_url + "/readyz", READY_TIMEOUT_S)
            document.ceiling = bench.target(
                "ceiling", f"bare aiohttp + uvloop, {count} process(es), constant "
                f"{body_bytes}-byte answer", ceiling_url, group, processes=count,
                read_metrics=False)
            group.stop()
            document.comparison = report.comparison_lines(document.edge, document.ceiling)


def _drop_redis_keys(prefix: str) -> None:
    try:
        dropped = drop_redis_keys(load_settings().redis_url, prefix)
    except redis.RedisError as exc:
        print(f"could not drop the run's Redis keys ({prefix}:*): {exc}", flush=True)
    else:
        print(f"dropped the run's {dropped:,} Redis keys ({prefix}:*)", flush=True)


def _rates(text: str) -> list[float]:
    try:
        rates = sorted({float(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give rates like 100,500,1000") from None
    if not rates or rates[0] <= 0:
        raise argparse.ArgumentTypeError("rates must be positive")
    return rates


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="loadtest.bench", description=__doc__.splitlines()[0])
    add = p.add_argument
    add("--mode", choices=("full", "open", "closed", "max"), default="full",
        help="full: the rate sweep and the max search (default); open: the sweep; "
             "closed: one run at --concurrency; max: the search")
    add("--rates", type=_rates, default=[100.0, 1000.0], help="open-loop rates, e.g. 100,1000")
    add("--rate", type=lambda t: _rates(t), dest="rates", help="one open-loop rate")
    add("--concurrency", type=int, default=64, help="closed mode: requests in flight")
    add("--seconds", type=float, default=10.0, help="measured seconds per run")
    add("--warmup-seconds", type=float, default=2.0,
        help="seconds sent before each run's measured window (not counted)")
    add("--step-seconds", type=float, default=5.0, help="measured seconds per search step")
    add("--max-concurrency", type=int, default=CONCURRENCY_STEPS[-1])
    add("--max-p99-ms", type=float, default=1000.0,
        help="the search stops at a step whose p99 exceeds this")
    add("--p99-limit-ms", type=float, default=200.0,
        help="report the highest rate whose p99 stays under this")
    add("--processes", type=int, default=2, help="sender processes")
    add("--connections", type=int, default=1000, help="connection limit per sender process")
    add("--timeout-s", type=float, default=10.0, help="per request")
    add("--accounts", type=int, default=5000,
        help="accounts (1-2 cards each); keep above the highest rate / 3, or the edge's "
             "per-card limit (3/s) answers 429")
    add("--merchants", type=int, default=500)
    add("--seed", type=int, default=1)
    add("--time-speedup", type=float, default=10_000.0,
        help="event time runs this many times faster than the wall clock, so each card's "
             "payments are hours apart as in real life, not seconds (0: real time)")
    add("--history-days", type=float, default=28.0,
        help="with --time-speedup: the event clock starts this many days ago")
    add("--url", help="bench a running server instead of starting one (base URL)")
    add("--token", help="bearer token for --url (default: minted from SENTINEL_JWT_SECRET)")
    add("--edge-processes", type=int,
        help="sets SENTINEL_PROCESSES for the edge it starts (default: the environment's)")
    add("--ceiling-processes", type=int, default=0,
        help="ceiling server processes (default: as many as the edge listens with)")
    add("--no-ceiling", action="store_true", help="skip the bare aiohttp ceiling")
    add("--out", default=str(ROOT / ".cache" / "bench"), help="folder for the results")
    return p


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM unwinds like Ctrl-C: every subprocess is stopped


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.processes < 1 or args.seconds <= 0 or args.warmup_seconds < 0:
        parser().error("--processes must be >= 1, --seconds > 0, --warmup-seconds >= 0")
    if args.time_speedup < 0 or args.history_days < 0:
        parser().error("--time-speedup and --history-days must be >= 0")
    if args.accounts < 1 or args.merchants < MIN_MERCHANTS:
        parser().error(f"--accounts must be >= 1 and --merchants >= {MIN_MERCHANTS}")
    signal.signal(signal.SIGTERM, _interrupt)
    # Also when started in the background by a script, where SIGINT comes in ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = Path(args.out)
    document = BenchDocument(
        started_at=stamp, git=report.git_state(ROOT), machine=report.machine(),
        settings={k: v for k, v in vars(args).items() if k != "token"},
        edge=TargetReport(target="edge", description="", server_processes=0))
    try:
        _run(args, document, out / f"logs-{stamp}")
    except KeyboardInterrupt:
        print("interrupted: servers and senders stopped", file=sys.stderr)
        return 130
    except (ServerError, SetupError, SenderError) as exc:
        print(f"loadtest.bench: {exc}", file=sys.stderr)
        return 1
    document.finished_at = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    document.machine["loadavg_end"] = report.machine()["loadavg"]
    print("\n" + report.text(document))
    report.write_json(out / f"bench-{stamp}.json", document)
    plot.write_png(out / f"bench-{stamp}.png", document, args.p99_limit_ms)
    print(f"\nwrote {out / f'bench-{stamp}.json'} and {out / f'bench-{stamp}.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
