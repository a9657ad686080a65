"""The unit of work that travels through a pipeline, and `Finish`, the early-answer outcome."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec


class Finish(msgspec.Struct, frozen=True):
    """A handler outcome that answers the item with `value` now, skipping the later stages."""

    value: Any


class Item:
    """One unit of work and the future its submitter awaits.

    `deadline_s` is absolute, on the pipeline's clock. `timings_ms` maps each stage the item
    went through to its queue wait plus service time there (for a Server-Timing header).
    """

    __slots__ = ("deadline_s", "enqueued_s", "future", "payload", "timings_ms")

    def __init__(self, payload: Any, deadline_s: float, future: asyncio.Future[Any]) -> None:
        self.payload = payload
        self.deadline_s = deadline_s
        self.future = future
        self.enqueued_s = 0.0  # when the current stage accepted it, on that stage's clock
        self.timings_ms: dict[str, float] = {}

    def __repr__(self) -> str:
        return f"Item({self.payload!r}, deadline_s={self.deadline_s:g}, done={self.future.done()})"
