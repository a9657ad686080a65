"""Errors of the pipeline runtime, each with a stable `code`.

    PipelineError
    ├── Overloaded          overloaded         a stage's queue is full: shed load, retry later
    ├── ShuttingDown        shutting_down      intake is closed, or drain timed out
    ├── DeadlineExceeded    deadline_exceeded  the item's deadline passed before a stage ran it
    └── StageFailed         stage_failed       the stage's handler raised (see __cause__)
"""

from __future__ import annotations


class PipelineError(Exception):
    code = "pipeline_error"


class Overloaded(PipelineError):
    code = "overloaded"

    def __init__(self, stage: str, retry_after_s: float) -> None:
        super().__init__(f"stage {stage!r} is at capacity; retry in {retry_after_s:g} s")
        self.stage = stage
        self.retry_after_s = retry_after_s


class ShuttingDown(PipelineError):
    code = "shutting_down"

    def __init__(self, detail: str = "the service is shutting down") -> None:
        super().__init__(detail)


class DeadlineExceeded(PipelineError):
    code = "deadline_exceeded"

    def __init__(self, stage: str) -> None:
        super().__init__(f"the request's deadline passed before stage {stage!r} could run it")
        self.stage = stage


class StageFailed(PipelineError):
    code = "stage_failed"

    def __init__(self, stage: str, cause: BaseException) -> None:
        super().__init__(f"stage {stage!r} failed: {type(cause).__name__}: {cause}")
        self.stage = stage
        self.__cause__ = cause
