"""Reading CPU from /proc: this process is found by pid, name and parent; its tree counts it."""

from __future__ import annotations

import os
import time

from loadtest.servers import processes_cpu, tree_cpu_s


def test_this_process_is_read_from_proc() -> None:
    deadline = time.process_time() + 0.05
    while time.process_time() < deadline:  # spend some CPU to be seen
        pass
    [me] = [p for p in processes_cpu() if p.pid == os.getpid()]
    assert me.parent == os.getppid()
    assert me.name.startswith(("python", "pytest"))
    assert me.cpu_s > 0
    assert tree_cpu_s(os.getpid()) >= me.cpu_s
