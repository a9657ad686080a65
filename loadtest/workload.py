"""The load tools' population: accounts with cards and a home, merchants per country and
category, and everyday payments between them, shaped like `model.generate`'s world.

`loadtest.bench` sends everyday payments only; `loadtest/locustfile.py` adds the fraud
patterns on the same population. The same (prefix, sizes, seed) gives the same population.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, NamedTuple

from model.generate import CATEGORIES, CURRENCY, EXPONENT, FX_PER_EUR, HOUR_PROFILE
from model.generate_places import COUNTRIES

ONLINE_CATEGORIES = ("shopping_net", "misc_net")
# Far more than any payment: nothing is declined for money.
FUNDING_MAJOR = 1_000_000_000
ABROAD_SHARE = 0.05  # of everyday payments: a legitimate trip
MERCHANT_RADIUS_DEG = 0.15  # ~15 km around a city
USUAL_EUR = 30.0  # an average account's typical payment
MIN_MERCHANTS = len(COUNTRIES)  # one shop in every country at least
HABITUAL_SHOPS = 6  # an account's regular shops in its home city (fewer where there are fewer)
HABITUAL_SHARE = 0.75  # of payments at home: at one of them, as in `model.generate`
_HOURS = list(range(24))
_HOUR_WEIGHTS = [float(w) for w in HOUR_PROFILE]


class Account(NamedTuple):
    account_id: str
    currency: str
    country: str
    lat: float
    lon: float
    utc_offset_min: int  # standard time of the home city
    cards: tuple[str, ...]
    usual_major: float  # a typical payment, in the account's currency
    habitual: tuple[Merchant, ...] = ()  # its regular shops near home


class Merchant(NamedTuple):
    merchant_id: str
    category: str
    country: str
    lat: float
    lon: float


class World(NamedTuple):
    accounts: list[Account]
    merchants: list[Merchant]
    by_country: dict[str, list[Merchant]]  # every country that has merchants


HOME_COUNTRIES = [c for c in COUNTRIES if c.home_share > 0]
_HOME_WEIGHTS = [c.home_share for c in HOME_COUNTRIES]
_CATEGORY_NAMES = [c[0] for c in CATEGORIES]
_CATEGORY_WEIGHTS = [c[1] for c in CATEGORIES]
_CATEGORY = {c[0]: c for c in CATEGORIES}


def build_world(prefix: str, accounts: int, merchants: int, seed: int = 1) -> World:
    """`accounts` accounts (ids `<prefix>-a<n>`, 1-2 cards each) and `merchants` merchants
    spread over every country's cities, the home countries weighted like the generator's."""
    if accounts < 1 or merchants < MIN_MERCHANTS:
        raise ValueError(f"a world needs an account and at least {MIN_MERCHANTS} merchants")
    rng = random.Random(seed)
    placed = [_merchant(rng, n) for n in range(merchants)]
    shops = [shop for shop, _ in placed]
    by_country: dict[str, list[Merchant]] = {}
    by_city: dict[tuple[float, float], list[Merchant]] = {}
    for shop, city in placed:
        by_country.setdefault(shop.country, []).append(shop)
        by_city.setdefault(city, []).append(shop)
    people = [_account(rng, prefix, n, by_city) for n in range(accounts)]
    return World(people, shops, by_country)


def _account(rng: random.Random, prefix: str, n: int,
             by_city: dict[tuple[float, float], list[Merchant]]) -> Account:
    country = rng.choices(HOME_COUNTRIES, _HOME_WEIGHTS)[0]
    lat, lon, offset_min = rng.choice(country.cities)
    currency = CURRENCY[country.code]
    cards = tuple(f"{prefix}-c{n}-{k}" for k in range(1 + (rng.random() < 0.3)))
    usual = USUAL_EUR * rng.lognormvariate(0.0, 0.35) * FX_PER_EUR[currency]
    near = by_city.get((lat, lon), [])
    habitual = tuple(rng.sample(near, min(HABITUAL_SHOPS, len(near))))
    return Account(f"{prefix}-a{n}", currency, country.code, round(lat, 4), round(lon, 4),
                   offset_min, cards, usual, habitual)


def _merchant(rng: random.Random, n: int) -> tuple[Merchant, tuple[float, float]]:
    """A shop and the city it is in."""
    # Every country gets some shops (the fraud patterns pay abroad), home countries most.
    country = COUNTRIES[n % len(COUNTRIES)] if n < len(COUNTRIES) else rng.choices(
        HOME_COUNTRIES, _HOME_WEIGHTS)[0]
    lat, lon, _ = rng.choice(country.cities)
    category = rng.choices(_CATEGORY_NAMES, _CATEGORY_WEIGHTS)[0]
    return Merchant(f"m-{n}", category, country.code,
                    round(lat + rng.uniform(-1, 1) * MERCHANT_RADIUS_DEG, 4),
                    round(lon + rng.uniform(-1, 1) * MERCHANT_RADIUS_DEG, 4)), (lat, lon)


def format_amount(major: float, currency: str) -> str:
    """A decimal string with the currency's minor units, never below one minor unit."""
    places = EXPONENT.get(currency, 2)
    minor = max(1, round(major * 10**places))
    if places == 0:
        return str(minor)
    whole, fraction = divmod(minor, 10**places)
    return f"{whole}.{fraction:0{places}d}"


