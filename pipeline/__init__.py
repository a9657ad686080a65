"""Generic asyncio actor runtime: bounded stages, micro-batching, backpressure, deadlines, drain.

Knows nothing about fraud; `tests/test_layering.py` keeps it that way.
"""

from pipeline.chain import Pipeline, PipelineStatistics
from pipeline.errors import DeadlineExceeded, Overloaded, PipelineError, ShuttingDown, StageFailed
from pipeline.histogram import Histogram, HistogramSnapshot
from pipeline.item import Finish, Item
from pipeline.loop_lag import LoopLagMonitor
from pipeline.stage import Stage, StageConfig, StageStatistics

__all__ = [
    "DeadlineExceeded", "Finish", "Histogram", "HistogramSnapshot", "Item", "LoopLagMonitor",
    "Overloaded", "Pipeline", "PipelineError", "PipelineStatistics", "ShuttingDown", "Stage",
    "StageConfig", "StageFailed", "StageStatistics",
]
