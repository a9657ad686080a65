"""Servers under test as subprocesses: the edge (`sentinel serve`, however many processes it
runs itself) or N copies of the ceiling sharing a port (SO_REUSEPORT); each logs to a file, is
waited for until ready and is stopped with SIGTERM (then SIGKILL)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import NamedTuple

import redis

from loadtest.ceiling import READY_TEXT as CEILING_READY_TEXT

EDGE_READY_TEXT = "SentinelStream ready on"
ROOT = Path(__file__).resolve().parents[1]
_CLOCK_TICK_S = 1 / os.sysconf("SC_CLK_TCK")
_TCP_LISTEN = "0A"


class ServerError(RuntimeError):
    """A server process exited or did not become ready; the message ends with its log."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class ProcessCpu(NamedTuple):
    pid: int
    name: str  # the command name in /proc/<pid>/stat
    parent: int
    cpu_s: float  # user + system


def processes_cpu() -> Iterator[ProcessCpu]:
    """Every live process's CPU so far, from /proc (a process gone meanwhile is skipped)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            head, tail = stat.read_text().rsplit(")", 1)
        except OSError:
            continue
        fields = tail.split()
        yield ProcessCpu(int(stat.parent.name), head.split("(", 1)[1], int(fields[1]),
                         (int(fields[11]) + int(fields[12])) * _CLOCK_TICK_S)


def tree_cpu_s(root: int) -> float:
    """User + system CPU seconds of a process and its live descendants (an edge supervisor
    starts its processes in sessions of their own), from /proc."""
    processes = list(processes_cpu())
    tree, grew = {root}, True
    while grew:
        more = {p.pid for p in processes if p.parent in tree} - tree
        tree |= more
        grew = bool(more)
    return sum(p.cpu_s for p in processes if p.pid in tree)


# The services the screening path runs on, by process name, for the bench's CPU breakdown.
SERVICE_COMMANDS = {"postgres": "postgresql", "redis-server": "redis", "beam.smp": "rabbitmq"}


def services_cpu_s() -> dict[str, float]:
    """User + system CPU seconds of PostgreSQL, Redis and RabbitMQ (every process of each,
    by name; services on other machines count as 0), from /proc."""
    out = dict.fromkeys(SERVICE_COMMANDS.values(), 0.0)
    for process in processes_cpu():
        service = SERVICE_COMMANDS.get(process.name)
        if service is not None:
            out[service] += process.cpu_s
    return out


def machine_cpu_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user time
    return (total - idle) * _CLOCK_TICK_S, total * _CLOCK_TICK_S


def listening_sockets(port: int) -> int:
    """TCP sockets listening on `port` (one per process sharing it with SO_REUSEPORT)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            count += state == _TCP_LISTEN and int(local.rsplit(":", 1)[1], 16) == port
    return count


