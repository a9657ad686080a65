"""Checks msgspec cannot express, and the turn from wire bodies into domain records.

Money strings become integer minor units here (per the currency's ISO 4217 exponent), ISO codes
are checked against their tables, and each write gets its idempotency fingerprint.
"""

from __future__ import annotations

import hashlib

import msgspec

from http_edge.problems import InvalidBody, InvalidHeader
from http_edge.schemas import AccountIn, DepositIn, TransactionIn
from ledger.geo import check_country
from ledger.money import MoneyError, exponent, parse_amount
from ledger.records import AccountSpec, PaymentRequest

MAX_IDEMPOTENCY_KEY_CHARS = 255
_encode_fingerprint = msgspec.msgpack.Encoder().encode


def idempotency_key(header: str | None) -> str:
    """The key from the bare form (`abc`) or the structured-field string form (`"abc"`)."""
    if header is None or not header.strip():
        raise InvalidHeader("the Idempotency-Key header is required for this request",
                            code="missing_idempotency_key")
    key = header.strip()
    if len(key) >= 2 and key[0] == key[-1] == '"':
        key = key[1:-1]
    if not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY_CHARS or not all(
            "!" <= ch <= "~" and ch != '"' for ch in key):
        raise InvalidHeader(
            f"the Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY_CHARS} visible ASCII "
            f"characters without spaces or quotes", code="invalid_idempotency_key")
    return key


def money(text: str, currency: str, field: str, *, allow_zero: bool = False) -> int:
    try:
        return parse_amount(text, currency, allow_zero=allow_zero)
    except MoneyError as exc:
        pointer = "/currency" if exc.code == "unknown_currency" else f"/{field}"
        raise InvalidBody(str(exc), code=exc.code, pointer=pointer) from None


def currency_code(code: str) -> str:
    try:
        exponent(code)
    except MoneyError as exc:
        raise InvalidBody(str(exc), code=exc.code, pointer="/currency") from None
    return code


def country_code(code: str, field: str) -> str:
    try:
        return check_country(code)
    except ValueError as exc:
        raise InvalidBody(str(exc), code="unknown_country", pointer=f"/{field}") from None


def _coordinates(lat: float | None, lon: float | None,
                 lat_field: str) -> tuple[float | None, float | None]:
    if (lat is None) != (lon is None):
        raise InvalidBody("give both latitude and longitude, or neither",
                          code="invalid_field", pointer=f"/{lat_field}")
    # The ledger stores 6 decimals (about 0.1 m); round here so replays compare equal.
    return (None if lat is None else round(lat, 6), None if lon is None else round(lon, 6))


def payment_request(body: TransactionIn, *, client_id: str, idem_key: str) -> PaymentRequest:
    currency = currency_code(body.currency)
    amount_minor = money(body.amount, currency, "amount")
    country = country_code(body.country, "country")
    lat, lon = _coordinates(body.lat, body.lon, "lat")
    canonical = (body.transaction_id, body.account_id, body.card_id, body.merchant_id,
                 amount_minor, currency, body.merchant_category, country, lat, lon,
                 body.timestamp.isoformat())
    return PaymentRequest(
        client_id=client_id, idem_key=idem_key,
        fingerprint=hashlib.sha256(_encode_fingerprint(canonical)).hexdigest(),
        transaction_id=body.transaction_id, account_id=body.account_id, card_id=body.card_id,
        merchant_id=body.merchant_id, amount_minor=amount_minor, currency=currency,
        merchant_category=body.merchant_category, country=country, lat=lat, lon=lon,
        event_time=body.timestamp)


def account_spec(body: AccountIn) -> AccountSpec:
    currency = currency_code(body.currency)
    home_lat, home_lon = _coordinates(body.home_lat, body.home_lon, "home_lat")
    return AccountSpec(
        account_id=body.account_id, currency=currency,
        home_country=country_code(body.home_country, "home_country"),
        home_lat=home_lat, home_lon=home_lon,
        overdraft_limit_minor=money(body.overdraft_limit, currency, "overdraft_limit",
                                     allow_zero=True))


def deposit(body: DepositIn, account_id: str) -> tuple[int, bytes]:
    """(amount in minor units, fingerprint) of a deposit request."""
    currency = currency_code(body.currency)
    amount_minor = money(body.amount, currency, "amount")
    canonical = ("deposit", account_id, amount_minor, currency)
    return amount_minor, hashlib.sha256(_encode_fingerprint(canonical)).digest()
