"""`sentinel serve` with SENTINEL_PROCESSES=2: a supervisor and two edge processes on one port,
run as a subprocess against the test database."""

from __future__ import annotations

import asyncio
import os
import re
import select
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

from ops.application import Application
from ops.settings import Settings
from ops.supervisor import RESTART_LIMIT_BURST, GaveUp, Supervisor, open_listeners
from tests.conftest import unique, wait_for

START_TIMEOUT_S = 60


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _series(text: str, series: str) -> float | None:
    """The value of one sample, e.g. `name{label="x"}`, in Prometheus text."""
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def _pids(text: str) -> set[int]:
    return {int(pid) for pid in re.findall(
        r'^sentinel_process_http_requests_total\{process="(\d+)"\}', text, re.MULTILINE)}


class Served:
    """A `sentinel serve` subprocess, its logs, and an HTTP session that opens a new
    connection per request (so the kernel spreads them over the edge processes)."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int, logs: Path,
                 session: aiohttp.ClientSession, settings: Settings) -> None:
        self.proc = proc
        self.base = f"http://127.0.0.1:{port}"
        self.logs = logs
        self.session = session
        token = Application(settings).tokens().issue("supervisor-test", ["admin"])
        self.auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def output(self, name: str) -> str:
        return (self.logs / name).read_text()

    async def get(self, path: str) -> tuple[int, str]:
        async with self.session.get(self.base + path) as response:
            return response.status, await response.text()

    async def post(self, path: str, body: dict[str, Any], **headers: str) -> tuple[int, Any]:
        async with self.session.post(self.base + path, data=msgspec.json.encode(body),
                                     headers={**self.auth, **headers}) as response:
            return response.status, await response.json(content_type=None)

    async def metrics(self) -> str:
        status, text = await self.get("/metrics")
        assert status == 200
        return text

    async def wait_pids(self, condition: Any, timeout_s: float = START_TIMEOUT_S) -> set[int]:
        """Wait until the process set `/metrics` reports satisfies `condition`."""
        found: set[int] = set()

        async def check() -> bool:
            nonlocal found
            try:
                found = _pids(await self.metrics())
            except aiohttp.ClientConnectionError:
                return False
            return bool(condition(found))

        await wait_for(check, timeout_s=timeout_s)
        return found

    async def pay(self, account: str, i: int) -> tuple[int, Any]:
        txn_id = f"{account}-t{i}"
        return await self.post("/v1/transactions", {
            "transaction_id": txn_id, "account_id": account, "card_id": f"c{i}",
            "merchant_id": "m", "amount": "1.00", "currency": "EUR",
            "merchant_category": "misc", "country": "DE",
            "timestamp": "2026-11-29T10:00:00Z"}, **{"Idempotency-Key": f"{txn_id}-k"})

    async def make_account(self) -> str:
        account = unique("acct")
        status, body = await self.post("/v1/accounts", {
            "account_id": account, "currency": "EUR", "home_country": "DE"})
        assert status == 201, body
        status, body = await self.post(f"/v1/accounts/{account}/deposits",
                                       {"amount": "100000.00", "currency": "EUR"},
                                       **{"Idempotency-Key": unique("d")})
        assert status == 201, body
        return account

    async def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.proc.wait(), 90)


def _env(settings: Settings, port: int, run_dir: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "SENTINEL_DATABASE_URL": settings.database_url,
            "SENTINEL_ADMIN_DATABASE_URL": settings.admin_database_url,
            "SENTINEL_REDIS_PREFIX": settings.redis_prefix,
            "SENTINEL_JWT_SECRET": settings.jwt_secret, "SENTINEL_HTTP_PORT": str(port),
            "SENTINEL_RUN_DIR": str(run_dir), "SENTINEL_LOG_LEVEL": "INFO",
            # A 2-core machine starting edge processes beside the load: no latency goals here.
            "SENTINEL_REQUEST_DEADLINE_MS": "5000", "SENTINEL_MODEL_FLAG_THRESHOLD": "0.999",
            "SENTINEL_PROCESSES": "2", **extra}


@asynccontextmanager
async def serving(settings: Settings, tmp_path: Path, *, port: int | None = None,
                  **extra: str) -> AsyncIterator[Served]:
    port = port or _free_port()
    logs = tmp_path / f"serve-{port}"
    logs.mkdir()
    with (open(logs / "stdout", "wb") as out,  # noqa: ASYNC230 - tiny, before anything runs
          open(logs / "stderr", "wb") as err):  # noqa: ASYNC230
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ops.cli", "serve",
            env=_env(settings, port, tmp_path / "run", **extra), stdout=out, stderr=err)
    connector = aiohttp.TCPConnector(force_close=True, limit=50)
    try:
        async with aiohttp.ClientSession(connector=connector) as session:
            yield Served(proc, port, logs, session, settings)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 90)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def test_two_processes_serve_and_any_of_them_reports_both(database, tmp_path):
    async with serving(database, tmp_path) as served:
        first = await served.wait_pids(lambda pids: len(pids) == 2)
        k = 40
        for _ in range(k):
            assert (await served.get("/openapi.json"))[0] == 200
        series = 'sentinel_http_requests_total{method="GET",route="/openapi.json",status="200"}'
        text = ""

        async def everyone_reports_k() -> bool:
            # A scrape on a new connection reaches whichever process the kernel picks; each
            # sees the others' numbers as they were at most a second ago.
            nonlocal text
            for _ in range(8):
                text = await served.metrics()
                if _series(text, series) != k:
                    return False
            return True

        await wait_for(everyone_reports_k, timeout_s=15)
        assert _series(text, "sentinel_edge_processes") == 2
        # Both answered requests (the kernel spreads new connections over them).
        assert all(_series(text, f'sentinel_process_http_requests_total{{process="{pid}"}}')
                   for pid in first), text
        assert _series(text, 'sentinel_stage_workers{stage="ledger"}') == 2 * (
            database.stage("ledger").workers)

        # A process that exits on its own is replaced; the counts it had are kept.
        victim = min(first)
        os.kill(victim, signal.SIGTERM)
        now = await served.wait_pids(lambda pids: len(pids) == 2 and victim not in pids)
        assert len(now & first) == 1
        assert _series(await served.metrics(), series) == k
        code = await served.stop()
    stderr = served.output("stderr")
    assert code == 0, stderr
    assert "exited unexpectedly" in stderr and "restarting slot" in stderr
    assert served.output("stdout").count("SentinelStream ready on") == 1
    assert not any((tmp_path / "run").iterdir())  # the supervisor cleans its run directory


async def test_sighup_replaces_every_process_without_a_failed_request(database, pool,
                                                                       tmp_path):
    async with serving(database, tmp_path) as served:
        before = await served.wait_pids(lambda pids: len(pids) == 2)
        account = await served.make_account()
        answered: list[int] = []
        failures: list[str] = []
        stop = asyncio.Event()
        numbers = iter(range(10**6))

        async def hammer() -> None:
            while not stop.is_set():
                i = next(numbers)
                try:
                    status, body = await served.pay(account, i)
                except aiohttp.ClientError as exc:
                    failures.append(f"{i}: {type(exc).__name__}: {exc}")
                    continue
                if status == 200:
                    answered.append(i)
                else:
                    failures.append(f"{i}: {status} {body}")

        clients = [asyncio.create_task(hammer()) for _ in range(4)]
        try:
            await wait_for(lambda: _at_least(answered, 20), timeout_s=30)
            served.proc.send_signal(signal.SIGHUP)
            after = await served.wait_pids(
                lambda pids: len(pids) == 2 and not pids & before, timeout_s=120)
            count = len(answered)
            await wait_for(lambda: _at_least(answered, count + 20), timeout_s=30)
        finally:
            stop.set()
            await asyncio.gather(*clients)
        assert failures == [], failures[:10]
        assert after.isdisjoint(before)
        assert "rolling restart done" in served.output("stderr")

        # SIGTERM during a burst: every accepted payment is answered and recorded.
        burst_account = await served.make_account()
        burst: list[str] = []
        refused = 0
        first_answers = asyncio.Event()

        async def pay(i: int) -> None:
            nonlocal refused
            try:
                status, body = await served.pay(burst_account, i)
            except aiohttp.ClientConnectionError:
                refused += 1  # never accepted: the listeners were already closed
                return
            if status == 200:
                burst.append(f"{burst_account}-t{i}")
                if len(burst) >= 20:
                    first_answers.set()
            else:
                assert status == 503, body
                refused += 1

        tasks = [asyncio.create_task(pay(i)) for i in range(300)]
        await asyncio.wait_for(first_answers.wait(), 30)
        served.proc.send_signal(signal.SIGTERM)
        await asyncio.gather(*tasks)
        code = await asyncio.wait_for(served.proc.wait(), 90)
    assert code == 0, served.output("stderr")
    recorded = {r["transaction_id"] for r in await pool.fetch(
        "SELECT transaction_id FROM transactions WHERE account_id = $1", burst_account)}
    assert recorded == set(burst)
    assert len(burst) + refused == 300
    hammered = await pool.fetchval(
        "SELECT count(*) FROM transactions WHERE account_id = $1", account)
    assert hammered == len(answered)


async def _at_least(items: list[int], n: int) -> bool:
    return len(items) >= n


async def test_start_up_failures_end_the_supervisor_with_an_error(database, tmp_path):
    # The port is held by a process without SO_REUSEPORT.
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        async with serving(database, tmp_path, port=port) as served:
            code = await asyncio.wait_for(served.proc.wait(), START_TIMEOUT_S)
        assert code == 1
        assert f"cannot listen on 127.0.0.1:{port}" in served.output("stderr")

    # The database does not answer: the first edge process fails, no other is started.
    nowhere = f"postgresql://sentinel_app@127.0.0.1:{_free_port()}/nowhere"
    async with serving(database, tmp_path, SENTINEL_DATABASE_URL=nowhere) as served:
        code = await asyncio.wait_for(served.proc.wait(), START_TIMEOUT_S)
    stderr = served.output("stderr")
    assert code == 1, stderr
    assert "failed to start" in stderr
    assert stderr.count("started (slot") == 1


async def test_one_process_needs_no_supervisor(database, tmp_path):
    async with serving(database, tmp_path, SENTINEL_PROCESSES="1") as served:
        async def ready() -> bool:
            try:
                return (await served.get("/healthz"))[0] == 200
            except aiohttp.ClientConnectionError:
                return False

        await wait_for(ready, timeout_s=START_TIMEOUT_S)
        text = await served.metrics()
        assert "sentinel_http_requests_total" in text
        assert "sentinel_edge_processes" not in text and "process=" not in text
        code = await served.stop()
    assert code == 0, served.output("stderr")
    assert "ops.supervisor" not in served.output("stderr")
    assert not (tmp_path / "run").exists()


def test_every_slot_listens_on_the_same_port():
    first = open_listeners("127.0.0.1", 0)
    port = first[0].getsockname()[1]
    second = open_listeners("127.0.0.1", port)
    try:
        assert [s.getsockname() for s in first + second] == [("127.0.0.1", port)] * 2
        assert all(s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) for s in first + second)
    finally:
        for sock in first + second:
            sock.close()


def test_a_burst_of_connections_waits_in_the_backlog_instead_of_being_dropped():
    # 300 clients connect at once while the edge accepts nobody (busy): with aiohttp's
    # default backlog of 128 the kernel drops the rest of the SYNs and those clients stall for
    # the 1 s retransmission; all of them must complete their handshake at once.
    somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
    if somaxconn < 300:
        pytest.skip(f"net.core.somaxconn is {somaxconn}: the kernel caps every backlog there")
    [listener] = open_listeners("127.0.0.1", 0)
    clients = []
    try:
        for _ in range(300):
            client = socket.socket()
            clients.append(client)
            client.setblocking(False)
            client.connect_ex(listener.getsockname())
        _, writable, _ = select.select([], clients, [], 0.5)
        assert sum(c.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
                   for c in writable) == 300
    finally:
        for sock in [listener, *clients]:
            sock.close()


def test_crashes_are_restarted_later_and_later_until_the_supervisor_gives_up(settings):
    supervisor = Supervisor(settings)
    delays = []
    for _ in range(RESTART_LIMIT_BURST - 1):
        supervisor._note_crash(0)
        delays.append(round(supervisor.restart_at[0] - time.monotonic(), 1))
    assert delays == [0.5, 1.0, 2.0, 4.0]
    with pytest.raises(GaveUp, match="giving up"):
        supervisor._note_crash(1)


# The supervisor's own logic, in this process, with stand-ins for the edge processes.
STAND_IN = r"""
import os, signal, sys
mode = sys.argv[1]
ready_fd = int(sys.argv[sys.argv.index("--ready-fd") + 1])
if mode == "fail":
    sys.exit(3)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
