"""One load-generating process: its own uvloop and lean HTTP client (loadtest/http1.py),
running the jobs its parent sends (open loop on a fixed schedule, or closed loop with N
workers) and answering each with the raw samples.

Open loop avoids coordinated omission: request k of a run is due at `start + k / rate` and
its latency is measured from then, even when it leaves late because the server (or this
process) is behind. Process p of P sends requests k = p, p + P, p + 2P, ... so together they
keep the exact rate.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import signal
import time
from array import array
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from multiprocessing.connection import Connection
from typing import NamedTuple

import httptools
import msgspec
import uvloop

from loadtest.http1 import Client
from loadtest.results import Samples
from loadtest.workload import EverydayPayments, SimulatedClock, World

PAYMENTS_PATH = "/v1/transactions"


class SenderConfig(NamedTuple):
    world: World
    connections: int  # keep-alive connections at most, per process
    timeout_s: float
    seed: int
    clock: SimulatedClock | None = None  # event times (None: the wall clock)


class OpenJob(NamedTuple):
    label: str  # unique per run: transaction ids and idempotency keys start with it
    url: str  # the server's base URL
    headers: dict[str, str]
    rate: float  # requests per second, all processes together
    warmup_s: float
    seconds: float
    start_at: float  # time.monotonic() of request 0 (CLOCK_MONOTONIC: shared by processes)


class ClosedJob(NamedTuple):
    label: str
    url: str
    headers: dict[str, str]
    concurrency: int  # all processes together
    warmup_s: float
    seconds: float
    start_at: float


Job = OpenJob | ClosedJob


def schedule(rate: float, duration_s: float, process: int, processes: int) -> Iterator[
        tuple[int, float]]:
    """(k, due offset in seconds) of this process's share of `rate` requests/s."""
    total = math.floor(rate * duration_s)
    for k in range(process, total, processes):
        yield k, k / rate


def workers_of(concurrency: int, process: int, processes: int) -> int:
    """This process's share of the closed-loop workers (the first ones take the remainder)."""
    return concurrency // processes + (process < concurrency % processes)


def error_kind(status: int, body: bytes) -> str:
    """`HTTP 503 overloaded`: the status and the problem+json `code` when there is one."""
    try:
        code = msgspec.json.decode(body).get("code")
    except (msgspec.DecodeError, AttributeError):
        code = None
    return f"HTTP {status} {code}" if isinstance(code, str) else f"HTTP {status}"


class Recorder:
    """The samples of one run in one process: only requests due inside the window count."""

    def __init__(self, window_start: float) -> None:
        self.window_start = window_start
        self.offsets_s = array("d")
        self.latencies_ms = array("d")
        self.errors: Counter[str] = Counter()
        self.last_done = window_start

    def record(self, due: float, done: float, error: str | None) -> None:
        if due < self.window_start:
            return
        self.offsets_s.append(due - self.window_start)
        self.latencies_ms.append((done - due) * 1000)
        self.last_done = max(self.last_done, done)
        if error is not None:
            self.errors[error] += 1

    def samples(self, cpu_s: float) -> Samples:
        return Samples(self.offsets_s, self.latencies_ms, dict(self.errors),
                       self.last_done - self.window_start, cpu_s)


class Sender:
    """Posts payments to a base URL; returns None for a 2xx, else the kind of error."""

    def __init__(self, config: SenderConfig, process: int) -> None:
        self._config = config
        self._payments = EverydayPayments(config.world, seed=config.seed * 1000 + process,
                                          clock=config.clock)
        self._encode = msgspec.json.Encoder().encode
        self._clients: dict[str, Client] = {}
        self._heads: dict[tuple[str, tuple[tuple[str, str], ...]], bytes] = {}

    def _prepared(self, url: str, headers: dict[str, str]) -> tuple[Client, bytes]:
        client = self._clients.get(url)
        if client is None:
            client = self._clients[url] = Client(url, limit=self._config.connections,
                                                 timeout_s=self._config.timeout_s)
        key = (url, tuple(headers.items()))
        head = self._heads.get(key)
        if head is None:
            head = self._heads[key] = client.head(
                PAYMENTS_PATH, {"Content-Type": "application/json", **headers})
        return client, head

    async def post(self, url: str, headers: dict[str, str], transaction_id: str,
                   k: int) -> str | None:
        """Send payment k (its number decides the account and card: see EverydayPayments)."""
        client, head = self._prepared(url, headers)
        body = self._encode(self._payments.body(transaction_id, k))
        try:
            response = await client.post(
                head, body, b"Idempotency-Key: %s\r\n" % transaction_id.encode())
        except TimeoutError:
            return "timeout"
        except (OSError, httptools.HttpParserError) as exc:
            return f"client {type(exc).__name__}"
        if response.status < 300:
            return None
        return error_kind(response.status, response.body)

    def close(self) -> None:
        for client in self._clients.values():
            client.close()


async def run_open(sender: Sender, job: OpenJob, process: int, processes: int) -> Recorder:
    recorder = Recorder(job.start_at + job.warmup_s)

    async def one(k: int, due: float) -> None:
        error = await sender.post(job.url, job.headers, f"{job.label}-{k}", k)
        recorder.record(due, time.monotonic(), error)

    async with asyncio.TaskGroup() as group:
        for k, offset in schedule(job.rate, job.warmup_s + job.seconds, process, processes):
            due = job.start_at + offset
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            group.create_task(one(k, due))
    return recorder


async def run_closed(sender: Sender, job: ClosedJob, process: int,
                     processes: int) -> Recorder:
    recorder = Recorder(job.start_at + job.warmup_s)
    end = job.start_at + job.warmup_s + job.seconds
    numbers = itertools.count(process, processes)  # this process's share of 0, 1, 2, ...

    async def worker() -> None:
        await asyncio.sleep(max(0.0, job.start_at - time.monotonic()))
        while (sent := time.monotonic()) < end:
            k = next(numbers)
            error = await sender.post(job.url, job.headers, f"{job.label}-{k}", k)
            recorder.record(sent, time.monotonic(), error)

    async with asyncio.TaskGroup() as group:
        for _ in range(workers_of(job.concurrency, process, processes)):
            group.create_task(worker())
    return recorder


async def serve_jobs(connection: Connection, config: SenderConfig, process: int,
                     processes: int) -> None:
    loop = asyncio.get_running_loop()
    sender = Sender(config, process)
    runners: dict[type, Callable[..., Awaitable[Recorder]]] = {
        OpenJob: run_open, ClosedJob: run_closed}
    try:
        while (job := await loop.run_in_executor(None, connection.recv)) is not None:
            cpu_before = time.process_time()
            recorder = await runners[type(job)](sender, job, process, processes)
            connection.send(recorder.samples(time.process_time() - cpu_before))
    finally:
        sender.close()


def main(connection: Connection, config: SenderConfig, process: int, processes: int) -> None:
    """The process's entry point. Ctrl-C is the parent's to handle: it stops us."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        uvloop.run(serve_jobs(connection, config, process, processes))
    except (EOFError, BrokenPipeError):
        pass  # the parent has gone: nothing left to answer
