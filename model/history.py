"""What the model needs to know about a card's past, in event time, live and offline.

Live, the card's history is the Redis sorted set the velocity store keeps (members
`<transaction_id>|<amount_minor>|<country>|<category>|<local_hour>`, scored by event time in
ms) and the velocity store's read script (`stages/velocity.py`) summarises it inside Redis,
one call for a micro-batch's transactions. Offline (training, evaluation), `offline_history`
computes the same summary over a time-sorted file. Both count only payments strictly before
the transaction's event time, so a replay of history gives the features live traffic got;
`tests/model/test_history.py` checks the two agree on the same history.

A summary is one float64 row of `HISTORY_FIELDS`; `last_ms` is NaN for a card's first
payment (or its first in RETENTION_MS).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from model.records import Txn

DAY_MS = 86_400_000
PROFILE_WINDOW_MS = 30 * DAY_MS  # the card's "usual" behaviour
BURST_WINDOW_MS = DAY_MS  # the card's recent activity
RETENTION_MS = 90 * DAY_MS  # how long a card's history is kept (also the velocity limit)
MAX_PROFILE_PAYMENTS = 500  # the most recent payments a summary reads
NIGHT_HOURS = frozenset({22, 23, 0, 1, 2, 3})  # local time

HISTORY_FIELDS = ("count_24h", "night_count_24h", "last_ms", "count_30d", "sum_ln_amount_30d",
                  "same_category_30d")

# The profile is the card's last MAX_PROFILE_PAYMENTS payments within [now - 30d, now) (the
# cap bounds the work, so a card with thousands of payments a month costs what an ordinary one
# does); the previous payment is looked up over the whole retention. Old members without
# category/hour fields (written before the model existed) count with an unknown category.


def local_hour(event_ms: int, utc_offset_min: int) -> int:
    return ((event_ms // 60_000 + utc_offset_min) // 60) % 24


def member(transaction_id: str, amount_minor: int, country: str, category: str,
           hour: int) -> str:
    """The sorted-set member that records one payment in its card's history."""
    return f"{transaction_id}|{amount_minor}|{country}|{category}|{hour}"


def history_member(txn: Txn) -> str:
    return member(txn.transaction_id, txn.amount_minor, txn.country, txn.merchant_category,
                  local_hour(txn.event_ms, txn.utc_offset_min))


def parse_summary(reply: Sequence[object]) -> list[float]:
    """One summary as the read script returns it -> a row of HISTORY_FIELDS."""
    c24, n24, last, c30, s30, same = (_number(v) for v in reply)
    return [c24, n24, math.nan if last < 0 else last, c30, s30, same]


def _number(value: object) -> float:
    return float(value.decode() if isinstance(value, bytes) else value)  # type: ignore[arg-type]


def offline_history(txns: Sequence[Txn]) -> np.ndarray:
    """The summary of every row of `txns`, each against all the others before it in time.

    `txns` is the whole history (any order); every row counts as recorded, as every screened
    payment is live. Vectorised per card with prefix sums, so a year of data takes seconds.
    """
    out = np.zeros((len(txns), len(HISTORY_FIELDS)))
    by_card: dict[str, list[int]] = defaultdict(list)
    for i, txn in enumerate(txns):
        by_card[txn.card_id].append(i)
    for rows in by_card.values():
        rows.sort(key=lambda i: (txns[i].event_ms, history_member(txns[i])))
        _summarise_card([txns[i] for i in rows], out, np.asarray(rows))
    return out


def _summarise_card(card: list[Txn], out: np.ndarray, rows: np.ndarray) -> None:
    ts = np.fromiter((t.event_ms for t in card), dtype=np.int64, count=len(card))
    ln = np.fromiter((math.log(t.amount_minor) for t in card), dtype=np.float64,
                     count=len(card))
    night = np.fromiter((local_hour(t.event_ms, t.utc_offset_min) in NIGHT_HOURS
                         for t in card), dtype=np.int64, count=len(card))
    ln_sum = np.concatenate(([0.0], np.cumsum(ln)))
    night_sum = np.concatenate(([0], np.cumsum(night)))
    before = np.searchsorted(ts, ts, side="left")  # strictly earlier events only
    # The window is the last MAX_PROFILE_PAYMENTS payments before, within 30 days (as live).
    month = np.maximum(np.searchsorted(ts, ts - PROFILE_WINDOW_MS, side="left"),
                       before - MAX_PROFILE_PAYMENTS)
    day = np.maximum(np.searchsorted(ts, ts - BURST_WINDOW_MS, side="left"), month)
    out[rows, 0] = before - day
    out[rows, 1] = night_sum[before] - night_sum[day]
    previous = ts[np.maximum(before - 1, 0)]
    out[rows, 2] = np.where((before > 0) & (previous >= ts - RETENTION_MS), previous, np.nan)
    out[rows, 3] = before - month
    out[rows, 4] = ln_sum[before] - ln_sum[month]
    categories: dict[str, list[int]] = defaultdict(list)
    for j, txn in enumerate(card):
        categories[txn.merchant_category].append(j)
    for members in categories.values():
        idx = np.asarray(members)
        seen = np.zeros(len(card) + 1, dtype=np.int64)
        seen[idx + 1] = 1
        seen = np.cumsum(seen)  # seen[i]: payments in this category among the first i
        out[rows[idx], 5] = seen[before[idx]] - seen[month[idx]]
