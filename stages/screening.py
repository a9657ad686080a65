"""The payload that travels through the screening stages, and the stage-level errors."""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np

from ledger.records import AccountState, PaymentRecord, PaymentRequest
from rules.engine import RuleSet, Verdict


class Screening(msgspec.Struct, kw_only=True):
    """One payment on its way: admit -> rules -> scoring -> ledger -> respond."""

    request: PaymentRequest
    cache_key: str  # the idempotency key's Redis key, scoped by client
    marker: bytes = b""  # our in-flight marker, when we set one
    account: AccountState | None = None  # the cardholder's profile (admit)
    velocity: dict[Any, object] = {}  # VelocityKey -> value (admit); None values: unknown
    history: np.ndarray | None = None  # the card's history summary for the model (admit)
    rule_set: RuleSet | None = None  # the set the rules stage used (scoring runs its other half)
    verdict: Verdict = msgspec.field(default_factory=Verdict)  # the decision so far
    deadline_s: float = float("inf")  # absolute, on the pipeline's clock (set by the edge)
    record: PaymentRecord | None = None


class RequestInFlight(Exception):
    """A retry arrived while the first request with its key is still being processed."""

    code = "request_in_flight"

    def __init__(self) -> None:
        super().__init__("a request with this Idempotency-Key is still being processed; "
                         "retry after it completes")
