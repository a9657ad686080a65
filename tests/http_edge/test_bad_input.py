"""Malformed bodies and headers: each a 4xx with its stable code, never a 500, nothing written."""

from __future__ import annotations

import msgspec
import pytest

from tests.conftest import unique

GOOD = {"transaction_id": "T", "account_id": "A", "card_id": "card-1",
        "merchant_id": "merchant-1", "amount": "10.00", "currency": "EUR",
        "merchant_category": "grocery_pos", "country": "DE",
        "timestamp": "2026-11-29T10:00:00Z"}


def without(field):
    return {k: v for k, v in GOOD.items() if k != field}


BODIES = [
    ("not json", b"{nope", 400, "malformed_json", None),
    ("empty body", b"", 400, "malformed_json", None),
    ("invalid utf-8", b'{"transaction_id": "\xff\xfe"}', 400, "malformed_json", None),
    ("deep nesting", b"[" * 10_000 + b"]" * 10_000, 422, "invalid_body", "/"),
    ("trailing garbage", msgspec.json.encode(GOOD) + b" x", 400, "malformed_json", None),
    ("array body", [1, 2], 422, "invalid_body", "/"),
    ("unknown field", {**GOOD, "amout": "1"}, 422, "unknown_field", "/amout"),
    ("missing amount", without("amount"), 422, "missing_field", "/amount"),
    ("missing timestamp", without("timestamp"), 422, "missing_field", "/timestamp"),
    ("amount as number", {**GOOD, "amount": 10.0}, 422, "invalid_field", "/amount"),
    ("negative amount", {**GOOD, "amount": "-10.00"}, 422, "invalid_amount", "/amount"),
    ("zero amount", {**GOOD, "amount": "0.00"}, 422, "invalid_amount", "/amount"),
    ("too many decimals", {**GOOD, "amount": "10.001"}, 422, "invalid_amount", "/amount"),
    ("exponent amount", {**GOOD, "amount": "1e3"}, 422, "invalid_amount", "/amount"),
    ("huge amount", {**GOOD, "amount": "99999999999999999999"}, 422, "invalid_amount", "/amount"),
    ("lower-case currency", {**GOOD, "currency": "eur"}, 422, "unknown_currency", "/currency"),
    ("unknown currency", {**GOOD, "currency": "ABC"}, 422, "unknown_currency", "/currency"),
    ("unknown country", {**GOOD, "country": "XX"}, 422, "unknown_country", "/country"),
    ("long country", {**GOOD, "country": "DEU"}, 422, "unknown_country", "/country"),
    ("naive timestamp", {**GOOD, "timestamp": "2026-11-29T10:00:00"}, 422, "invalid_field",
     "/timestamp"),
    ("bad timestamp", {**GOOD, "timestamp": "yesterday"}, 422, "invalid_field", "/timestamp"),
    ("latitude out of range", {**GOOD, "lat": 91.0, "lon": 0.0}, 422, "invalid_field", "/lat"),
    ("lat without lon", {**GOOD, "lat": 10.0}, 422, "invalid_field", "/lat"),
    ("id with spaces", {**GOOD, "card_id": "card 1"}, 422, "invalid_field", "/card_id"),
    ("sql in id", {**GOOD, "merchant_id": "x'; DROP TABLE postings;--"}, 422, "invalid_field",
     "/merchant_id"),
    ("null amount", {**GOOD, "amount": None}, 422, "invalid_field", "/amount"),
]


@pytest.mark.parametrize(("body", "status", "code", "pointer"),
                         [case[1:] for case in BODIES], ids=[case[0] for case in BODIES])
async def test_malformed_body_is_a_precise_4xx_and_writes_nothing(
        server, pool, make_account, body, status, code, pointer):
    account = await make_account(deposit="100.00")
    payload = dict(body, account_id=account) if isinstance(body, dict) else body
    raw = payload if isinstance(payload, bytes) else None
    got, problem, headers = await server.call(
        "POST", "/v1/transactions", json=None if raw is not None else payload, raw=raw,
        headers={"Idempotency-Key": unique("k")})
    assert (got, problem["code"]) == (status, code), problem
    assert headers["Content-Type"].startswith("application/problem+json")
    assert problem["detail"]
    if pointer is not None:
        assert problem["pointer"] == pointer
    assert await pool.fetchval("SELECT count(*) FROM transactions WHERE account_id = $1",
                               account) == 0
    assert await pool.fetchval("SELECT balance_minor FROM accounts WHERE account_id = $1",
                               account) == 10000


