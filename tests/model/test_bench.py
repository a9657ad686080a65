"""The forest benchmark runs end to end (its timing goals live in BENCHMARKS.md, not here)."""

from __future__ import annotations

import pytest

from model.bench import main


def test_the_benchmark_checks_equality_and_prints_the_table(
        capsys: pytest.CaptureFixture[str]) -> None:
    main(["--trees", "20", "--features", "5", "--repeat", "20"])
    out = capsys.readouterr().out
    assert "max |risk + score_samples| = 0.0e+00" in out
    assert "CompiledForest.risk" in out and "scikit-learn score_samples" in out
    assert "target one row <= 50 us" in out
