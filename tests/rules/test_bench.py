"""The benchmark script runs end to end (timing goals live in BENCHMARKS.md, not here)."""

from __future__ import annotations

import random

import pytest

from rules import interpret
from rules.bench import TEMPLATES, build_contexts, build_rules, main


def test_the_benchmark_prints_microseconds_per_transaction(
        capsys: pytest.CaptureFixture[str]) -> None:
    main(["--rules", "25", "--transactions", "40", "--rounds", "2"])
    out = capsys.readouterr().out
    assert "25 rules x 40 transactions" in out
    assert "µs per transaction (all rules)" in out


def test_the_benchmark_rules_mean_what_the_interpreter_says() -> None:
    rng = random.Random(7)
    rules = build_rules(len(TEMPLATES), rng)
    for ctx in build_contexts(30, rules, rng):
        assert [r.evaluate(ctx) for r in rules] == [interpret(r.expression, ctx) for r in rules]