HEADERS = [
    ("no idempotency key", {}, 400, "missing_idempotency_key"),
    ("blank idempotency key", {"Idempotency-Key": "  "}, 400, "missing_idempotency_key"),
    ("key with spaces", {"Idempotency-Key": "a b"}, 400, "invalid_idempotency_key"),
    ("key too long", {"Idempotency-Key": "k" * 256}, 400, "invalid_idempotency_key"),
    ("wrong content type", {"Idempotency-Key": "k", "Content-Type": "text/plain"}, 415,
     "unsupported_media_type"),
]


@pytest.mark.parametrize(("headers", "status", "code"), [c[1:] for c in HEADERS],
                         ids=[c[0] for c in HEADERS])
async def test_bad_headers(server, pool, make_account, make_transaction, headers, status, code):
    account = await make_account(deposit="100.00")
    got, problem, _ = await server.call("POST", "/v1/transactions",
                                        json=make_transaction(account), headers=headers)
    assert (got, problem["code"]) == (status, code), problem
    assert await pool.fetchval("SELECT count(*) FROM transactions WHERE account_id = $1",
                               account) == 0


async def test_oversized_body_is_413(server):
    got, problem, _ = await server.call("POST", "/v1/transactions",
                                        raw=b'{"a": "' + b"x" * 70_000 + b'"}',
                                        headers={"Idempotency-Key": "big"})
    assert (got, problem["code"]) == (413, "payload_too_large")


ACCOUNT_BODIES = [
    ({"account_id": "a:b", "currency": "EUR", "home_country": "DE"}, "invalid_field"),
    ({"account_id": "ok1", "currency": "EURO", "home_country": "DE"}, "unknown_currency"),
    ({"account_id": "ok2", "currency": "EUR", "home_country": "ZZ"}, "unknown_country"),
    ({"account_id": "ok3", "currency": "EUR", "home_country": "DE", "overdraft_limit": "-1"},
     "invalid_amount"),
    ({"account_id": "ok4", "currency": "EUR", "home_country": "DE", "home_lon": 1.0},
     "invalid_field"),
    ({"account_id": "ok5", "currency": "EUR"}, "missing_field"),
]


@pytest.mark.parametrize(("body", "code"), ACCOUNT_BODIES)
async def test_bad_account_bodies(server, pool, body, code):
    got, problem, _ = await server.call("POST", "/v1/accounts", json=body)
    assert (got, problem["code"]) == (422, code), problem
    assert await pool.fetchval("SELECT count(*) FROM accounts WHERE account_id = $1",
                               body["account_id"]) == 0


async def test_bad_deposit_bodies(server, pool, make_account):
    account = await make_account()
    for body, code in [({"amount": "1.00"}, "missing_field"),
                       ({"amount": "-1.00", "currency": "EUR"}, "invalid_amount"),
                       ({"amount": "1.00", "currency": "EUR", "x": 1}, "unknown_field")]:
        got, problem, _ = await server.call("POST", f"/v1/accounts/{account}/deposits",
                                            json=body, headers={"Idempotency-Key": unique("d")})
        assert (got, problem["code"]) == (422, code), problem
    assert await pool.fetchval("SELECT count(*) FROM deposits WHERE account_id = $1",
                               account) == 0


async def test_unknown_route_and_method_are_problems(server):
    got, problem, _ = await server.call("GET", "/v1/nothing-here")
    assert (got, problem["code"]) == (404, "not_found")
    got, problem, _ = await server.call("DELETE", "/v1/transactions")
    assert (got, problem["code"]) == (405, "method_not_allowed")


@pytest.mark.parametrize("path", [
    "/v1/accounts/%00/balance", "/v1/accounts/a%20b/transactions", "/v1/accounts/" + "x" * 65,
    "/v1/transactions/%00", "/v1/transactions/%F0%9F%92%B3"])
async def test_impossible_ids_in_paths_are_404_not_500(server, path):
    got, problem, _ = await server.call("GET", path)
    assert got == 404, problem
    assert problem["code"] in ("account_not_found", "transaction_not_found")


async def test_deposit_to_impossible_account_is_404(server):
    got, problem, _ = await server.call("POST", "/v1/accounts/%00/deposits",
                                        json={"amount": "1.00", "currency": "EUR"},
                                        headers={"Idempotency-Key": unique("d")})
    assert (got, problem["code"]) == (404, "account_not_found")


async def test_request_id_is_echoed_only_when_safe(server):
    _, _, headers = await server.call("GET", "/healthz", scopes=(),
                                      headers={"X-Request-Id": "abc-123"})
    assert headers["X-Request-Id"] == "abc-123"
    _, _, headers = await server.call("GET", "/healthz", scopes=(),
                                      headers={"X-Request-Id": "<script>"})
    assert headers["X-Request-Id"] != "<script>" and len(headers["X-Request-Id"]) == 32
