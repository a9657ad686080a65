"""Reading CPU from /proc: this process is found by pid, name and parent; its tree counts it."""

from __future__ import annotations

import os
import time

import pytest
import redis

from loadtest.servers import drop_redis_keys, processes_cpu, tree_cpu_s
from tests.conftest import unique


def test_this_process_is_read_from_proc() -> None:
    deadline = time.process_time() + 0.05
    while time.process_time() < deadline:  # spend some CPU to be seen
        pass
    [me] = [p for p in processes_cpu() if p.pid == os.getpid()]
    assert me.parent == os.getppid()
    assert me.name.startswith(("python", "pytest"))
    assert me.cpu_s > 0
    assert tree_cpu_s(os.getpid()) >= me.cpu_s


@pytest.mark.integration
def test_a_bench_run_drops_exactly_its_own_redis_keys(settings):
    client = redis.Redis.from_url(settings.redis_url)
    prefix = unique("bench-test")
    try:
        with client.pipeline(transaction=False) as pipe:
            for i in range(2_500):  # more than one SCAN page and one UNLINK batch
                pipe.set(f"{prefix}:k{i}", i, ex=600)
            pipe.set(f"{prefix}-other:k", 1, ex=600)  # a neighbour sharing the text prefix
            pipe.execute()
        assert drop_redis_keys(settings.redis_url, prefix) == 2_500
        assert not list(client.scan_iter(match=f"{prefix}:*", count=1000))
        assert client.get(f"{prefix}-other:k") == b"1"
    finally:
        client.delete(f"{prefix}-other:k")
        client.close()
