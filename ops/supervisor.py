"""`sentinel serve` with SENTINEL_PROCESSES > 1: N edge processes on one port, supervised.

Each edge process is an ordinary `Application` (its own uvloop, pools and pipeline), started as
`python -m ops.cli serve` with hidden options that make it a child. A subprocess, not
`multiprocessing`: the child is exactly the program an operator runs (same imports, same
settings read from the same environment, nothing pickled across), and signals, exit codes and
logs are those of any process.

The supervisor, not the children, opens the listening sockets: one SO_REUSEPORT socket (per
address) for each child *slot*, passed to the child by file descriptor. The kernel spreads new
connections over the slots as it would over sockets the children bound themselves, but a slot's
socket outlives the child using it. That is what makes a rolling restart lossless: the new
child accepts from the very socket the old one stops accepting from, so nothing queued in its
backlog is reset (closing a listener of a SO_REUSEPORT group resets the connections waiting in
its queue unless `net.ipv4.tcp_migrate_req` is on). A crashed child's sockets are closed at
once instead, so new connections go to the slots still served, not to a queue nobody reads.

    supervisor --SIGTERM--> child (each drains: stops intake, answers what it accepted, exits 0)
               <--"ready"-- child, on a pipe, once it serves (a /healthz probe on the shared
                            port could be answered by any child)

Signals: SIGTERM/SIGINT stop every child and then the supervisor (exit 0 when all exited
cleanly); SIGHUP replaces the children one at a time (start the new one, wait for it to be
ready, then stop the old one). A child that exits on its own is restarted after a backoff; at
start-up, or after RESTART_LIMIT_BURST unexpected exits within RESTART_LIMIT_INTERVAL_S, the
supervisor gives up and exits 1 (a process manager above it decides what next).
Children start in their own session, so a terminal's Ctrl-C reaches the supervisor alone, and
each child stops by itself if the supervisor disappears (SIGKILL) without telling it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO, TypeVar

from ops.banner import ready_banner
from ops.metrics_share import MetricsShare
from ops.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

# A child has this long to report ready: the first start on a fresh machine trains the
# embedded default model (seconds) and compiles the forest kernels.
CHILD_READY_TIMEOUT_S = 120.0
# Unexpected exits: restart after 0.5 s, 1 s, 2 s, ... at most 10 s; give up at the fifth
# within a minute (systemd's StartLimitBurst / StartLimitIntervalSec, in spirit).
RESTART_BACKOFF_S = 0.5
RESTART_BACKOFF_MAX_S = 10.0
RESTART_LIMIT_BURST = 5
RESTART_LIMIT_INTERVAL_S = 60.0
# A stopping child may take shutdown_timeout_s to answer what it accepted and as long again
# to drain its pipeline; after both and this margin it is killed.
STOP_MARGIN_S = 5.0
# Connections the kernel queues per listening socket until a process accepts them. aiohttp's
# default of 128 overflowed when a client opened a few hundred connections at once while the
# edge was busy (`nstat` TcpExtListenOverflows): each dropped SYN is retried after 1 s, a
# 1-1.4 s stall with the machine idle (BENCHMARKS.md, session 4). Capped by net.core.somaxconn.
LISTEN_BACKLOG = 1024
# An edge process; the supervisor appends the hidden options (tests start stand-ins).
EDGE_COMMAND = (sys.executable, "-m", "ops.cli", "serve")
PARENT_POLL_S = 1.0


class GaveUp(Exception):
    """The edge processes cannot be kept running; the message says why."""


def open_listeners(host: str, port: int) -> list[socket.socket]:
    """Listening SO_REUSEPORT sockets on `host`:`port`, one per address `host` resolves to
    (as asyncio binds them); port 0 picks one free port for all of them."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                               flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((address[0], port, *address[2:]))
            sock.listen(LISTEN_BACKLOG)
            port = sock.getsockname()[1]
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