os.write(ready_fd, b"ready\n")
os.close(ready_fd)
if mode == "crash":
    sys.exit(1)
while True:
    signal.pause()
"""


def _supervisor(settings: Settings, tmp_path: Path, mode: str, processes: int = 2) -> Supervisor:
    settings = msgspec.structs.replace(settings, processes=processes, http_port=0,
                                       run_dir=str(tmp_path / "run"), shutdown_timeout_s=1.0)
    return Supervisor(settings, command=[sys.executable, "-c", STAND_IN, mode])


def _pids_of(supervisor: Supervisor) -> set[int]:
    return {child.pid for child in supervisor.children if child.ready}


async def test_stand_ins_are_replaced_on_sighup_and_after_a_crash(settings, tmp_path,
                                                                  monkeypatch):
    monkeypatch.setattr("ops.supervisor.RESTART_BACKOFF_S", 0.01)
    supervisor = _supervisor(settings, tmp_path, "serve")
    await supervisor.startup()
    main_loop = asyncio.create_task(supervisor.main_loop())
    try:
        first = _pids_of(supervisor)
        assert len(first) == 2 and supervisor.port != 0

        supervisor.should_reload.set()

        async def replaced(old: set[int]) -> bool:
            pids = _pids_of(supervisor)
            return len(pids) == 2 and not pids & old

        await wait_for(lambda: replaced(first), timeout_s=30)
        second = _pids_of(supervisor)
        os.kill(min(second), signal.SIGKILL)
        await wait_for(lambda: replaced({min(second)}), timeout_s=30)
        assert len(_pids_of(supervisor) & second) == 1
        assert supervisor.crashes and not supervisor.restart_at
    finally:
        supervisor.should_exit.set()
        await main_loop
        clean = await supervisor.shutdown()
    assert clean
    assert not any((tmp_path / "run").iterdir())


async def test_stand_ins_that_keep_crashing_make_the_supervisor_give_up(settings, tmp_path,
                                                                        monkeypatch):
    monkeypatch.setattr("ops.supervisor.RESTART_BACKOFF_S", 0.01)
    supervisor = _supervisor(settings, tmp_path, "crash")
    try:
        await supervisor.startup()
        with pytest.raises(GaveUp, match="giving up"):
            await asyncio.wait_for(supervisor.main_loop(), 60)
    finally:
        await supervisor.shutdown()
    assert len(supervisor.crashes) == RESTART_LIMIT_BURST


async def test_a_stand_in_failing_at_start_up_stops_everything(settings, tmp_path):
    supervisor = _supervisor(settings, tmp_path, "fail", processes=3)
    with pytest.raises(GaveUp, match="failed to start"):
        await supervisor.startup()
    assert await supervisor.shutdown()
    assert supervisor.children == []
