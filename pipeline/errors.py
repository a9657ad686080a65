"""Errors of the pipeline runtime; each carries a stable `code` the edge maps to a response.

    PipelineError                            code
    ├── Overloaded(stage, retry_after_s)     overloaded         a queue is full: shed, retry later
    ├── ShuttingDown                         shutting_down      intake closed, or drain timed out
    ├── DeadlineExceeded(stage)              deadline_exceeded  deadline passed before the stage ran
    └── StageFailed(stage) from cause        stage_failed       the handler raised or miscounted
"""

from __future__ import annotations


class PipelineError(Exception):
    code: str = "pipeline_error"


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
        super().__init__(f"the deadline passed before stage {stage!r} could run the item")
        self.stage = stage


class StageFailed(PipelineError):
    """Set on every item of a batch whose handler failed; `__cause__` is the original error."""

    code = "stage_failed"

    def __init__(self, stage: str, cause: BaseException) -> None:
        super().__init__(f"stage {stage!r} failed: {type(cause).__name__}: {cause}")
        self.stage = stage
        self.__cause__ = cause
