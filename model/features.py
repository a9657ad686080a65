"""The model's features: one function turns a micro-batch into a matrix, live and offline.

`feature_matrix(txns, history, spec)` is the only place features are defined. The scoring
stage calls it with summaries read from Redis, training and evaluation with summaries from
`offline_history`; both summaries follow `model/history.py`, so offline and online features
cannot drift apart. Why these features is in docs/model.md (the accuracy review).

Unknown values (a card's first payment has no previous payment and no usual amount) are NaN;
the pipeline's imputer fills them with the training median.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import msgspec
import numpy as np

from model.history import NIGHT_HOURS, local_hour
from model.records import Txn

FEATURES = (
    "amount_log",  # ln(1 + amount in major units)
    "amount_vs_category",  # how unusual the amount is for the merchant category (robust z)
    "amount_vs_card",  # ln(amount) minus the card's mean ln(amount) over 30 days
    "night",  # 1 between 22:00 and 03:59 local time
    "card_count_24h",  # ln(1 + the card's payments in the previous 24 hours)
    "card_night_count_24h",  # ln(1 + those of them at night, 22:00-03:59 local)
    "seconds_since_previous_log",  # ln(1 + seconds since the card's previous payment)
    "new_category_for_card",  # 1 when the card paid nothing in this category for 30 days
    "foreign_country",  # 1 when the payment is outside the account's home country
)


class CategoryStats(msgspec.Struct, frozen=True, array_like=True):
    median_ln: float  # median ln(amount in major units) of legitimate payments
    spread_ln: float  # their interquartile range (never below MIN_SPREAD)


MIN_SPREAD = 0.25


class FeatureSpec(msgspec.Struct, frozen=True, kw_only=True):
    """What the features learn from training data; saved, signed, in the model manifest."""

    categories: dict[str, CategoryStats]
    fallback: CategoryStats  # for a category training never saw


def fit_spec(txns: Sequence[Txn]) -> FeatureSpec:
    """Per-category amount statistics of `txns` (give it the legitimate training rows)."""
    by_category: dict[str, list[float]] = {}
    for txn in txns:
        by_category.setdefault(txn.merchant_category, []).append(_ln_major(txn))
    every = [v for values in by_category.values() for v in values]
    if not every:
        raise ValueError("fit_spec needs at least one transaction")
    return FeatureSpec(
        categories={name: _stats(values) for name, values in sorted(by_category.items())
                    if len(values) >= 20},
        fallback=_stats(every))


def _stats(values: list[float]) -> CategoryStats:
    q1, median, q3 = np.quantile(np.asarray(values), [0.25, 0.5, 0.75])
    return CategoryStats(float(median), max(float(q3 - q1), MIN_SPREAD))


def _ln_major(txn: Txn) -> float:
    return math.log(txn.amount_minor) - txn.exponent * math.log(10)


def feature_matrix(txns: Sequence[Txn], history: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """The (len(txns), len(FEATURES)) float64 matrix for a batch; `history` rows align."""
    n = len(txns)
    out = np.empty((n, len(FEATURES)))
    if n == 0:
        return out
    ln_minor = np.fromiter((math.log(t.amount_minor) for t in txns), np.float64, n)
    ln_major = ln_minor - np.fromiter((t.exponent for t in txns), np.float64, n) * math.log(10)
    stats = [spec.categories.get(t.merchant_category, spec.fallback) for t in txns]
    now_ms = np.fromiter((t.event_ms for t in txns), np.float64, n)
    count_24h, night_24h, last_ms, count_30d, sum_ln_30d, same_30d = history.T
    with np.errstate(invalid="ignore", divide="ignore"):
        out[:, 0] = np.log1p(np.exp(ln_major))  # ln(1 + amount), from the exact minor units
        out[:, 1] = (ln_major - np.fromiter((s.median_ln for s in stats), np.float64, n)) \
            / np.fromiter((s.spread_ln for s in stats), np.float64, n)
        out[:, 2] = np.where(count_30d > 0, ln_minor - sum_ln_30d / count_30d, np.nan)
        out[:, 3] = [is_night(t) for t in txns]
        out[:, 4] = np.log1p(count_24h)
        out[:, 5] = np.log1p(night_24h)
        out[:, 6] = np.log1p(np.maximum(now_ms - last_ms, 0.0) / 1000)  # NaN stays NaN
        out[:, 7] = same_30d == 0
        out[:, 8] = [t.home_country is not None and t.country != t.home_country for t in txns]
    return out


def is_night(txn: Txn) -> bool:
    return local_hour(txn.event_ms, txn.utc_offset_min) in NIGHT_HOURS