@dataclass(frozen=True)
class Supervision:
    """What an edge process started by the supervisor is given (hidden `serve` options)."""

    listen_fds: tuple[int, ...]
    ready_fd: int
    metrics_dir: str
    parent_pid: int = field(default_factory=os.getppid)

    def sockets(self) -> list[socket.socket]:
        return [socket.socket(fileno=fd) for fd in self.listen_fds]

    def report_ready(self) -> None:
        # A closed pipe means the supervisor stopped waiting: it is stopping this process.
        with contextlib.suppress(BrokenPipeError):
            os.write(self.ready_fd, b"ready\n")
        os.close(self.ready_fd)

    async def wait_exit(self, should_exit: asyncio.Event) -> None:
        """Until `should_exit` is set, or the supervisor is gone (then it sets it): one killed
        with SIGKILL forwards no SIGTERM, and its children must not serve on forever."""
        while not should_exit.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(should_exit.wait(), PARENT_POLL_S)
            if os.getppid() != self.parent_pid:
                log.warning("supervisor %d is gone: shutting down", self.parent_pid)
                should_exit.set()


@dataclass(eq=False)
class Child:
    slot: int
    process: asyncio.subprocess.Process
    exited: asyncio.Task[int]
    ready: bool = False
    # Being stopped on purpose: its exit is no crash.
    retiring: bool = False

    @property
    def pid(self) -> int:
        return self.process.pid

    def terminate(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.terminate()

    def exited_cleanly(self) -> bool:
        # SIGTERM before it installed its handlers: it had not accepted anything yet.
        code = self.process.returncode
        return code == 0 or (not self.ready and code == -signal.SIGTERM)


async def _wait_ready(pipe: BinaryIO) -> bool:
    """True when the child writes "ready" on the pipe; False at EOF (it exited first)."""
    reader = asyncio.StreamReader()
    transport, _ = await asyncio.get_running_loop().connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), pipe)
    try:
        return await reader.readline() == b"ready\n"
    finally:
        transport.close()


