"""Money: integer minor units inside, canonical decimal strings outside, never floats.

`CURRENCY_EXPONENTS` holds every active ISO 4217 code with a minor unit, as of list one in
late 2026 (funds, metals and testing codes without one are left out; ANG, BGN, CUC, HRK, SLL
and ZWL are withdrawn). Parsing refuses anything that is not a plain non-negative decimal
within the currency's precision. Errors, each with a stable `code`:

    MoneyError (ValueError)   money_error
    ├── UnknownCurrency       unknown_currency
    └── InvalidAmount         invalid_amount
"""

from __future__ import annotations

import re
from types import MappingProxyType

MAX_MINOR_UNITS = 10**15  # a sane cap per amount, far inside int64
# Longer digit strings are over the cap for sure; checking length first keeps int() from
# ever seeing a huge string (slow, and past 4300 digits a bare ValueError).
_MAX_DIGITS = len(str(MAX_MINOR_UNITS))

_AMOUNT = re.compile(r"[0-9]+(?:\.[0-9]+)?")

CURRENCY_EXPONENTS = MappingProxyType({
    "AED": 2, "AFN": 2, "ALL": 2, "AMD": 2, "AOA": 2, "ARS": 2, "AUD": 2, "AWG": 2, "AZN": 2,
    "BAM": 2, "BBD": 2, "BDT": 2, "BHD": 3, "BIF": 0, "BMD": 2, "BND": 2, "BOB": 2, "BOV": 2,
    "BRL": 2, "BSD": 2, "BTN": 2, "BWP": 2, "BYN": 2, "BZD": 2, "CAD": 2, "CDF": 2, "CHE": 2,
    "CHF": 2, "CHW": 2, "CLF": 4, "CLP": 0, "CNY": 2, "COP": 2, "COU": 2, "CRC": 2, "CUP": 2,
    "CVE": 2, "CZK": 2, "DJF": 0, "DKK": 2, "DOP": 2, "DZD": 2, "EGP": 2, "ERN": 2, "ETB": 2,
    "EUR": 2, "FJD": 2, "FKP": 2, "GBP": 2, "GEL": 2, "GHS": 2, "GIP": 2, "GMD": 2, "GNF": 0,
    "GTQ": 2, "GYD": 2, "HKD": 2, "HNL": 2, "HTG": 2, "HUF": 2, "IDR": 2, "ILS": 2, "INR": 2,
    "IQD": 3, "IRR": 2, "ISK": 0, "JMD": 2, "JOD": 3, "JPY": 0, "KES": 2, "KGS": 2, "KHR": 2,
    "KMF": 0, "KPW": 2, "KRW": 0, "KWD": 3, "KYD": 2, "KZT": 2, "LAK": 2, "LBP": 2, "LKR": 2,
    "LRD": 2, "LSL": 2, "LYD": 3, "MAD": 2, "MDL": 2, "MGA": 2, "MKD": 2, "MMK": 2, "MNT": 2,
    "MOP": 2, "MRU": 2, "MUR": 2, "MVR": 2, "MWK": 2, "MXN": 2, "MXV": 2, "MYR": 2, "MZN": 2,
    "NAD": 2, "NGN": 2, "NIO": 2, "NOK": 2, "NPR": 2, "NZD": 2, "OMR": 3, "PAB": 2, "PEN": 2,
    "PGK": 2, "PHP": 2, "PKR": 2, "PLN": 2, "PYG": 0, "QAR": 2, "RON": 2, "RSD": 2, "RUB": 2,
    "RWF": 0, "SAR": 2, "SBD": 2, "SCR": 2, "SDG": 2, "SEK": 2, "SGD": 2, "SHP": 2, "SLE": 2,
    "SOS": 2, "SRD": 2, "SSP": 2, "STN": 2, "SVC": 2, "SYP": 2, "SZL": 2, "THB": 2, "TJS": 2,
    "TMT": 2, "TND": 3, "TOP": 2, "TRY": 2, "TTD": 2, "TWD": 2, "TZS": 2, "UAH": 2, "UGX": 0,
    "USD": 2, "USN": 2, "UYI": 0, "UYU": 2, "UYW": 4, "UZS": 2, "VED": 2, "VES": 2, "VND": 0,
    "VUV": 0, "WST": 2, "XAF": 0, "XCD": 2, "XCG": 2, "XOF": 0, "XPF": 0, "YER": 2, "ZAR": 2,
    "ZMW": 2, "ZWG": 2,
})


class MoneyError(ValueError):
    code = "money_error"


class UnknownCurrency(MoneyError):
    code = "unknown_currency"

    def __init__(self, currency: str) -> None:
        hint = " (codes are upper case)" if currency.upper() in CURRENCY_EXPONENTS else ""
        super().__init__(f"currency {currency!r} is not an ISO 4217 code{hint}")
        self.currency = currency


class InvalidAmount(MoneyError):
    code = "invalid_amount"

    def __init__(self, text: str, currency: str, reason: str) -> None:
        super().__init__(f"amount {text!r} {reason}")
        self.text = text
        self.currency = currency
        self.reason = reason


def exponent(currency: str) -> int:
    """Minor-unit exponent of an ISO 4217 code (exactly three upper-case letters)."""
    try:
        return CURRENCY_EXPONENTS[currency]
    except KeyError:
        raise UnknownCurrency(currency) from None


def parse_amount(text: str, currency: str, *, allow_zero: bool = False) -> int:
    """A decimal string such as "12.5" to integer minor units (1250 for EUR)."""
    places = exponent(currency)
    if not _AMOUNT.fullmatch(text):
        raise InvalidAmount(text, currency, "is not a plain decimal number like '12.34'")
    whole, _, fraction = text.partition(".")
    if len(fraction) > places:
        raise InvalidAmount(text, currency, f"has {_decimals(len(fraction))} but "
                            f"{currency} allows {_at_most(places)}")
    digits = (whole + fraction.ljust(places, "0")).lstrip("0")
    if len(digits) > _MAX_DIGITS or int(digits or "0") > MAX_MINOR_UNITS:
        raise InvalidAmount(text, currency, f"is above the limit of "
                            f"{format_amount(MAX_MINOR_UNITS, currency)}")
    if not digits and not allow_zero:
        raise InvalidAmount(text, currency, "must be greater than zero")
    return int(digits or "0")


def format_amount(minor: int, currency: str) -> str:
    """Integer minor units to the canonical string with exactly the currency's decimals."""
    places = exponent(currency)
    sign = "-" if minor < 0 else ""
    digits = str(abs(minor)).rjust(places + 1, "0")
    if places == 0:
        return sign + digits
    return f"{sign}{digits[:-places]}.{digits[-places:]}"


def _decimals(count: int) -> str:
    return "1 decimal place" if count == 1 else f"{count} decimal places"


def _at_most(places: int) -> str:
    return "no decimals" if places == 0 else f"at most {places}"
