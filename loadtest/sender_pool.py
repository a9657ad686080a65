"""The load generator's processes: P sender processes (spawned once, kept for every run of a
bench) that run each job together and hand back their raw samples."""

from __future__ import annotations

import multiprocessing
import time
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from types import TracebackType

from loadtest import sender
from loadtest.results import Samples
from loadtest.sender import Job, SenderConfig

START_DELAY_S = 0.5  # lets every process build its schedule before request 0 is due
JOIN_TIMEOUT_S = 5.0


class SenderError(RuntimeError):
    """A sender process died or did not answer in time."""


class SenderPool:
    """`with SenderPool(2, config) as pool: samples = pool.run(job)`; leaving the block (also
    by an exception or Ctrl-C) stops every process."""

    def __init__(self, processes: int, config: SenderConfig) -> None:
        self.processes = processes
        self._config = config
        self._workers: list[tuple[BaseProcess, Connection]] = []

    def __enter__(self) -> SenderPool:
        context = multiprocessing.get_context("spawn")
        try:
            for p in range(self.processes):
                mine, theirs = context.Pipe()
                process = context.Process(target=sender.main, name=f"sender-{p}", daemon=True,
                                          args=(theirs, self._config, p, self.processes))
                process.start()
                theirs.close()
                self._workers.append((process, mine))
        except BaseException:
            self.close(graceful=False)
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        # After an error (or Ctrl-C) a process may be in the middle of a job: stop it now.
        self.close(graceful=kind is None)

    def start(self, job: Job) -> None:
        """Hand the job to every process; `collect()` waits for the answers."""
        for _, connection in self._workers:
            connection.send(job)

    def collect(self, timeout_s: float) -> list[Samples]:
        deadline = time.monotonic() + timeout_s
        samples: list[Samples] = []
        for process, connection in self._workers:
            while not connection.poll(0.2):
                if not process.is_alive():
                    raise SenderError(f"{process.name} exited with {process.exitcode}")
                if time.monotonic() > deadline:
                    raise SenderError(f"{process.name} did not answer in {timeout_s:.0f} s")
            samples.append(connection.recv())
        return samples

    def pids(self) -> list[int]:
        return [process.pid for process, _ in self._workers if process.pid is not None]

    def close(self, *, graceful: bool = True) -> None:
        for process, connection in self._workers:
            if process.is_alive() and not (graceful and _ask_to_stop(connection)):
                process.terminate()
        for process, connection in self._workers:
            process.join(JOIN_TIMEOUT_S)
            if process.is_alive():
                process.terminate()
                process.join(JOIN_TIMEOUT_S)
            connection.close()
        self._workers.clear()


def _ask_to_stop(connection: Connection) -> bool:
    try:
        connection.send(None)
    except OSError:  # BrokenPipeError included: the process is going anyway
        return False
    return True


def start_time() -> float:
    """When request 0 of a job handed out now is due."""
    return time.monotonic() + START_DELAY_S