def account_body(account: Account) -> dict[str, Any]:
    return {"account_id": account.account_id, "currency": account.currency,
            "home_country": account.country, "home_lat": account.lat,
            "home_lon": account.lon}


def deposit_body(account: Account) -> dict[str, Any]:
    return {"amount": format_amount(FUNDING_MAJOR, account.currency),
            "currency": account.currency}


def category_amount(rng: random.Random, account: Account, category: str) -> float:
    """An amount typical of the category for this account (lognormal around its median)."""
    _, _, median_eur, sigma = _CATEGORY[category]
    # usual_major is USUAL_EUR scaled by the account's wealth and currency: scale the same.
    return median_eur * account.usual_major / USUAL_EUR * math.exp(rng.gauss(0, sigma))


def payment_body(transaction_id: str, account: Account, card: str, merchant: Merchant,
                 amount_major: float, at: datetime) -> dict[str, Any]:
    return {"transaction_id": transaction_id, "account_id": account.account_id,
            "card_id": card, "merchant_id": merchant.merchant_id,
            "amount": format_amount(amount_major, account.currency),
            "currency": account.currency, "merchant_category": merchant.category,
            "country": merchant.country, "lat": merchant.lat, "lon": merchant.lon,
            "timestamp": at.isoformat(timespec="milliseconds")}


def local_time(account: Account, utc: datetime) -> datetime:
    """`utc` on the wall clock of the account's home city (standard time)."""
    return utc.astimezone(timezone(timedelta(minutes=account.utc_offset_min)))


class SimulatedClock(NamedTuple):
    """Event time running `speedup` times faster than the wall clock from `origin`.

    A load test sends each card's payments seconds apart (accounts / rate): for the risk
    model and the velocity rules, a card-testing burst. On this clock the same gaps are hours,
    as for real cardholders, and the days go by.
    """

    origin: datetime  # the event time at wall time `wall_origin_s`
    wall_origin_s: float  # time.time() when the clock started (shared by processes)
    speedup: float

    @classmethod
    def starting(cls, days_ago: float, speedup: float) -> SimulatedClock:
        return cls(datetime.now(UTC) - timedelta(days=days_ago), time.time(), speedup)

    def now(self) -> datetime:
        return self.origin + timedelta(
            seconds=(time.time() - self.wall_origin_s) * self.speedup)


class EverydayPayments:
    """Legitimate payments: request k comes from account k mod A, so every account and card
    pays at the same steady pace (rate / accounts), mostly at one of its regular shops near
    home, else at another shop at home or, now and then, abroad, an amount typical of the
    shop's category. Without a clock the payment is made now; with one (`SimulatedClock`),
    on the clock's day at an hour drawn from `model.generate`'s day profile (few at night)."""

    def __init__(self, world: World, seed: int, clock: SimulatedClock | None = None) -> None:
        self._world = world
        self._rng = random.Random(seed)
        self._abroad = [c for c in world.by_country if world.by_country[c]]
        self._clock: Callable[[], datetime] = (clock.now if clock is not None
                                                else lambda: datetime.now(UTC))
        self._day_profile = clock is not None

    def body(self, transaction_id: str, k: int) -> dict[str, Any]:
        rng = self._rng
        accounts = self._world.accounts
        account = accounts[k % len(accounts)]
        card = account.cards[(k // len(accounts)) % len(account.cards)]
        country = account.country
        if rng.random() < ABROAD_SHARE:
            country = rng.choice(self._abroad)
        if country == account.country and account.habitual and rng.random() < HABITUAL_SHARE:
            merchant = rng.choice(account.habitual)
        else:
            merchant = rng.choice(self._world.by_country.get(country) or self._world.merchants)
        at = local_time(account, self._clock())
        if self._day_profile:
            at = at.replace(hour=rng.choices(_HOURS, _HOUR_WEIGHTS)[0],
                            minute=rng.randrange(60), second=rng.randrange(60))
        return payment_body(transaction_id, account, card, merchant,
                            category_amount(rng, account, merchant.category), at)
