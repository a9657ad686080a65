"""GCRA arithmetic and the rate-limit header fields: pure logic with an explicit clock."""

from __future__ import annotations

import pytest

from http_edge.problems import rate_limit_headers, rate_limit_policy
from stages.gcra import Limit, admit, throttle, whole_seconds
from stages.ratelimit import Quota

T0 = 1_700_000_000_000_000  # µs
S = 1_000_000


def run(limit: Limit, times_us: list[int]) -> list[bool]:
    tat: int | None = None
    allowed = []
    for now in times_us:
        outcome = throttle(tat, now, limit)
        tat = outcome.tat_us
        allowed.append(outcome.allowed)
    return allowed


def test_an_idle_key_allows_the_burst_at_once_then_denies():
    limit = Limit(per_s=10, burst=5)
    tat = None
    remaining = []
    for _ in range(5):
        outcome = throttle(tat, T0, limit)
        assert outcome.allowed
        remaining.append(outcome.remaining)
        tat = outcome.tat_us
    assert remaining == [4, 3, 2, 1, 0]
    sixth = throttle(tat, T0, limit)
    # One interval (100 ms) until a cell frees; the bucket is full again after 5 intervals.
    assert sixth == (False, 0, 100_000, 500_000, tat)


def test_after_the_burst_the_steady_rate_is_allowed_exactly():
    limit = Limit(per_s=10, burst=5)
    burst = [T0] * 5
    assert all(run(limit, [*burst, *(T0 + i * 100_000 for i in range(1, 50))]))
    # One microsecond early, every time: the first steady request is already too soon.
    assert run(limit, [*burst, T0 + 99_999]) == [True] * 5 + [False]
    # Slower than the rate: the burst refills (but never beyond `burst`).
    assert run(limit, [*burst, T0 + 10 * S, *[T0 + 10 * S] * 5]) == [True] * 10 + [False]


def test_a_denied_request_consumes_nothing():
    limit = Limit(per_s=1, burst=1)
    first = throttle(None, T0, limit)
    denied = throttle(first.tat_us, T0 + 1, limit)
    assert not denied.allowed and denied.tat_us == first.tat_us
    assert denied.retry_after_us == S - 1
    assert throttle(denied.tat_us, T0 + S, limit).allowed


def test_limits_in_integer_microseconds():
    assert Limit(per_s=3, burst=2).interval_us == 333_333
    assert Limit(per_s=3, burst=2).tolerance_us == 666_666
    assert Limit(per_s=0.5, burst=1).interval_us == 2 * S
    assert not Limit(per_s=0, burst=0).enabled


def test_card_denial_leaves_the_client_budget_alone():
    client, card = Limit(per_s=100, burst=10), Limit(per_s=1, burst=1)
    tats: dict[str, int] = {}
    assert admit(tats, T0, ("c", client), ("k", card)).scope is None
    client_tat = tats["c"]
    denied = admit(tats, T0, ("c", client), ("k", card))
    assert denied.scope == "card" and denied.retry_after_us == S
    assert tats["c"] == client_tat  # the client's budget was not charged
    allowed = admit(tats, T0, ("c", client), ("other", card))
    assert allowed.scope is None and allowed.remaining == 8


def test_when_both_limits_deny_the_longer_wait_is_named():
    client, card = Limit(per_s=10, burst=1), Limit(per_s=1, burst=1)
    tats: dict[str, int] = {}
    admit(tats, T0, ("c", client), ("k", card))
    denied = admit(tats, T0, ("c", client), ("k", card))
    assert (denied.scope, denied.retry_after_us) == ("card", S)
    # Once the card has room, the client's own wait is what remains.
    tats["k"] = T0
    assert admit(tats, T0, ("c", client), ("k", card)).scope == "client"


def test_client_limit_off():
    tats: dict[str, int] = {}
    assert admit(tats, T0, None, ("k", Limit(1, 1))) == (None, -1, 0, 0)
    assert admit(tats, T0, None, None) == (None, -1, 0, 0)


@pytest.mark.parametrize(("duration_us", "seconds"), [
    (0, 1), (1, 1), (S, 1), (S + 1, 2), (2_500_000, 3)])
def test_whole_seconds_round_up_to_at_least_one(duration_us, seconds):
    assert whole_seconds(duration_us) == seconds


@pytest.mark.parametrize(("limit", "policy"), [
    (Limit(5000, 5000), "5000;w=1;burst=5000"),
    (Limit(3, 5), "3;w=1;burst=5"),
    (Limit(0.5, 2), "1;w=2;burst=2"),
    (Limit(0.2, 1), "1;w=5;burst=1"),
    (Limit(2.5, 4), "5;w=2;burst=4"),
    (Limit(1 / 7, 1), "514;w=3600;burst=1"),
])
def test_policy_field(limit, policy):
    assert rate_limit_policy(limit) == policy


def test_header_fields():
    quota = Quota(Limit(per_s=10, burst=5), remaining=3, reset_us=200_001)
    assert rate_limit_headers(quota) == {
        "RateLimit-Limit": "5", "RateLimit-Remaining": "3", "RateLimit-Reset": "1",
        "RateLimit-Policy": "10;w=1;burst=5"}
