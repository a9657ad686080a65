"""The bench's population and payments: valid requests, steady spread over accounts and
cards, money formatted per currency."""

from __future__ import annotations

from collections import Counter

import msgspec
import pytest

from http_edge.schemas import AccountIn, TransactionIn
from loadtest.workload import (
    EverydayPayments,
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
