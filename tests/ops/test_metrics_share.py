"""The run directory edge processes share their statistics through."""

from __future__ import annotations

import logging
import os

from http_edge.metrics import EdgeStatistics
from http_edge.process_metrics import ProcessSnapshot
from ops.metrics_share import MetricsPublisher, MetricsShare
from pipeline import Pipeline, Stage, StageConfig


def process(pid: int, requests: int) -> ProcessSnapshot:
    edge = EdgeStatistics()
    for _ in range(requests):
        edge.count_request("GET", "/healthz", 200)
    return ProcessSnapshot(pid=pid, written_at_s=1.0, edge=edge.snapshot(),
                           pipeline=idle_pipeline().statistics())


def idle_pipeline() -> Pipeline:
    async def handler(items: list[object]) -> list[object]:
        return items

    config = StageConfig(workers=1, batch_max=8, batch_wait_ms=0, queue_max=8)
    return Pipeline([Stage("only", handler, config)])


def test_create_makes_a_fresh_directory_and_remove_deletes_it(tmp_path):
    first, second = MetricsShare.create(tmp_path / "run"), MetricsShare.create(tmp_path / "run")
    assert first.directory != second.directory
    assert first.directory.parent == tmp_path / "run"
    first.remove()
    assert not first.directory.exists() and second.directory.exists()


def test_published_snapshots_are_read_back_and_retiring_keeps_their_counts(tmp_path):
    share = MetricsShare.create(tmp_path)
    share.publish(process(1, 3))
    share.publish(process(2, 4))
    share.publish(process(2, 5))  # replaces the previous one
    peers, retired = share.read()
    assert sorted((p.pid, p.edge.requests) for p in peers) == [
        (1, (("GET", "/healthz", 200, 3),)), (2, (("GET", "/healthz", 200, 5),))]
    assert retired is None

    share.retire(2)
    share.retire(99)  # never published: nothing to keep
    peers, retired = share.read()
    assert [p.pid for p in peers] == [1]
    assert retired is not None and retired.pids == (2,)
    assert retired.edge.requests == (("GET", "/healthz", 200, 5),)
    assert sorted(os.listdir(share.directory)) == ["edge-1.json", "retired.json"]


def test_a_file_already_folded_into_the_totals_is_not_counted_twice(tmp_path):
    # The supervisor writes retired.json before it deletes the file it folded in; a reader
    # in between sees both.
    share = MetricsShare.create(tmp_path)
    share.publish(process(7, 2))
    share.retire(7)
    share.publish(process(7, 2))  # as if still there
    peers, retired = share.read()
    assert peers == [] and retired is not None and retired.pids == (7,)


def test_an_unreadable_file_is_skipped_with_a_warning(tmp_path, caplog):
    share = MetricsShare.create(tmp_path)
    share.publish(process(1, 1))
    (share.directory / "edge-2.json").write_bytes(b"{not json")
    with caplog.at_level(logging.WARNING):
        peers, _ = share.read()
    assert [p.pid for p in peers] == [1]
    assert "edge-2.json" in caplog.text


async def test_the_publisher_shares_at_start_and_stop_and_renders_everyone(tmp_path):
    share = MetricsShare.create(tmp_path)
    share.publish(process(12345, 4))
    edge = EdgeStatistics()
    publisher = MetricsPublisher(share, edge, idle_pipeline())
    await publisher.start()
    own = share.directory / f"edge-{os.getpid()}.json"
    assert own.exists()
    edge.count_request("GET", "/healthz", 200)
    text = publisher.render()  # its own live counters, not the published file
    assert 'sentinel_http_requests_total{method="GET",route="/healthz",status="200"} 5\n' in text
    assert "sentinel_edge_processes 2\n" in text
    edge.count_request("GET", "/healthz", 200)
    await publisher.stop()
    peers, _ = share.read()
    mine = next(p for p in peers if p.pid == os.getpid())
    assert mine.edge.requests == (("GET", "/healthz", 200, 2),)


async def test_a_share_whose_directory_is_gone_logs_instead_of_failing(tmp_path, caplog):
    share = MetricsShare.create(tmp_path)
    share.remove()
    publisher = MetricsPublisher(share, EdgeStatistics(), idle_pipeline())
    with caplog.at_level(logging.WARNING):
        await publisher.start()
        await publisher.stop()
    assert "cannot publish" in caplog.text
