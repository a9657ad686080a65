"""One card transaction as the model sees it, live or from a labelled file.

The scoring stage builds these from a screened payment and its account profile; the data
readers (`model/data.py`) and the synthetic generator (`model/generate.py`) build them from
files. Features, training and evaluation read only this struct, so all three see the same
fields.
"""

from __future__ import annotations

import msgspec


class Txn(msgspec.Struct, frozen=True, kw_only=True):
    """A card payment with the cardholder's profile; `is_fraud` only in labelled data."""

    transaction_id: str
    event_ms: int  # event time, ms since the Unix epoch (UTC)
    utc_offset_min: int = 0  # the event's local offset from UTC, when the source gives one
    account_id: str
    card_id: str
    merchant_id: str
    merchant_category: str
    amount_minor: int  # > 0
    currency: str
    exponent: int = 2  # the currency's minor-unit exponent
    country: str
    lat: float | None = None
    lon: float | None = None
    # The account profile, registered once (not per transaction).
    home_country: str | None = None
    home_lat: float | None = None
    home_lon: float | None = None
    account_created_ms: int | None = None
    # Labels: never read at decision time.
    is_fraud: bool | None = None
    pattern: str | None = None  # the injected fraud pattern, synthetic data only