class Supervisor:
    """uvicorn-style like the Application: `serve()` = `startup()` -> `main_loop()` ->
    `shutdown()`; signal handlers only set `should_exit` or `should_reload`."""

    def __init__(self, settings: Settings, *, command: Sequence[str] = EDGE_COMMAND) -> None:
        self.settings = settings
        self.command = tuple(command)
        self.should_exit = asyncio.Event()
        self.should_reload = asyncio.Event()
        self.children: list[Child] = []
        self.listeners: dict[int, list[socket.socket]] = {}
        self.port = settings.http_port
        self.share: MetricsShare | None = None
        self.crashes: deque[float] = deque()
        self.restart_at: dict[int, float] = {}  # slot -> time.monotonic()
        self.stop_timeout_s = 2 * settings.shutdown_timeout_s + STOP_MARGIN_S

    # --- start-up and the main loop -----------------------------------------------------------

    async def startup(self) -> None:
        s = self.settings
        try:
            for slot in range(s.processes):
                self._listeners(slot)
        except OSError as exc:
            raise GaveUp(f"cannot listen on {s.http_host}:{self.port}: {exc}") from None
        try:
            self.share = MetricsShare.create(s.run_dir)
        except OSError as exc:
            raise GaveUp(f"cannot create a directory in SENTINEL_RUN_DIR={s.run_dir!r}: "
                         f"{exc}") from None
        # The first alone: on a fresh machine it trains and caches the embedded default
        # model, which the others then load instead of all training it at once.
        started = [await self._start(0)]
        if started[0] is not None and s.processes > 1:
            started += await asyncio.gather(*(self._start(slot)
                                              for slot in range(1, s.processes)))
        if None in started and not self.should_exit.is_set():
            raise GaveUp("an edge process failed to start (its log is above)")

    async def main_loop(self) -> None:
        while not self.should_exit.is_set():
            await self._wait_for_news()
            if self.should_exit.is_set():
                break
            self._reap_crashed()
            await self._restart_due()
            if self.should_reload.is_set():
                self.should_reload.clear()
                await self.rolling_restart()

    async def _wait_for_news(self) -> None:
        """Until a signal, an unexpected exit, or the next restart is due."""
        signals = [asyncio.ensure_future(self.should_exit.wait()),
                   asyncio.ensure_future(self.should_reload.wait())]
        exits = [child.exited for child in self.children if not child.retiring]
        timeout_s = (max(0.0, min(self.restart_at.values()) - time.monotonic())
                     if self.restart_at else None)
        try:
            await asyncio.wait([*signals, *exits], timeout=timeout_s,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in signals:
                waiter.cancel()
            await asyncio.wait(signals)

    def _reap_crashed(self) -> None:
        for child in [c for c in self.children if c.exited.done() and not c.retiring]:
            log.error("edge process %d (slot %d) exited unexpectedly with code %s", child.pid,
                      child.slot, child.process.returncode)
            self._forget(child)
            self._note_crash(child.slot)

    def _note_crash(self, slot: int) -> None:
        """Schedule the slot's restart after a backoff, or give up."""
        if not any(child.slot == slot for child in self.children):
            # Sockets nobody accepts on would hold connections: let the others take them.
            for sock in self.listeners.pop(slot, []):
                sock.close()
        now = time.monotonic()
        self.crashes.append(now)
        while self.crashes and self.crashes[0] < now - RESTART_LIMIT_INTERVAL_S:
            self.crashes.popleft()
        if len(self.crashes) >= RESTART_LIMIT_BURST:
            raise GaveUp(f"{len(self.crashes)} edge processes exited unexpectedly within "
                         f"{RESTART_LIMIT_INTERVAL_S:g} s: giving up")
        delay_s = min(RESTART_BACKOFF_MAX_S, RESTART_BACKOFF_S * 2 ** (len(self.crashes) - 1))
        self.restart_at[slot] = now + delay_s
        log.warning("restarting slot %d in %.1f s", slot, delay_s)

    async def _restart_due(self) -> None:
        for slot, at in sorted(self.restart_at.items()):
            if at > time.monotonic() or self.should_exit.is_set():
                continue
            del self.restart_at[slot]
            if await self._start(slot) is None and not self.should_exit.is_set():
                self._note_crash(slot)

    async def rolling_restart(self) -> None:
        """Replace every child, one at a time: the port never stops answering."""
        old = sorted((c for c in self.children if c.ready and not c.retiring),
                     key=lambda c: c.slot)
        log.info("rolling restart of %d edge processes", len(old))
        for child in old:
            if self.should_exit.is_set():
                return
            if child.exited.done():
                continue  # crashed meanwhile: restarted as such
            if await self._start(child.slot) is None:
                if not self.should_exit.is_set():
                    log.error("rolling restart stopped: the new process for slot %d did not "
                              "start; the others keep serving", child.slot)
                return
            await self._stop(child)
        log.info("rolling restart done: edge processes %s",
                 ", ".join(str(c.pid) for c in self.children))

    # --- children -----------------------------------------------------------------------------

    def _listeners(self, slot: int) -> list[socket.socket]:
        if slot not in self.listeners:
            self.listeners[slot] = open_listeners(self.settings.http_host, self.port)
            self.port = self.listeners[slot][0].getsockname()[1]
        return self.listeners[slot]

    async def _spawn(self, slot: int) -> tuple[Child, int]:
        assert self.share is not None
        fds = [sock.fileno() for sock in self._listeners(slot)]
        read_fd, write_fd = os.pipe()
        try:
            process = await asyncio.create_subprocess_exec(
                *self.command, "--ready-fd", str(write_fd),
                "--metrics-dir", str(self.share.directory),
                *(f"--listen-fd={fd}" for fd in fds),
                pass_fds=(*fds, write_fd), start_new_session=True)
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        child = Child(slot, process, asyncio.create_task(process.wait(), name=f"edge-{slot}"))
        self.children.append(child)
        log.info("edge process %d started (slot %d)", child.pid, slot)
        return child, read_fd

    async def _start(self, slot: int) -> Child | None:
        """A new child on the slot, once it reports ready; None if it could not start, exited
        or hung first (it is then stopped), or the supervisor is stopping (shutdown stops it)."""
        try:
            child, ready_fd = await self._spawn(slot)
        except OSError as exc:
            log.error("cannot start an edge process for slot %d: %s", slot, exc)
            return None
        with os.fdopen(ready_fd, "rb", buffering=0) as pipe:
            ready = await self._until(_wait_ready(pipe), CHILD_READY_TIMEOUT_S)
        if ready:
            child.ready = True
            return child
        if not self.should_exit.is_set():
            if child.exited.done():
                log.error("edge process %d exited with code %s before it was ready",
                          child.pid, child.process.returncode)
            else:
                log.error("edge process %d not ready after %g s: stopping it", child.pid,
                          CHILD_READY_TIMEOUT_S)
            await self._stop(child)
        return None

    async def _until(self, coro: Coroutine[Any, Any, T], timeout_s: float) -> T | None:
        """`coro`'s result, or None when the timeout passes or should_exit is set first."""
        task = asyncio.ensure_future(coro)
        stop = asyncio.ensure_future(self.should_exit.wait())
        try:
            await asyncio.wait([task, stop], timeout=timeout_s,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            task.cancel()
            await asyncio.wait([task, stop])
        return None if task.cancelled() else task.result()

    async def _stop(self, child: Child) -> None:
        """SIGTERM (the child drains), SIGKILL if it is still there after stop_timeout_s."""
        child.retiring = True
        child.terminate()
        try:
            await asyncio.wait_for(asyncio.shield(child.exited), self.stop_timeout_s)
        except TimeoutError:
            log.error("edge process %d still running %g s after SIGTERM: killing it",
                      child.pid, self.stop_timeout_s)
            child.process.kill()
            await child.exited
        log.info("edge process %d (slot %d) stopped with code %s", child.pid, child.slot,
                 child.process.returncode)
        self._forget(child)

    def _forget(self, child: Child) -> None:
        """Drop an exited child, keeping its counters in the metrics' retired totals."""
        self.children.remove(child)
        if self.share is not None:
            try:
                self.share.retire(child.pid)
            except OSError as exc:
                log.warning("metrics: cannot retire process %d: %s", child.pid, exc)

    # --- shutdown -----------------------------------------------------------------------------

    async def shutdown(self) -> bool:
        """Stop every child (SIGTERM, then SIGKILL after stop_timeout_s); True when all exited
        cleanly."""
        children = list(self.children)
        for child in children:
            child.retiring = True
            child.terminate()
        # The children close their copies as they stop: the port then refuses connections.
        for sockets in self.listeners.values():
            for sock in sockets:
                sock.close()
        self.listeners.clear()
        if children:
            _, late = await asyncio.wait([c.exited for c in children],
                                         timeout=self.stop_timeout_s)
            for child in children:
                if child.exited in late:
                    log.error("edge process %d still running %g s after SIGTERM: killing it",
                              child.pid, self.stop_timeout_s)
                    child.process.kill()
            await asyncio.wait([c.exited for c in children])
        clean = True
        for child in children:
            if not child.exited_cleanly():
                log.error("edge process %d exited with code %s", child.pid,
                          child.process.returncode)
                clean = False
        if self.share is not None:
            self.share.remove()
        return clean

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.should_exit.set)
        loop.add_signal_handler(signal.SIGHUP, self.should_reload.set)

    async def serve(self) -> int:
        """Run until SIGTERM/SIGINT; the process's exit status."""
        self.install_signal_handlers()
        failed = False
        try:
            await self.startup()
            if not self.should_exit.is_set():
                log.info("SentinelStream ready on http://%s:%d with %d edge processes: %s",
                         self.settings.http_host, self.port, len(self.children),
                         ", ".join(str(c.pid) for c in self.children))
                print(ready_banner(self.settings.http_host, self.port, len(self.children)),
                      flush=True)
                await self.main_loop()
            log.info("shutting down %d edge processes", len(self.children))
        except GaveUp as exc:
            log.error("%s", exc)
            failed = True
        finally:
            clean = await self.shutdown()
        return 0 if clean and not failed else 1
