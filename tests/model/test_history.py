"""Card history and features: the Redis summary (live) equals the offline one (training)."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest

from ledger.records import PaymentRequest
from model.features import FEATURES, feature_matrix, fit_spec
from model.history import HISTORY_FIELDS, MAX_PROFILE_PAYMENTS, RETENTION_MS, offline_history
from model.records import Txn
from stages.resp import RedisPipelines
from stages.velocity import VelocityStore
from tests.conftest import unique

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
START_MS = 1_780_000_000_000
CATEGORIES = ("grocery_pos", "shopping_net", "travel", "misc_net")


def random_history(seed: int, n: int = 150, n_cards: int = 4) -> list[Txn]:
    rng = random.Random(seed)
    cards = [unique("card") for _ in range(n_cards)]
    rows = []
    at = START_MS
    for i in range(n):
        # Bursts (seconds apart), ordinary gaps (hours), pauses (days), and ties.
        at += rng.choice([0, 1_000, 45_000, 3_600_000, 10 * 3_600_000, 2 * 86_400_000]
                         if n_cards > 1 else [0, 1_000, 45_000, 3_600_000, 7_200_000])
        rows.append(Txn(
            transaction_id=f"t{i}-{rng.randrange(10**6)}", event_ms=at,
            utc_offset_min=rng.choice([0, 60, -300, 330]), account_id="acct",
            card_id=rng.choice(cards), merchant_id="m", merchant_category=rng.choice(CATEGORIES),
            amount_minor=rng.choice([1, 99, 1234, 50_000, 2_000_000]), currency="EUR",
            country=rng.choice(["DE", "DE", "FR"]), home_country="DE"))
    return rows


def request_of(txn: Txn) -> PaymentRequest:
    tz = timezone(timedelta(minutes=txn.utc_offset_min))
    return PaymentRequest(
        client_id="c", idem_key="k", fingerprint="f", transaction_id=txn.transaction_id,
        account_id=txn.account_id, card_id=txn.card_id, merchant_id=txn.merchant_id,
        amount_minor=txn.amount_minor, currency=txn.currency,
        merchant_category=txn.merchant_category, country=txn.country, lat=None, lon=None,
        event_time=(_EPOCH + timedelta(milliseconds=txn.event_ms)).astimezone(tz))


@pytest.mark.integration
@pytest.mark.parametrize(("seed", "n", "n_cards"), [(1, 150, 4), (2, 150, 4), (3, 700, 1)])
async def test_redis_summary_equals_offline_summary(redis_pipelines: RedisPipelines, seed: int,
                                                    n: int, n_cards: int):
    rows = random_history(seed, n, n_cards)
    # Live, recording trims what is older than the retention; replay within it.
    assert rows[-1].event_ms - rows[0].event_ms < RETENTION_MS
    store = VelocityStore(redis_pipelines, prefix=unique("hist-test"))
    requests = [request_of(t) for t in rows]
    await store.record(requests)  # the whole history is known, as when replaying a file
    _, online = await store.read(requests, [], history=True)
    offline = offline_history(rows)
    assert online.shape == offline.shape == (len(rows), len(HISTORY_FIELDS))
    np.testing.assert_allclose(online, offline, rtol=1e-12, atol=1e-9, equal_nan=True)
    # ... and therefore the features the model sees.
    spec = fit_spec(rows)
    np.testing.assert_allclose(feature_matrix(rows, online, spec),
                               feature_matrix(rows, offline, spec), rtol=1e-12, atol=1e-9,
                               equal_nan=True)
    # The history is not trivially empty: the test would pass for two zero matrices otherwise.
    assert offline[:, 0].max() >= 3 and np.isnan(offline[:, 2]).sum() == n_cards
    if n > MAX_PROFILE_PAYMENTS:  # one hot card: the profile is capped, live and offline
        assert offline[:, 3].max() == MAX_PROFILE_PAYMENTS


def test_offline_summary_counts_only_strictly_earlier_payments():
    base = dict(account_id="a", card_id="c", merchant_id="m", currency="EUR", country="DE")
    rows = [
        Txn(transaction_id="1", event_ms=0, merchant_category="x", amount_minor=100, **base),
        Txn(transaction_id="2", event_ms=0, merchant_category="x", amount_minor=100, **base),
        Txn(transaction_id="3", event_ms=3_600_000, merchant_category="y", amount_minor=10_000,
            **base),
        Txn(transaction_id="4", event_ms=31 * 86_400_000, merchant_category="x",
            amount_minor=100, **base),
    ]
    summary = offline_history(rows)
    # Simultaneous payments do not see each other.
    assert summary[0].tolist()[:2] == summary[1].tolist()[:2] == [0, 0]
    assert math.isnan(summary[0][2]) and math.isnan(summary[1][2])
    count_24h, night, last_ms, count_30d, sum_ln, same = summary[2]
    assert (count_24h, last_ms, count_30d, same) == (2, 0, 2, 0)
    assert night == 2  # 00:00 UTC is night
    assert sum_ln == pytest.approx(2 * math.log(100))
    # Thirty-one days later the 30-day profile has emptied, the previous payment is known.
    assert summary[3][3] == 0 and summary[3][2] == 3_600_000


def test_feature_matrix_values():
    base = dict(account_id="a", card_id="c", merchant_id="m", currency="EUR",
                merchant_category="grocery_pos")
    first = Txn(transaction_id="1", event_ms=12 * 3_600_000, amount_minor=1000, country="DE",
                home_country="DE", **base)
    later = Txn(transaction_id="2", event_ms=(24 + 23) * 3_600_000, amount_minor=100_000,
                country="US", home_country="DE", **base)
    rows = [first, later]
    spec = fit_spec(rows * 10)
    x = feature_matrix(rows, offline_history(rows), spec)
    col = {name: i for i, name in enumerate(FEATURES)}
    assert x[0, col["amount_log"]] == pytest.approx(math.log1p(10.0))
    assert math.isnan(x[0, col["amount_vs_card"]])  # no history yet: imputed by the model
    assert math.isnan(x[0, col["seconds_since_previous_log"]])
    assert x[0, col["night"]] == 0 and x[1, col["night"]] == 1  # 12:00 and 23:00
    assert x[1, col["amount_vs_card"]] == pytest.approx(math.log(100))  # 100x the usual
    assert x[1, col["seconds_since_previous_log"]] == pytest.approx(math.log1p(35 * 3600))
    assert x[1, col["new_category_for_card"]] == 0 and x[0, col["new_category_for_card"]] == 1
    assert x[1, col["foreign_country"]] == 1 and x[0, col["foreign_country"]] == 0
    assert x[1, col["card_count_24h"]] == 0  # 35 hours later
