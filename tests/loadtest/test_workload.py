"""The bench's population and payments: valid requests, steady spread over accounts and
cards, money formatted per currency."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from http_edge.schemas import AccountIn, TransactionIn
from loadtest.workload import (
    HABITUAL_SHARE,
    EverydayPayments,
    SimulatedClock,
    account_body,
    build_world,
    deposit_body,
    format_amount,
)


@pytest.mark.parametrize(("major", "currency", "text"), [
    (12.346, "EUR", "12.35"), (0.001, "EUR", "0.01"), (1500.0, "JPY", "1500"),
    (0.2, "JPY", "1"), (7.0, "USD", "7.00"), (1_000_000_000, "GBP", "1000000000.00")])
def test_format_amount(major: float, currency: str, text: str) -> None:
    assert format_amount(major, currency) == text


def test_the_same_seed_builds_the_same_world() -> None:
    assert build_world("b", 50, 40, seed=3) == build_world("b", 50, 40, seed=3)
    assert build_world("b", 50, 40, seed=3) != build_world("b", 50, 40, seed=4)


def test_a_world_needs_a_shop_in_every_country() -> None:
    with pytest.raises(ValueError, match="merchants"):
        build_world("b", 10, 5)


def test_every_country_has_merchants() -> None:
    world = build_world("b", 10, 100)
    assert len(world.merchants) == 100
    assert all(world.by_country[m.country] for m in world.merchants)
    assert {"BR", "JP", "DE"} <= set(world.by_country)


def test_payments_and_accounts_are_valid_requests() -> None:
    world = build_world("b", 30, 60)
    for account in world.accounts:
        msgspec.convert(account_body(account), AccountIn)
        assert deposit_body(account)["currency"] == account.currency
    payments = EverydayPayments(world, seed=1)
    for k in range(200):
        body = msgspec.convert(payments.body(f"t-{k}", k), TransactionIn)
        account = world.accounts[k % 30]
        assert body.account_id == account.account_id
        assert body.currency == account.currency
        assert body.card_id in account.cards


def test_every_card_pays_at_the_same_pace() -> None:
    world = build_world("b", 20, 30)
    payments = EverydayPayments(world, seed=1)
    per_card = Counter(payments.body(f"t-{k}", k)["card_id"] for k in range(20 * 2 * 10))
    for account in world.accounts:
        assert sum(per_card[card] for card in account.cards) == 20
        assert {per_card[card] for card in account.cards} <= {10, 20}


def test_accounts_pay_mostly_at_their_regular_shops_near_home() -> None:
    world = build_world("b", 40, 500)
    regulars = [a for a in world.accounts if a.habitual]
    assert len(regulars) >= 30
    for account in regulars:
        assert all(abs(shop.lat - account.lat) <= 0.16 and abs(shop.lon - account.lon) <= 0.16
                   and shop.country == account.country for shop in account.habitual)
    payments = EverydayPayments(world, seed=2)
    at_regular = at_home = 0
    for k in range(4000):
        account = world.accounts[k % 40]
        body = payments.body(f"t-{k}", k)
        if account.habitual and body["country"] == account.country:
            at_home += 1
            at_regular += body["merchant_id"] in {m.merchant_id for m in account.habitual}
    # A regular shop 75 % of the time, plus the other home shops that happen to be one.
    assert HABITUAL_SHARE - 0.05 <= at_regular / at_home <= HABITUAL_SHARE + 0.15


def test_the_simulated_clock_runs_fast_and_payments_follow_the_day() -> None:
    origin = datetime(2026, 11, 1, tzinfo=UTC)
    clock = SimulatedClock(origin, time.time() - 2.0, speedup=3600.0)
    assert timedelta(hours=1.9) <= clock.now() - origin <= timedelta(hours=2.5)
    world = build_world("b", 30, 100)
    payments = EverydayPayments(world, seed=3, clock=clock)
    hours = Counter()
    for k in range(3000):
        stamp = datetime.fromisoformat(payments.body(f"t-{k}", k)["timestamp"])
        assert abs(stamp.astimezone(UTC) - clock.now()) <= timedelta(days=1)
        hours[stamp.hour] += 1
    # The generator's day profile: few payments between midnight and five, most by day.
    assert sum(hours[h] for h in range(5)) / 3000 < 0.05
    assert sum(hours[h] for h in range(9, 21)) / 3000 > 0.7
