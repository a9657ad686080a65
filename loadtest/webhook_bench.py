"""Webhook delivery benchmark: ledger commit -> outbox relay -> RabbitMQ -> worker -> merchant.

    .venv/bin/python -m loadtest.webhook_bench --rate 1000 --seconds 10 --workers 1
    .venv/bin/python -m loadtest.webhook_bench --mode publish --messages 20000

`deliver` (default) creates a scratch database and its own AMQP prefix, serves a merchant
endpoint in-process (answers 200, notes each `webhook-id` and when it arrived), starts
`sentinel relay` and `--workers` copies of `sentinel worker webhooks` as subprocesses on
them, commits payments open loop at `--rate` (a batch through `Ledger.post_payments` every
~10 ms), waits for every event and prints throughput and the delay from `data.recorded_at` to
receipt, split at the commit, the relay's cursor (sampled every 5 ms) and the worker's
`attempted_at`, plus the CPU each process used (from /proc; `--profile DIR` runs the relay and
workers under cProfile instead). Relay and worker settings come from the usual `SENTINEL_*`
variables (prefetch, relay batch and poll).

`publish` compares, on one confirming channel to a scratch quorum queue, awaiting each
publisher confirm before the next publish with keeping a window of confirms in flight.

Both clean up everything they create (database, queues, processes), also on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import itertools
import os
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aio_pika
import asyncpg
import msgspec
import uvloop
from aio_pika.abc import AbstractChannel
from aiohttp import web

from ledger.migrate import drop_database, migrate
from ledger.records import AccountSpec, PaymentRecord, PaymentRequest
from ledger.repository import Ledger
from ops.settings import Settings, load_settings
from ops.workers import alert_queues, webhook_queues
from webhooks import events, topology
from webhooks.jobs import Job, publish
from webhooks.merchants import MerchantStore

TICK_S = 0.010
START_TIMEOUT_S = 60.0
_CLOCK_TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest rank, as in loadtest.bench."""
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


# -- CPU accounting from /proc: where the time went, without a profiler --------------------


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process (0 when it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * _CLOCK_TICK_S


def service_cpu_s(comm: str) -> float:
    """CPU seconds of every process called `comm` (postgres backends, beam.smp)."""
    total = 0.0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if (proc / "comm").read_text().strip() == comm:
                total += cpu_s(int(proc.name))
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


# -- The merchant's endpoint ----------------------------------------------------------------


@dataclass
class MerchantEndpoint:
    """`POST /hooks/{name}` answers 200 and notes (webhook-id, receipt time, body)."""

    received: list[tuple[str, float, bytes]] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    port: int = 0
    _missing: set[str] = field(default_factory=set)
    _complete: asyncio.Event = field(default_factory=asyncio.Event)
    _runner: web.AppRunner | None = None

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/{name}"

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        event_id = request.headers.get("webhook-id", "")
        self.received.append((event_id, time.time(), body))
        self.seen.add(event_id)
        if self._missing:
            self._missing.discard(event_id)
            if not self._missing:
                self._complete.set()
        return web.Response(text="ok")

    async def wait_all(self, event_ids: set[str], timeout_s: float,
                       check: Callable[[], None]) -> bool:
        """Wait until every id has arrived; False on timeout. `check` runs every second."""
        self._missing = event_ids - self.seen
        self._complete.clear()
        deadline = time.monotonic() + timeout_s
        while self._missing and time.monotonic() < deadline:
            check()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._complete.wait(), 1.0)
        return not self._missing

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hooks/{name}", self._hook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


# -- The relay and workers, as subprocesses ------------------------------------------------


