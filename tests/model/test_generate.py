"""The synthetic generator: deterministic, realistic enough, and each fraud pattern as promised."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import pytest

from model.data import read_native
from model.generate import (
    CATEGORIES,
    EXPONENT,
    FX_PER_EUR,
    ONLINE,
    PATTERNS,
    START_MS,
    generate,
    main,
)
from model.history import local_hour
from model.records import Txn

DAY_MS = 86_400_000
ONLINE_NAMES = {CATEGORIES[c][0] for c in ONLINE}


@pytest.fixture(scope="module")
def rows() -> list[Txn]:
    return generate(300, 30, 5)


def by_pattern(rows: list[Txn], pattern: str) -> list[Txn]:
    return [r for r in rows if r.pattern == pattern]


def eur(txn: Txn) -> float:
    """The amount in EUR, the unit the generator's pattern amounts are defined in."""
    return txn.amount_minor / 10.0 ** txn.exponent / FX_PER_EUR[txn.currency]


def hour(txn: Txn) -> int:
    return local_hour(txn.event_ms, txn.utc_offset_min)


def km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2, dlon = math.radians(lat1), math.radians(lat2), math.radians(lon2 - lon1)
    cos = math.sin(p1) * math.sin(p2) + math.cos(p1) * math.cos(p2) * math.cos(dlon)
    return 6371.0 * math.acos(max(-1.0, min(1.0, cos)))


def test_same_seed_same_rows_other_seed_other_rows() -> None:
    first = generate(40, 10, 3)
    assert generate(40, 10, 3) == first
    other = generate(40, 10, 4)
    assert other != first
    assert {r.transaction_id for r in other}.isdisjoint(r.transaction_id for r in first)


def test_rows_are_sorted_unique_within_the_period_and_well_typed(rows: list[Txn]) -> None:
    assert rows == sorted(rows, key=lambda r: (r.event_ms, r.transaction_id))
    assert len({r.transaction_id for r in rows}) == len(rows)
    assert all(r.transaction_id.startswith("t-5-") for r in rows)
    assert all(START_MS <= r.event_ms < START_MS + 30 * DAY_MS for r in rows)
    for r in rows:
        assert type(r.amount_minor) is int and r.amount_minor > 0
        assert type(r.event_ms) is int and type(r.utc_offset_min) is int
        assert type(r.lat) is float and type(r.home_lat) is float
        assert r.account_created_ms is not None and r.account_created_ms < START_MS - 30 * DAY_MS
        assert r.exponent == EXPONENT[r.currency]
        assert r.account_id.startswith("acc-") and r.card_id.startswith("card-")
        assert r.merchant_id.startswith(("m-", "hr-"))


def test_fraud_share_and_every_pattern_present(rows: list[Txn]) -> None:
    fraud = [r for r in rows if r.is_fraud]
    assert 0.008 <= len(fraud) / len(rows) <= 0.025
    assert {r.pattern for r in fraud} == set(PATTERNS)
    assert all(r.is_fraud is False and r.pattern is None for r in rows if not r.is_fraud)


def test_accounts_have_one_home_one_currency_and_one_or_two_cards(rows: list[Txn]) -> None:
    homes: dict[str, set[tuple[object, ...]]] = defaultdict(set)
    cards: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        homes[r.account_id].add((r.home_country, r.home_lat, r.home_lon, r.currency,
                                 r.account_created_ms))
        cards[r.account_id].add(r.card_id)
    assert all(len(h) == 1 for h in homes.values())
    assert {len(c) for c in cards.values()} == {1, 2}
    assert len({next(iter(h))[0] for h in homes.values()}) >= 6


def test_legitimate_payments_are_mostly_near_home_by_day(rows: list[Txn]) -> None:
    legit = [r for r in rows if not r.is_fraud]
    near = sum(km(r.home_lat, r.home_lon, r.lat, r.lon) <= 30  # type: ignore[arg-type]
               for r in legit)
    assert near / len(legit) >= 0.9
    assert sum(r.country != r.home_country for r in legit) / len(legit) < 0.02
    assert sum(hour(r) < 5 for r in legit) / len(legit) < 0.05
    assert len({r.merchant_category for r in legit}) == len(CATEGORIES)


