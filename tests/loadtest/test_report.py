"""The edge-vs-ceiling lines and the JSON document's round trip."""

from __future__ import annotations

import msgspec

from loadtest.report import BenchDocument, TargetReport, comparison_lines, run_line, text
from tests.loadtest.conftest import MakeRun


def _targets(make_run: MakeRun) -> tuple[TargetReport, TargetReport]:
    edge = TargetReport(target="edge", description="SentinelStream", server_processes=2,
                        runs=[make_run(rate=100, p99=30), make_run(rate=1000, p99=400)],
                        search_steps=[make_run(concurrency=8, achieved=850)],
                        search_best=make_run(concurrency=8, achieved=850),
                        search_stopped_because="p99", highest_rate_under_limit=100)
    ceiling = TargetReport(target="ceiling", description="bare", server_processes=2,
                           runs=[make_run(rate=100, p99=3), make_run(rate=1000, p99=5)],
                           search_best=make_run(concurrency=64, achieved=6100),
                           highest_rate_under_limit=1000)
    return edge, ceiling


def test_the_edge_as_a_share_of_the_ceiling(make_run: MakeRun) -> None:
    lines = comparison_lines(*_targets(make_run))
    assert lines[0] == "edge max 850 tx/s = 14% of bare aiohttp 6,100 req/s"
    assert lines[2].startswith("at 1,000/s: p50 200 vs 2.50 ms, p99 400 vs 5.00 ms")
    assert lines[-1] == ("highest rate with p99 under the limit: edge 100/s, ceiling "
                         "1,000/s (of the rates tried)")


def test_the_document_round_trips_through_json(make_run: MakeRun) -> None:
    edge, ceiling = _targets(make_run)
    document = BenchDocument(started_at="20261129T100000Z", git={"commit": "abc"},
                             machine={"cpu_count": 2}, settings={"rates": [100.0, 1000.0]},
                             edge=edge, ceiling=ceiling,
                             comparison=comparison_lines(edge, ceiling))
    again = msgspec.json.decode(msgspec.json.encode(document), type=BenchDocument)
    assert again == document
    assert "edge vs ceiling:" in text(again)


def test_a_run_line_names_the_services_cpu_when_it_was_measured(make_run: MakeRun) -> None:
    run = make_run(rate=100, p99=30)
    assert "postgresql" not in run_line(run)
    measured = msgspec.structs.replace(
        run, services_cpu_s={"postgresql": 4.25, "redis": 1.0, "rabbitmq": 0.0})
    assert "postgresql 4.2 s redis 1.0 s rabbitmq 0.0 s" in run_line(measured)
