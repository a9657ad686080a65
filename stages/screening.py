"""The payload that travels through the screening stages, and the stage-level errors."""

from __future__ import annotations

import msgspec

from ledger.records import PaymentRecord, PaymentRequest


class Screening(msgspec.Struct, kw_only=True):
    """One payment on its way through idempotency -> ledger -> respond."""

    request: PaymentRequest
    cache_key: str  # the idempotency key's Redis key, scoped by client
    marker: bytes = b""  # our in-flight marker, when we set one
    record: PaymentRecord | None = None


class RequestInFlight(Exception):
    """A retry arrived while the first request with its key is still being processed."""

    code = "request_in_flight"

    def __init__(self) -> None:
        super().__init__("a request with this Idempotency-Key is still being processed; "
                         "retry after it completes")