def test_card_testing_bursts_are_small_online_and_minutes_long(rows: list[Txn]) -> None:
    bursts: dict[str, list[Txn]] = defaultdict(list)
    for r in by_pattern(rows, "card_testing"):
        bursts[r.card_id].append(r)
    assert bursts
    for burst in bursts.values():
        small = [r for r in burst if eur(r) <= 5.0 + 0.01]
        assert len(small) >= 5 and all(eur(r) >= 0.5 - 0.01 for r in small)
        assert len(burst) - len(small) <= 1  # the cash-out, if any, comes last
        assert burst[:len(small)] == small
        assert burst[-1].event_ms - burst[0].event_ms <= 45 * 60_000
        assert {r.merchant_category for r in burst} <= ONLINE_NAMES
        assert len({r.account_id for r in burst}) == 1


def test_account_takeover_is_abroad_far_from_home_and_expensive(rows: list[Txn]) -> None:
    usual: dict[str, list[int]] = defaultdict(list)
    merchants: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        if not r.is_fraud:
            usual[r.account_id].append(r.amount_minor)
            merchants[r.account_id].add(r.merchant_id)
    takeovers = by_pattern(rows, "account_takeover")
    assert takeovers
    for r in takeovers:
        assert r.country != r.home_country
        assert km(r.home_lat, r.home_lon, r.lat, r.lon) >= 1_400  # type: ignore[arg-type]
        assert r.merchant_id not in merchants[r.account_id]
        amounts = sorted(usual[r.account_id])
        assert not amounts or r.amount_minor >= 2 * amounts[len(amounts) // 2]


def test_night_high_amount_is_at_night_local_time(rows: list[Txn]) -> None:
    night = by_pattern(rows, "night_high_amount")
    assert night
    assert all(0 <= hour(r) <= 4 for r in night)
    assert all(r.country == r.home_country for r in night)
    legit_median = sorted(eur(r) for r in rows if not r.is_fraud)[len(rows) // 2]
    assert sorted(eur(r) for r in night)[len(night) // 2] >= 3 * legit_median


def test_high_risk_merchant_rows_use_the_hr_shops(rows: list[Txn]) -> None:
    risky = by_pattern(rows, "high_risk_merchant")
    assert risky
    assert all(r.merchant_id.startswith("hr-") for r in risky)
    assert {r.merchant_category for r in risky} <= ONLINE_NAMES
    high_risk_ids = {r.merchant_id for r in rows if r.merchant_id.startswith("hr-")}
    assert len(high_risk_ids) <= 16


def test_local_offsets_follow_summer_time() -> None:
    start = int(datetime(2026, 3, 20, tzinfo=UTC).timestamp() * 1000)
    switch = int(datetime(2026, 3, 29, 1, tzinfo=UTC).timestamp() * 1000)  # EU
    # At a German shop, so in Germany (an online favourite may be paid from a trip abroad).
    rows = [r for r in generate(120, 20, 9, start_ms=start) if r.country == "DE"
            and r.merchant_category not in ONLINE_NAMES and not r.is_fraud]
    assert rows
    assert {r.utc_offset_min for r in rows if r.event_ms < switch} == {60}
    assert {r.utc_offset_min for r in rows if r.event_ms >= switch} == {120}


def test_tiny_runs_work() -> None:
    assert all(START_MS <= r.event_ms < START_MS + DAY_MS for r in generate(1, 1, 0))
    with pytest.raises(ValueError):
        generate(0, 5, 1)


def test_cli_writes_the_native_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "x.csv.gz"
    assert main(["--accounts", "20", "--days", "5", "--seed", "1", "--out", str(out)]) == 0
    rows = generate(20, 5, 1)
    assert read_native(out) == rows
    frauds = sum(1 for r in rows if r.is_fraud)
    assert capsys.readouterr().out.strip() == (
        f"wrote {len(rows)} transactions ({frauds} fraud) to {out}")
