"""The hash-chain inputs, computed in Python exactly as the database computes them.

`002_posting.sql` builds the same '|'-joined text with SQL; verify-ledger recomputes with
these functions and compares, so a row changed behind the triggers' back is found.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

GENESIS_HASH = bytes(32)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _numeric_text(value: Decimal | None) -> str:
    # PostgreSQL prints numeric(p, s) with exactly s decimals; Decimal's 'f' format does too,
    # where str() would print 0E-6.
    return "" if value is None else f"{value:f}"


def epoch_us(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


def posting_hash(prev: bytes, account_id: str, seq: int, entry_id: int,
                 amount_minor: int, balance_after_minor: int) -> bytes:
    text = f"{prev.hex()}|{account_id}|{seq}|{entry_id}|{amount_minor}|{balance_after_minor}"
    return hashlib.sha256(text.encode()).digest()


def transaction_hash(prev: bytes, *, transaction_id: str, account_id: str,
                     account_txn_seq: int, card_id: str, merchant_id: str,
                     amount_minor: int, merchant_category: str, country: str,
                     lat: Decimal | None, lon: Decimal | None, event_time: datetime,
                     decision: str, risk_score: Decimal, reasons: Sequence[str],
                     balance_after_minor: int, rules_version: int | None,
                     model_version: str | None, client_id: str) -> bytes:
    parts = (
        prev.hex(), transaction_id, account_id, str(account_txn_seq), card_id, merchant_id,
        str(amount_minor), merchant_category, country, _numeric_text(lat), _numeric_text(lon),
        str(epoch_us(event_time)), decision, _numeric_text(risk_score), ",".join(reasons),
        str(balance_after_minor), "" if rules_version is None else str(rules_version),
        model_version or "", client_id,
    )
    return hashlib.sha256("|".join(parts).encode()).digest()
