"""The error hierarchy: one root, stable codes, typed fields."""

from __future__ import annotations

import pytest

from pipeline import DeadlineExceeded, Overloaded, PipelineError, ShuttingDown, StageFailed


@pytest.mark.parametrize(("error", "code"), [
    (Overloaded("intake", 1.0), "overloaded"),
    (ShuttingDown(), "shutting_down"),
    (DeadlineExceeded("ledger"), "deadline_exceeded"),
    (StageFailed("ledger", KeyError("x")), "stage_failed"),
])
def test_every_error_has_the_root_and_a_stable_code(error: PipelineError, code: str) -> None:
    assert isinstance(error, PipelineError)
    assert error.code == code


def test_fields() -> None:
    overloaded = Overloaded("intake", 0.5)
    assert (overloaded.stage, overloaded.retry_after_s) == ("intake", 0.5)
    assert "intake" in str(overloaded)
    assert DeadlineExceeded("ledger").stage == "ledger"
    cause = KeyError("x")
    failed = StageFailed("ledger", cause)
    assert failed.stage == "ledger"
    assert failed.__cause__ is cause
    assert "KeyError" in str(failed)