@dataclass
class Fleet:
    """`sentinel relay` and N `sentinel worker webhooks`, logging to files in `log_dir`."""

    env: dict[str, str]
    log_dir: Path
    # Set: each process runs under cProfile and writes <name>.prof here when it exits
    # (cProfile slows it down a lot: for where the time goes, not for how fast).
    profile_dir: Path | None = None
    processes: dict[str, asyncio.subprocess.Process] = field(default_factory=dict)

    def _program(self, name: str) -> list[str]:
        if self.profile_dir is None:
            return [str(Path(sys.executable).parent / "sentinel")]
        return [sys.executable, "-m", "cProfile", "-o", str(self.profile_dir / f"{name}.prof"),
                "-m", "ops.cli"]

    async def start(self, workers: int) -> None:
        commands = {"relay": ["relay"]} | {
            f"worker{i + 1}": ["worker", "webhooks"] for i in range(workers)}
        for name, command in commands.items():
            with (self.log_dir / f"{name}.log").open("wb") as log:
                self.processes[name] = await asyncio.create_subprocess_exec(
                    *self._program(name), *command, env=self.env, stdout=log, stderr=log)

    def check(self) -> None:
        """Raise when a process has exited (with the end of its log)."""
        for name, process in self.processes.items():
            if process.returncode is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}:\n"
                                   f"{self.tail(name)}")

    def tail(self, name: str, lines: int = 15) -> str:
        text = (self.log_dir / f"{name}.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def cpu_s(self) -> dict[str, float]:
        return {name: cpu_s(p.pid) for name, p in self.processes.items()}

    async def stop(self, timeout_s: float = 40.0) -> None:
        for process in self.processes.values():
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        for name, process in self.processes.items():
            try:
                await asyncio.wait_for(process.wait(), timeout_s)
            except TimeoutError:
                print(f"{name} ignored SIGTERM for {timeout_s:.0f} s: killed")
                process.kill()
                await process.wait()


# -- Delivery mode --------------------------------------------------------------------------


def _db(url: str, name: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + name


@dataclass
class Workload:
    accounts: list[str]
    merchants: list[str]
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def payments(self, first: int, count: int, prefix: str = "t") -> list[PaymentRequest]:
        return [PaymentRequest(
            client_id="b", idem_key=f"{prefix}{i}", fingerprint="ab",
            transaction_id=f"{prefix}{i}", account_id=self.accounts[i % len(self.accounts)],
            card_id="c", merchant_id=self.merchants[i % len(self.merchants)], amount_minor=100,
            currency="EUR", merchant_category="misc", country="DE", lat=None, lon=None,
            event_time=self.now) for i in range(first, first + count)]


async def _prepare(pool: asyncpg.Pool, endpoint: MerchantEndpoint,
                   args: argparse.Namespace) -> Workload:
    ledger, store = Ledger(pool), MerchantStore(pool)
    workload = Workload(accounts=[f"a{i}" for i in range(args.accounts)],
                        merchants=[f"m{i}" for i in range(args.merchants)])
    for merchant in workload.merchants:
        await store.create(merchant, f"Bench {merchant}", webhook_url=endpoint.url(merchant),
                           category=None)
    for account in workload.accounts:
        await ledger.create_account(AccountSpec(account_id=account, currency="EUR",
                                                home_country="DE"))
        await ledger.post_deposit(client_id="b", idem_key=f"d-{account}", fingerprint=b"f",
                                  account_id=account, amount_minor=10**12, currency="EUR")
    return workload


async def _post(ledger: Ledger, payments: list[PaymentRequest]) -> None:
    for outcome in await ledger.post_payments(payments):
        if not isinstance(outcome, PaymentRecord):
            raise RuntimeError(f"payment not recorded: {outcome!r}")


async def _wait_subscribed(channel: AbstractChannel, queue: str, consumers: int,
                           fleet: Fleet) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        fleet.check()
        declared = await channel.declare_queue(queue, passive=True)
        if (declared.declaration_result.consumer_count or 0) >= consumers:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{consumers} consumers did not subscribe to {queue}")
        await asyncio.sleep(0.1)


@dataclass
class SendWindow:
    """What was committed when; wall-clock seconds (time.time), comparable with receipts."""

    started_s: float
    ended_s: float = 0.0
    committed: int = 0  # handed to a poster; all of them are committed once sending returns
    # Per batch: (first payment index, count, commit returned at).
    batches: list[tuple[int, int, float]] = field(default_factory=list)
    batch_ms: list[float] = field(default_factory=list)

    def committed_at(self) -> dict[str, float]:
        return {events.event_id(f"t{i}"): at_s for first, count, at_s in self.batches
                for i in range(first, first + count)}

    def behind_schedule_ms(self, rate: float) -> list[float]:
        """Per batch: how long after its last payment's scheduled time it was committed."""
        return sorted((at_s - self.started_s - (first + count) / rate) * 1000
                      for first, count, at_s in self.batches)


async def send_open_loop(ledger: Ledger, workload: Workload, args: argparse.Namespace,
                         check: Callable[[], None]) -> SendWindow:
    """Commit `args.rate` payments per second for `args.seconds`, open loop.

    Every ~10 ms the payments now due go out in batches of at most `args.batch_max`, with
    at most `args.posters` batches in flight (the ledger stage's shape); when all posters are
    busy the due payments wait and go out together. `check` runs every 100 ticks.
    """
    total = round(args.rate * args.seconds)
    started = time.perf_counter()
    window = SendWindow(started_s=time.time())
    slots = asyncio.Semaphore(args.posters)

    async def post(first: int, count: int) -> None:
        try:
            posted = time.perf_counter()
            await _post(ledger, workload.payments(first, count))
            window.batches.append((first, count, time.time()))
            window.batch_ms.append((time.perf_counter() - posted) * 1000)
        finally:
            slots.release()

    async with asyncio.TaskGroup() as group:
        tick = 0
        while window.committed < total:
            tick += 1
            if tick % 100 == 0:
                check()
            await asyncio.sleep(max(0.0, started + tick * TICK_S - time.perf_counter()))
            due = min(total, int(args.rate * (time.perf_counter() - started)))
            while window.committed < due:
                count = min(due - window.committed, args.batch_max)
                await slots.acquire()
                group.create_task(post(window.committed, count))
                window.committed += count
    window.ended_s = time.time()
    return window


@dataclass
class CursorSamples:
    """When the relay's cursor passed each (txid, id): sampled every `interval_s`.

    The relay moves its cursor once every publish of a batch is confirmed, so for an event
    this is "published and confirmed by" (to within the sampling interval)."""

    interval_s: float = 0.005
    keys: list[tuple[int, int]] = field(default_factory=list)
    at_s: list[float] = field(default_factory=list)
    events: list[tuple[int, int]] = field(default_factory=list)

    async def run(self, pool: asyncpg.Pool, stop: asyncio.Event) -> None:
        while not stop.is_set():
            row = await pool.fetchrow(
                "SELECT txid, id FROM relay_cursors WHERE source = 'transactions'")
            key = (int(row["txid"]), int(row["id"])) if row is not None else (0, 0)
            if not self.keys or key != self.keys[-1]:
                self.keys.append(key)
                self.at_s.append(time.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval_s)

    async def passed(self, pool: asyncpg.Pool) -> dict[str, float]:
        rows = await pool.fetch("SELECT transaction_id, txid, id FROM transactions "
                                "ORDER BY txid, id")
        self.events = [(int(row["txid"]), int(row["id"])) for row in rows]
        passed = {}
        for row, key in zip(rows, self.events, strict=True):
            index = bisect.bisect_left(self.keys, key)
            if index < len(self.keys):
                passed[events.event_id(row["transaction_id"])] = self.at_s[index]
        return passed

    def summary(self) -> str:
        """How often the cursor moved and by how many events (needs `passed` first)."""
        moved = [(at_s, bisect.bisect_right(self.events, key)
                  - bisect.bisect_right(self.events, previous))
                 for previous, key, at_s in zip(self.keys, self.keys[1:], self.at_s[1:],
                                                strict=False)]
        sizes = sorted(float(n) for _, n in moved if n > 0)
        gaps_ms = sorted((b[0] - a[0]) * 1000 for a, b in itertools.pairwise(moved))
        return (f"relay cursor: {len(sizes)} moves seen (sampled every "
                f"{self.interval_s * 1000:.0f} ms), events per move p50 "
                f"{percentile(sizes, 0.5):.0f} max {percentile(sizes, 1.0):.0f}; ms between "
                f"moves p50 {percentile(gaps_ms, 0.5):.0f} p90 {percentile(gaps_ms, 0.9):.0f} "
                f"max {percentile(gaps_ms, 1.0):.0f}")


def machine_cpu_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of all cores since boot, from /proc/stat."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle + iowait
    return (sum(ticks) - idle) * _CLOCK_TICK_S, sum(ticks) * _CLOCK_TICK_S


def _cpu_snapshot(fleet: Fleet) -> dict[str, float]:
    busy, total = machine_cpu_s()
    return {**fleet.cpu_s(), "bench": time.process_time(),
            "rabbitmq": service_cpu_s("beam.smp"), "postgres": service_cpu_s("postgres"),
            "machine busy": busy, "machine total": total}


def _milliseconds(values_s: list[float]) -> str:
    values = sorted(v * 1000 for v in values_s)
    return "  ".join(f"{name} {percentile(values, q):,.1f}" for name, q in
                     (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0)))


def report(endpoint: MerchantEndpoint, window: SendWindow, args: argparse.Namespace,
           relayed_s: dict[str, float], attempted_s: dict[str, float]) -> None:
    committed_s = window.committed_at()
    first: dict[str, tuple[float, bytes]] = {}
    receipts = 0
    for event_id, at_s, body in endpoint.received:
        if event_id in committed_s:
            receipts += 1
            first.setdefault(event_id, (at_s, body))
    recorded_s = {event_id: events.event_decoder.decode(body).data.recorded_at.timestamp()
                  for event_id, (_, body) in first.items()}
    sending_s = window.ended_s - window.started_s
    in_window = sum(1 for at_s, _ in first.values() if at_s <= window.ended_s)
    last_s = max((at_s for at_s, _ in first.values()), default=window.ended_s)
    overall_s = max(last_s - window.started_s, 1e-9)
    batch_ms = sorted(window.batch_ms)
    behind_ms = window.behind_schedule_ms(args.rate)
    print(f"committed: {window.committed} in {sending_s:.2f} s "
          f"({window.committed / sending_s:,.0f}/s) in {len(batch_ms)} batches; batch ms "
          f"p50 {percentile(batch_ms, 0.5):.1f} max {batch_ms[-1]:.1f}; commit behind "
          f"schedule ms p50 {percentile(behind_ms, 0.5):.1f} max {behind_ms[-1]:.1f}")
    print(f"received: {len(first)} unique, {receipts - len(first)} duplicates, "
          f"{window.committed - len(first)} missing; last one {last_s - window.ended_s:.2f} s "
          f"after sending ended")
    print(f"delivered: {in_window / sending_s:,.0f}/s during sending, "
          f"{len(first) / overall_s:,.0f}/s overall (first commit to last receipt); "
          f"per worker (divided by {args.workers}): {in_window / sending_s / args.workers:,.0f}"
          f"/s and {len(first) / overall_s / args.workers:,.0f}/s")
    segments = {
        "recorded_at -> receipt, ms": [at_s - recorded_s[e] for e, (at_s, _) in first.items()],
        "  recorded_at -> commit returned": [committed_s[e] - recorded_s[e] for e in first],
        "  commit returned -> relay confirmed": [relayed_s[e] - committed_s[e] for e in first
                                                 if e in relayed_s],
        "  relay confirmed -> worker attempt": [attempted_s[e] - relayed_s[e] for e in first
                                                if e in attempted_s and e in relayed_s],
        "  worker attempt -> receipt": [at_s - attempted_s[e] for e, (at_s, _) in first.items()
                                        if e in attempted_s]}
    for label, values_s in segments.items():
        print(f"{label:<38}{_milliseconds(values_s)}")


def report_cpu(before: dict[str, float], after: dict[str, float]) -> None:
    """Per process % of one core; the machine's busy share of all its cores."""
    delta = {name: after[name] - before[name] for name in before}
    wall_s = delta.pop("machine total") / (os.cpu_count() or 1)
    machine = delta.pop("machine busy") / (wall_s * (os.cpu_count() or 1)) * 100
    print(f"CPU from first commit to last receipt ({wall_s:.1f} s), % of one core: " + "  ".join(
        f"{name} {value / wall_s * 100:.0f}%" for name, value in delta.items())
        + f"; machine busy {machine:.0f}% of {os.cpu_count()} cores (all processes)")


async def _attempt_outcomes(pool: asyncpg.Pool) -> dict[str, int]:
    rows = await pool.fetch("SELECT outcome, count(*) AS n FROM webhook_attempts "
                            "GROUP BY outcome")
    return {row["outcome"]: row["n"] for row in rows}


async def _first_attempts(pool: asyncpg.Pool) -> dict[str, float]:
    """When a worker started each event's first attempt (its own clock, before the POST)."""
    rows = await pool.fetch("SELECT event_id, min(attempted_at) AS at FROM webhook_attempts "
                            "GROUP BY event_id")
    return {row["event_id"]: row["at"].timestamp() for row in rows}


def _subprocess_env(settings: Settings, app_url: str, admin_url: str,
                    prefix: str) -> dict[str, str]:
    # The relay and workers read the same SENTINEL_* tuning as this process, pointed at the
    # scratch database and queues.
    return {**os.environ, "SENTINEL_DATABASE_URL": app_url,
            "SENTINEL_ADMIN_DATABASE_URL": admin_url, "SENTINEL_AMQP_URL": settings.amqp_url,
            "SENTINEL_AMQP_PREFIX": prefix,
            # The bench's merchant endpoint listens on 127.0.0.1.
            "SENTINEL_WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true"}


async def _delete_queues(settings: Settings) -> None:
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        for queues in (webhook_queues(settings), alert_queues(settings)):
            await topology.delete(channel, queues)


async def run_delivery(args: argparse.Namespace) -> None:
    base = load_settings()
    run_id = uuid.uuid4().hex[:8]
    name, prefix = f"sentinel_bench_{run_id}", f"sentinel-bench-{run_id}"
    admin, app = _db(base.admin_database_url, name), _db(base.database_url, name)
    settings = msgspec.structs.replace(base, amqp_prefix=prefix)
    print(f"relay batch_max {settings.relay_batch_max}, poll {settings.relay_poll_ms} ms; "
          f"workers {args.workers}, prefetch {settings.webhook_prefetch}; "
          f"{args.merchants} merchants, {args.accounts} accounts; ledger batches <= "
          f"{args.batch_max}, {args.posters} in flight")
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(drop_database, admin)
        await migrate(admin, app)
        pool = await asyncpg.create_pool(app, min_size=1, max_size=args.posters + 1)
        stack.push_async_callback(pool.close)
        endpoint = MerchantEndpoint()
        await endpoint.start()
        stack.push_async_callback(endpoint.stop)
        workload = await _prepare(pool, endpoint, args)
        stack.push_async_callback(_delete_queues, settings)
        connection = await aio_pika.connect(settings.amqp_url)
        stack.push_async_callback(connection.close)
        channel = await connection.channel()
        await topology.declare(channel, webhook_queues(settings))
        log_dir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        fleet = Fleet(_subprocess_env(settings, app, admin, prefix), log_dir,
                      profile_dir=None if args.profile is None else Path(args.profile))
        stack.push_async_callback(fleet.stop)
        await fleet.start(args.workers)
        await _measure(args, pool, endpoint, workload, fleet, channel, settings)
        await fleet.stop()
        for worker in (n for n in fleet.processes if n.startswith("worker")):
            print(f"{worker}: {fleet.tail(worker, 1)}")


async def _measure(args: argparse.Namespace, pool: asyncpg.Pool, endpoint: MerchantEndpoint,
                   workload: Workload, fleet: Fleet, channel: AbstractChannel,
                   settings: Settings) -> None:
    ledger = Ledger(pool)
    await _wait_subscribed(channel, webhook_queues(settings).work, args.workers, fleet)
    # One event through the whole chain: the relay leads and the workers deliver.
    await _post(ledger, workload.payments(0, 1, prefix="warmup"))
    if not await endpoint.wait_all({events.event_id("warmup0")}, START_TIMEOUT_S, fleet.check):
        raise TimeoutError("the warm-up event was not delivered")
    cursor, sampling = CursorSamples(), asyncio.Event()
    async with asyncio.TaskGroup() as group:
        group.create_task(cursor.run(pool, sampling))
        try:
            before = _cpu_snapshot(fleet)
            window = await send_open_loop(ledger, workload, args, fleet.check)
            expected = set(window.committed_at())
            complete = await endpoint.wait_all(expected, args.timeout_s, fleet.check)
            after = _cpu_snapshot(fleet)
        finally:
            sampling.set()
    if not complete:
        print(f"TIMED OUT after {args.timeout_s:.0f} s: "
              f"{len(expected - endpoint.seen)} events not delivered")
    report(endpoint, window, args, await cursor.passed(pool), await _first_attempts(pool))
    print(cursor.summary())
    report_cpu(before, after)
    print(f"webhook_attempts by outcome: {await _attempt_outcomes(pool)}")


# -- Publish mode ---------------------------------------------------------------------------


def _sample_job(i: int) -> Job:
    now = datetime.now(UTC)
    body = events.encode(events.Event(
        id=events.event_id(f"p{i}"), type="transaction.approved", created_at=now,
        data=events.TransactionData(
            transaction_id=f"p{i}", merchant_id="m0", amount="1.00", currency="EUR",
            decision="approve", risk_score=0.12, reasons=[], event_time=now, recorded_at=now)))
    return Job(event_id=events.event_id(f"p{i}"), transaction_id=f"p{i}", merchant_id="m0",
               attempt=1, body=body)


async def publish_each(channel: AbstractChannel, queue: str, jobs: list[Job]) -> None:
    for job in jobs:
        await publish(channel, queue, job)


async def publish_windowed(channel: AbstractChannel, queue: str, jobs: list[Job],
                           window: int) -> None:
    for start in range(0, len(jobs), window):
        await asyncio.gather(*(publish(channel, queue, job)
                               for job in jobs[start:start + window]))


async def run_publish(args: argparse.Namespace) -> None:
    settings = load_settings()
    queue_name = f"sentinel-bench-{uuid.uuid4().hex[:8]}.publish"
    jobs = [_sample_job(i) for i in range(args.messages)]
    print(f"{args.messages} persistent messages of {len(jobs[0].body)} bytes + headers, "
          f"mandatory, to quorum queue {queue_name}, one connection, one channel")
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        queue = await channel.declare_queue(queue_name, durable=True,
                                            arguments={"x-queue-type": "quorum"})
        try:
            await publish_windowed(channel, queue_name, jobs[:args.window], args.window)
            await queue.purge()
            variants: list[tuple[str, Callable[[], Awaitable[None]]]] = [
                ("(a) await each confirm", lambda: publish_each(channel, queue_name, jobs)),
                (f"(b) {args.window} confirms in flight",
                 lambda: publish_windowed(channel, queue_name, jobs, args.window))]
            for label, send in variants:
                started, cpu, broker = (time.perf_counter(), time.process_time(),
                                        service_cpu_s("beam.smp"))
                await send()
                elapsed_s = time.perf_counter() - started
                print(f"{label}: {args.messages / elapsed_s:,.0f} messages/s "
                      f"({elapsed_s:.2f} s; CPU, % of one core: this process "
                      f"{(time.process_time() - cpu) / elapsed_s * 100:.0f}%, rabbitmq "
                      f"{(service_cpu_s('beam.smp') - broker) / elapsed_s * 100:.0f}%)")
                await queue.purge()
        finally:
            await channel.queue_delete(queue_name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("deliver", "publish"), default="deliver")
    parser.add_argument("--rate", type=float, default=1000.0, help="payments per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=1, help="webhook worker processes")
    parser.add_argument("--merchants", type=int, default=4)
    parser.add_argument("--accounts", type=int, default=200)
    ledger_stage = load_settings().stage("ledger")
    parser.add_argument("--posters", type=int, default=ledger_stage.workers,
                        help="ledger batches in flight (default: the ledger stage's workers)")
    parser.add_argument("--batch-max", type=int, default=ledger_stage.batch_max,
                        help="payments per ledger batch at most (default: the ledger stage's)")
    parser.add_argument("--timeout-s", type=float, default=120.0,
                        help="how long to wait for the last event after sending")
    parser.add_argument("--profile", metavar="DIR",
                        help="run the relay and workers under cProfile, writing DIR/<name>.prof")
    parser.add_argument("--messages", type=int, default=20_000, help="publish mode")
    parser.add_argument("--window", type=int, default=500,
                        help="publish mode: confirms in flight in (b)")
    args = parser.parse_args()
    uvloop.run(run_publish(args) if args.mode == "publish" else run_delivery(args))


if __name__ == "__main__":
    main()
