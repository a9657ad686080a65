"""How a supervisor's edge processes share their statistics, so any of them answers `/metrics`
for all: one small JSON file per process in a run directory, rewritten every second.

    <run_dir>/edge-<supervisor pid>-<random>/   made by the supervisor, removed when it stops
        edge-<pid>.json    a live process's last `ProcessSnapshot` (written by that process)
        retired.json       `RetiredTotals` of the processes that exited (written by the
                           supervisor only, after it reaped them)

Why files: the kernel decides which process a scrape reaches (SO_REUSEPORT), so every process
must see the others' numbers; a file per writer needs no locking, no extra service and no
socket between the processes, and a write is atomic (temporary file + rename) so a reader never
sees half a snapshot. The cost is measured in docs/operations.md: ~10 KB encoded and written
once a second per process, and a scrape decodes one file per process. Numbers are at most
`PUBLISH_EVERY_S` old for the other processes; the answering process uses its live ones.

A reader takes the process files first, then `retired.json`, and skips the files of pids that
`retired.json` lists: the supervisor writes `retired.json` before it deletes the file it
folded in, so a process that exits between the two reads is counted once, never twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import tempfile
import time
from pathlib import Path
from typing import TypeVar

import msgspec

from http_edge.metrics import EdgeStatistics
from http_edge.process_metrics import ProcessSnapshot, RetiredTotals, render_processes, retire
from pipeline import Pipeline

log = logging.getLogger(__name__)

PUBLISH_EVERY_S = 1.0
RETIRED = "retired.json"

T = TypeVar("T")


class MetricsShare:
    """The run directory of one supervisor's edge processes."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self._encoder = msgspec.json.Encoder()
        self._process = msgspec.json.Decoder(ProcessSnapshot)
        self._retired = msgspec.json.Decoder(RetiredTotals)

    @classmethod
    def create(cls, run_dir: str | Path) -> MetricsShare:
        """A new, empty directory under `run_dir`, unique even among containers whose
        supervisors all have pid 1 and share a volume."""
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        return cls(tempfile.mkdtemp(prefix=f"edge-{os.getpid()}-", dir=run_dir))

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)

    def _path(self, pid: int) -> Path:
        return self.directory / f"edge-{pid}.json"

    def _write(self, path: Path, data: bytes) -> None:
        tmp = self.directory / f".{path.name}.{secrets.token_hex(4)}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, path)

    def encode(self, snapshot: ProcessSnapshot) -> bytes:
        return self._encoder.encode(snapshot)

    def write(self, pid: int, data: bytes) -> None:
        """Replace process `pid`'s snapshot with `data` (from `encode`)."""
        self._write(self._path(pid), data)

    def publish(self, snapshot: ProcessSnapshot) -> None:
        self.write(snapshot.pid, self.encode(snapshot))

    def read(self) -> tuple[list[ProcessSnapshot], RetiredTotals | None]:
        """Every live process's last snapshot (those already retired left out), and the
        retired totals."""
        snapshots = []
        for path in self.directory.glob("edge-*.json"):
            snapshot = self._read(path, self._process)
            if snapshot is not None:
                snapshots.append(snapshot)
        retired = self._read(self.directory / RETIRED, self._retired)
        gone = set(retired.pids) if retired is not None else set()
        return [s for s in snapshots if s.pid not in gone], retired

    @staticmethod
    def _read(path: Path, decoder: msgspec.json.Decoder[T]) -> T | None:
        try:
            return decoder.decode(path.read_bytes())
        except FileNotFoundError:
            return None  # retired (or not yet written) between listing and reading
        except msgspec.DecodeError as exc:
            log.warning("metrics: skipping unreadable %s: %s", path, exc)
            return None

    def retire(self, pid: int) -> None:
        """Fold an exited process's last snapshot into the retired totals (supervisor only)."""
        path = self._path(pid)
        snapshot = self._read(path, self._process)
        if snapshot is not None:
            retired = self._read(self.directory / RETIRED, self._retired)
            self._write(self.directory / RETIRED,
                        self._encoder.encode(retire(retired, snapshot)))
        path.unlink(missing_ok=True)


class MetricsPublisher:
    """A supervised edge process's side: publishes its snapshot every PUBLISH_EVERY_S and
    renders `/metrics` as the sum over all the supervisor's processes."""

    def __init__(self, share: MetricsShare, edge: EdgeStatistics, pipeline: Pipeline) -> None:
        self._share = share
        self._edge = edge
        self._pipeline = pipeline
        self._pid = os.getpid()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def snapshot(self) -> ProcessSnapshot:
        return ProcessSnapshot(pid=self._pid, written_at_s=time.time(),
                               edge=self._edge.snapshot(), pipeline=self._pipeline.statistics())

    def render(self) -> str:
        peers, retired = self._share.read()
        return render_processes(self.snapshot(), peers, retired, now_s=time.time())

    async def _publish(self) -> None:
        # The snapshot is taken on the event loop, where the counters change, so it is
        # consistent (~40 us); the file is written in a thread, so a slow disk never stalls
        # requests (no fsync: the numbers are transient).
        data = self._share.encode(self.snapshot())
        try:
            await asyncio.to_thread(self._share.write, self._pid, data)
        except OSError as exc:
            log.warning("metrics: cannot publish to %s: %s", self._share.directory, exc)

    async def _run(self) -> None:
        stopping = False
        while not stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), PUBLISH_EVERY_S)
            stopping = self._stop.is_set()
            await self._publish()  # once more after stop: the drained counters

    async def start(self) -> None:
        """Publish now (a process is visible to the others once it reports ready), then
        every PUBLISH_EVERY_S."""
        await self._publish()
        self._task = asyncio.create_task(self._run(), name="metrics-publisher")

    async def stop(self) -> None:
        """Stop publishing, after a last snapshot with the drained counters."""
        self._stop.set()
        if self._task is not None:
            await self._task
            self._task = None