class ServerGroup:
    """`with ServerGroup(...) as group: group.wait_ready(...)`; leaving the block stops it."""

    def __init__(self, name: str, argv: list[str], *, count: int, log_dir: Path,
                 ready_text: str, env: dict[str, str] | None = None,
                 stop_timeout_s: float = 40.0) -> None:
        self.name = name
        self._argv = argv
        self._count = count
        self._log_dir = log_dir
        self._ready_text = ready_text
        self._env = env
        self._stop_timeout_s = stop_timeout_s
        self.processes: list[subprocess.Popen[bytes]] = []

    def log_path(self, n: int) -> Path:
        return self._log_dir / f"{self.name}-{n}.log"

    def __enter__(self) -> ServerGroup:
        self._log_dir.mkdir(parents=True, exist_ok=True)
        try:
            for n in range(self._count):
                with self.log_path(n).open("wb") as log:
                    # Own session: Ctrl-C reaches the bench, which stops servers in order.
                    self.processes.append(subprocess.Popen(
                        self._argv, stdout=log, stderr=subprocess.STDOUT, env=self._env,
                        cwd=ROOT, start_new_session=True))
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def tail(self, n: int, lines: int = 20) -> str:
        text = self.log_path(n).read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def check(self) -> None:
        for n, process in enumerate(self.processes):
            if process.poll() is not None:
                raise ServerError(f"{self.name}-{n} exited with {process.returncode}:\n"
                                  f"{self.tail(n)}")

    def wait_ready(self, url: str, timeout_s: float) -> None:
        """Until every process has printed its ready line and `url` answers 200."""
        deadline = time.monotonic() + timeout_s
        while not self._ready(url):
            self.check()
            if time.monotonic() > deadline:
                raise ServerError(f"{self.name} not ready after {timeout_s:.0f} s:\n"
                                  f"{self.tail(0)}")
            time.sleep(0.2)

    def _ready(self, url: str) -> bool:
        for n in range(len(self.processes)):
            if self._ready_text not in self.log_path(n).read_text(errors="replace"):
                return False
        try:
            with urllib.request.urlopen(url, timeout=2.0) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def cpu_s(self) -> float:
        return sum(tree_cpu_s(process.pid) for process in self.processes)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for n, process in enumerate(self.processes):
            try:
                process.wait(self._stop_timeout_s)
            except subprocess.TimeoutExpired:
                print(f"{self.name}-{n} ignored SIGTERM for {self._stop_timeout_s:.0f} s: killed",
                      file=sys.stderr)
                process.kill()
                process.wait()
        self.processes.clear()


def wait_listeners_settled(port: int, settle_s: float = 1.0, timeout_s: float = 60.0) -> int:
    """The number of sockets listening on `port` once it has not changed for `settle_s`: a
    server that starts its processes one after the other has them all up by then."""
    deadline = time.monotonic() + timeout_s
    count, since = listening_sockets(port), time.monotonic()
    while time.monotonic() - since < settle_s and time.monotonic() < deadline:
        time.sleep(0.1)
        now = listening_sockets(port)
        if now != count:
            count, since = now, time.monotonic()
    return count


def edge_group(port: int, processes: int | None, log_dir: Path,
               redis_prefix: str | None = None) -> ServerGroup:
    """One `sentinel serve` on `port` with the environment's SENTINEL_* settings; `processes`
    sets SENTINEL_PROCESSES (edge processes the command runs on the port), `redis_prefix`
    SENTINEL_REDIS_PREFIX (the namespace of all its Redis keys)."""
    env = {**os.environ, "SENTINEL_HTTP_PORT": str(port), "SENTINEL_HTTP_HOST": "127.0.0.1"}
    if processes is not None:
        env["SENTINEL_PROCESSES"] = str(processes)
    if redis_prefix is not None:
        env["SENTINEL_REDIS_PREFIX"] = redis_prefix
    return ServerGroup("edge", [str(Path(sys.executable).parent / "sentinel"), "serve"],
                       count=1, log_dir=log_dir, ready_text=EDGE_READY_TEXT, env=env)


def ceiling_group(port: int, count: int, body_bytes: int, log_dir: Path) -> ServerGroup:
    argv = [sys.executable, "-m", "loadtest.ceiling", "--port", str(port),
            "--body-bytes", str(body_bytes)]
    return ServerGroup("ceiling", argv + ["--reuse-port"] * (count > 1), count=count,
                       log_dir=log_dir, ready_text=CEILING_READY_TEXT, stop_timeout_s=10.0)


def drop_redis_keys(url: str, prefix: str) -> int:
    """Delete every key under `prefix:` (SCAN + UNLINK in thousands); how many there were."""
    client = redis.Redis.from_url(url)
    dropped = 0
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            batch.append(key)
            if len(batch) == 1000:
                dropped += client.unlink(*batch)
                batch = []
        if batch:
            dropped += client.unlink(*batch)
    finally:
        client.close()
    return dropped
