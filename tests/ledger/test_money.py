"""Money parsing and formatting: examples, every way to be wrong, and round-trip properties."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from ledger.money import (
    CURRENCY_EXPONENTS,
    MAX_MINOR_UNITS,
    InvalidAmount,
    MoneyError,
    UnknownCurrency,
    exponent,
    format_amount,
    parse_amount,
)

# The wire grammar, restated here so the tests do not trust the module's own regex.
PLAIN_DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?")

currencies = st.sampled_from(sorted(CURRENCY_EXPONENTS))
positive_minor = st.integers(min_value=1, max_value=MAX_MINOR_UNITS)
# Near-misses of the grammar: signs, exponents, separators, spaces, non-ASCII digits.
amount_chars = st.sampled_from([*"0123456789..", "-", "+", "e", "E", ",", "_", " ", "\n",
                                "\u0663", "\uff11", "x"])
near_miss_text = st.lists(amount_chars, max_size=12).map("".join)
# Mostly in range, so the happy path is exercised too, with leading zeros now and then.
plausible_decimals = st.builds(
    lambda zeros, whole, fraction: "0" * zeros + str(whole) + (f".{fraction}" if fraction else ""),
    st.integers(min_value=0, max_value=2), st.integers(min_value=0, max_value=10**13),
    st.from_regex(r"[0-9]{0,5}", fullmatch=True))


def test_table_spot_values() -> None:
    expected = {"USD": 2, "EUR": 2, "GBP": 2, "JPY": 0, "KRW": 0, "ISK": 0, "XOF": 0,
                "BHD": 3, "KWD": 3, "TND": 3, "IQD": 3, "OMR": 3, "CLF": 4, "UYW": 4,
                "XCG": 2, "ZWG": 2, "SLE": 2, "VED": 2}
    assert {code: CURRENCY_EXPONENTS[code] for code in expected} == expected


def test_table_shape() -> None:
    assert 150 <= len(CURRENCY_EXPONENTS) <= 180
    assert all(re.fullmatch("[A-Z]{3}", code) for code in CURRENCY_EXPONENTS)
    assert all(0 <= places <= 4 for places in CURRENCY_EXPONENTS.values())


@pytest.mark.parametrize("code", ["XAU", "XAG", "XPT", "XPD", "XTS", "XXX", "XDR", "XBA",
                                  "XSU", "XUA", "HRK", "CUC", "ZWL", "ANG"])
def test_table_leaves_out_codes_without_minor_unit_or_withdrawn(code: str) -> None:
    assert code not in CURRENCY_EXPONENTS


def test_table_is_read_only() -> None:
    with pytest.raises(TypeError):
        CURRENCY_EXPONENTS["ABC"] = 2  # type: ignore[index]


def test_exponent_rejects_lower_case_with_a_hint() -> None:
    with pytest.raises(UnknownCurrency, match=r"'usd' is not an ISO 4217 code \(codes are upper"):
        exponent("usd")


@pytest.mark.parametrize(("text", "currency", "minor"), [
    ("12.5", "USD", 1250),
    ("12.50", "USD", 1250),
    ("12", "USD", 1200),
    ("0.01", "EUR", 1),
    ("007.50", "USD", 750),
    ("1000", "JPY", 1000),
    ("1.234", "BHD", 1234),
    ("0.0001", "CLF", 1),
    ("10000000000000.00", "USD", MAX_MINOR_UNITS),
    ("1000000000000000", "JPY", MAX_MINOR_UNITS),
])
def test_parse_amount_examples(text: str, currency: str, minor: int) -> None:
    assert parse_amount(text, currency) == minor


@pytest.mark.parametrize("text", ["0", "0.00", "000.0"])
def test_parse_amount_zero_only_when_allowed(text: str) -> None:
    assert parse_amount(text, "USD", allow_zero=True) == 0
    with pytest.raises(InvalidAmount, match="must be greater than zero"):
        parse_amount(text, "USD")


@pytest.mark.parametrize(("text", "currency", "code", "message"), [
    ("12.345", "USD", "invalid_amount",
     "amount '12.345' has 3 decimal places but USD allows at most 2"),
    ("12.500", "USD", "invalid_amount", "has 3 decimal places"),
    ("1.5", "JPY", "invalid_amount", "amount '1.5' has 1 decimal place but JPY allows no decimals"),
    ("1.00001", "CLF", "invalid_amount", "has 5 decimal places but CLF allows at most 4"),
    ("", "USD", "invalid_amount", "is not a plain decimal number"),
    ("-1.00", "USD", "invalid_amount", "is not a plain decimal number"),
    ("+1.00", "USD", "invalid_amount", "is not a plain decimal number"),
    ("1e3", "USD", "invalid_amount", "is not a plain decimal number"),
    ("1,000.00", "USD", "invalid_amount", "is not a plain decimal number"),
    ("1_000", "USD", "invalid_amount", "is not a plain decimal number"),
    (" 1.00", "USD", "invalid_amount", "is not a plain decimal number"),
    ("1.00\n", "USD", "invalid_amount", "is not a plain decimal number"),
    (".50", "USD", "invalid_amount", "is not a plain decimal number"),
    ("1.", "USD", "invalid_amount", "is not a plain decimal number"),
    ("1..0", "USD", "invalid_amount", "is not a plain decimal number"),
    ("NaN", "USD", "invalid_amount", "is not a plain decimal number"),
    ("Infinity", "USD", "invalid_amount", "is not a plain decimal number"),
    ("\u0661\u0662", "USD", "invalid_amount", "is not a plain decimal number"),
    ("\uff11\uff12", "USD", "invalid_amount", "is not a plain decimal number"),
    ("0", "USD", "invalid_amount", "amount '0' must be greater than zero"),
    ("10000000000000.01", "USD", "invalid_amount",
     "amount '10000000000000.01' is above the limit of 10000000000000.00"),
    ("1000000000000001", "JPY", "invalid_amount", "is above the limit of 1000000000000000"),
    ("9" * 5000, "USD", "invalid_amount", "is above the limit"),
    ("1.00", "usd", "unknown_currency", "currency 'usd' is not an ISO 4217 code (codes are"),
    ("1.00", "XXX", "unknown_currency", "currency 'XXX' is not an ISO 4217 code"),
    ("1.00", "XAU", "unknown_currency", "currency 'XAU' is not an ISO 4217 code"),
    ("1.00", "US", "unknown_currency", "currency 'US' is not an ISO 4217 code"),
    ("1.00", "", "unknown_currency", "currency '' is not an ISO 4217 code"),
])
def test_parse_amount_rejects(text: str, currency: str, code: str, message: str) -> None:
    with pytest.raises(MoneyError) as caught:
        parse_amount(text, currency)
    assert caught.value.code == code
    assert isinstance(caught.value, UnknownCurrency if code == "unknown_currency" else
                      InvalidAmount)
    assert message in str(caught.value)


def test_errors_carry_their_fields() -> None:
    with pytest.raises(InvalidAmount) as caught:
        parse_amount("1.234", "EUR")
    assert (caught.value.text, caught.value.currency) == ("1.234", "EUR")
    with pytest.raises(UnknownCurrency) as unknown:
        exponent("eur")
    assert unknown.value.currency == "eur"


def test_leading_zeros_do_not_count_towards_the_cap() -> None:
    assert parse_amount("0" * 5000 + "1", "USD") == 100


@pytest.mark.parametrize(("minor", "currency", "text"), [
    (1250, "USD", "12.50"),
    (-5, "USD", "-0.05"),
    (0, "USD", "0.00"),
    (1000, "JPY", "1000"),
    (-1000, "JPY", "-1000"),
    (0, "JPY", "0"),
    (1, "BHD", "0.001"),
    (12345, "CLF", "1.2345"),
    (MAX_MINOR_UNITS, "USD", "10000000000000.00"),
])
def test_format_amount_examples(minor: int, currency: str, text: str) -> None:
    assert format_amount(minor, currency) == text


def test_format_amount_rejects_unknown_currency() -> None:
    with pytest.raises(UnknownCurrency):
        format_amount(100, "ABC")


@given(currencies, positive_minor)
@example("USD", MAX_MINOR_UNITS)
@example("JPY", 1)
def test_parse_undoes_format(currency: str, minor: int) -> None:
    assert parse_amount(format_amount(minor, currency), currency) == minor


@given(currencies, st.integers(min_value=0, max_value=MAX_MINOR_UNITS))
def test_format_is_canonical(currency: str, minor: int) -> None:
    text = format_amount(minor, currency)
    places = exponent(currency)
    assert PLAIN_DECIMAL.fullmatch(text)
    assert len(text.partition(".")[2]) == places
    assert text == "0" or not text.startswith("0") or text.startswith("0.")
    assert Decimal(text).scaleb(places) == minor


@given(currencies, st.integers(min_value=1, max_value=10**30))
def test_format_of_negative_is_signed_positive(currency: str, minor: int) -> None:
    assert format_amount(-minor, currency) == "-" + format_amount(minor, currency)


@given(currencies, st.one_of(plausible_decimals, st.from_regex(PLAIN_DECIMAL, fullmatch=True)))
def test_parse_agrees_with_exact_decimal_arithmetic(currency: str, text: str) -> None:
    # Decimal compares exactly; scaleb on a small integer never rounds.
    places = exponent(currency)
    try:
        minor = parse_amount(text, currency, allow_zero=True)
    except InvalidAmount:
        too_precise = len(text.partition(".")[2]) > places
        assert too_precise or Decimal(text) > Decimal(MAX_MINOR_UNITS).scaleb(-places)
    else:
        assert Decimal(minor).scaleb(-places) == Decimal(text)


@given(currencies, st.one_of(near_miss_text, st.text(max_size=20)))
@example("USD", "1.")
@example("USD", "\u0661")
def test_parse_never_accepts_what_the_grammar_rejects(currency: str, text: str) -> None:
    if PLAIN_DECIMAL.fullmatch(text):
        return
    with pytest.raises(InvalidAmount, match="is not a plain decimal number"):
        parse_amount(text, currency, allow_zero=True)


@given(currencies, st.text(max_size=20), st.booleans())
def test_parse_raises_only_money_errors(currency: str, text: str, allow_zero: bool) -> None:
    try:
        minor = parse_amount(text, currency, allow_zero=allow_zero)
    except MoneyError as exc:
        assert exc.code == "invalid_amount"
    else:
        assert (0 if allow_zero else 1) <= minor <= MAX_MINOR_UNITS
