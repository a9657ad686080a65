"""The project's labelled synthetic transactions: everyday card use per account, with four
fraud patterns injected into about 1.5 % of the rows, the same output for the same seed.

Legitimate behaviour is per account: a home city, 1-2 cards, a daily rate, favourite
merchants, a typical amount per category, a daytime-heavy local hour profile, trips within
the country and now and then abroad. Amounts are in the card's billing currency (what the
issuer sees after any conversion), so a card's amounts compare wherever it was used; the
pattern amounts below are in EUR and converted with FX_PER_EUR.

    card_testing        5-30 payments of 0.50-5.00, 3-45 s apart, on one card at online
                        shops, often followed by one large online payment (250-1,500)
    account_takeover    3-8 payments within 12 hours from a city >= 1,500 km from home in
                        another country, 3-12x the account's usual amount, new merchants
    night_high_amount   1-5 payments at 00:00-04:59 local time, 4-12x the usual amount
    high_risk_merchant  1-5 payments within 2 days at the `hr-` shops, 3-8x the usual amount
                        for the category (the `hr-` shops see some legitimate payments too)

Run `python -m model.generate --accounts 50 --days 7 --seed 1 --out /tmp/x.csv.gz`.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from model.data import write_native
from model.generate_places import COUNTRIES, MINUTE_MS, in_dst
from model.records import Txn

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
START_MS = 1_767_225_600_000  # 2026-01-01T00:00Z

CURRENCY = {"DE": "EUR", "FR": "EUR", "ES": "EUR", "IT": "EUR", "NL": "EUR", "GB": "GBP",
            "US": "USD", "JP": "JPY"}
EXPONENT = {"EUR": 2, "GBP": 2, "USD": 2, "JPY": 0}
FX_PER_EUR = {"EUR": 1.0, "GBP": 0.85, "USD": 1.10, "JPY": 160.0}


# name, share of an average account's payments, typical amount in EUR, lognormal sigma
CATEGORIES = (
    ("grocery_pos", 0.19, 38.0, 0.6), ("gas_transport", 0.11, 48.0, 0.4),
    ("food_dining", 0.08, 22.0, 0.6), ("restaurant", 0.06, 45.0, 0.5),
    ("shopping_pos", 0.09, 55.0, 0.8), ("shopping_net", 0.08, 45.0, 0.9),
    ("entertainment", 0.05, 32.0, 0.7), ("travel", 0.02, 160.0, 0.9),
    ("health_fitness", 0.04, 35.0, 0.6), ("misc_pos", 0.05, 20.0, 0.8),
    ("misc_net", 0.04, 16.0, 0.9), ("home", 0.06, 48.0, 0.8),
    ("kids_pets", 0.06, 30.0, 0.7), ("personal_care", 0.07, 22.0, 0.6),
)
CATEGORY = {name: i for i, (name, *_) in enumerate(CATEGORIES)}
_SHARE = np.array([c[1] for c in CATEGORIES]) / sum(c[1] for c in CATEGORIES)
_MEDIAN_EUR = np.array([c[2] for c in CATEGORIES])
_SIGMA = np.array([c[3] for c in CATEGORIES])
ONLINE = (CATEGORY["shopping_net"], CATEGORY["misc_net"])
_IS_ONLINE = np.isin(np.arange(len(CATEGORIES)), ONLINE)

# Local hours 00-23: a day curve with lunch and evening peaks; 1 % of payments at 00-04, about
# 2 % once each account's curve is shifted by -1 to +2 hours (early birds, night owls).
HOUR_PROFILE = np.array([0.4, 0.25, 0.15, 0.1, 0.1, 0.2, 0.6, 1.5, 3, 4, 5, 6,
                   7, 6.5, 5.5, 5.5, 6, 7, 7.5, 6.5, 5, 3.5, 2, 1])
HOUR_PROFILE = HOUR_PROFILE / HOUR_PROFILE.sum()

SHOPS_PER_CITY_CATEGORY = 12
FAVOURITE_SHARE = 0.75  # of payments at home (or online) that go to a favourite shop
_FAVOURITE_RANK = np.array([0.5, 0.3, 0.2])  # the 3 favourites per category
LEGIT_HIGH_RISK_SHARE = 0.003  # of online payments: the `hr-` shops have real customers too
TRIPS_PER_30_DAYS = {"domestic": 0.35, "abroad": 0.06}
SHOP_RADIUS_KM, HOME_RADIUS_KM = 15.0, 8.0  # so home-to-local-shop distances stay < ~25 km

PATTERNS = ("card_testing", "account_takeover", "night_high_amount", "high_risk_merchant")
_PATTERN_P = np.array([0.15, 0.30, 0.30, 0.25])  # of the episodes
_PATTERN_MEAN_ROWS = np.array([17.5 + 0.6, 5.5, 3.0, 3.0])  # the means of the ranges below
FRAUD_SHARE = 0.015  # of all rows
_EPISODES_PER_ROW = FRAUD_SHARE / (1 - FRAUD_SHARE) / float(_PATTERN_P @ _PATTERN_MEAN_ROWS)
ATO_MIN_DISTANCE_KM = 1_500.0
_HOME_P = np.array([c.home_share for c in COUNTRIES]) / sum(c.home_share for c in COUNTRIES)


class World(NamedTuple):
    """Cities (every country's) and their shops; a city index also names its time zone."""

    city_country: np.ndarray
    city_lat: np.ndarray
    city_lon: np.ndarray
    city_offset_min: np.ndarray  # standard time
    country_cities: list[np.ndarray]
    shops: np.ndarray  # (city, category, SHOPS_PER_CITY_CATEGORY) -> merchant index
    high_risk: np.ndarray  # (country, category) -> merchant index, -1 where none
    merchant_id: list[str]
    merchant_category: np.ndarray
    merchant_country: np.ndarray
    merchant_lat: np.ndarray
    merchant_lon: np.ndarray


class Profile(NamedTuple):
    account: int
    country: int
    home_city: int
    home_lat: float
    home_lon: float
    created_ms: int
    currency: str
    cards: np.ndarray  # global card indexes
    card_p: np.ndarray
    daily_rate: float
    category_p: np.ndarray
    median_major: np.ndarray  # typical amount per category, billing currency
    favourites: np.ndarray  # (category, 3) -> merchant index
    hour_p: np.ndarray
    trips: list[tuple[int, int, int]]  # first day, day after the last, city

    @property
    def usual_major(self) -> float:
        """The account's typical amount: the geometric mean over its category mix."""
        return float(np.exp(self.category_p @ np.log(self.median_major)))


class Rows(NamedTuple):
    """Generated payments as columns; `local_ms` is the wall clock where `city` is."""

    local_ms: np.ndarray
    city: np.ndarray
    account: np.ndarray
    card: np.ndarray
    merchant: np.ndarray
    amount_minor: np.ndarray
    pattern: np.ndarray  # 0 legitimate, else 1 + the index in PATTERNS


def generate(accounts: int, days: int, seed: int, start_ms: int = START_MS) -> list[Txn]:
    """Labelled transactions of `accounts` accounts over `days` days from `start_ms` (UTC),
    sorted by (event_ms, transaction_id); the same arguments give the same rows."""
    if accounts < 1 or days < 1 or seed < 0:
        raise ValueError("generate needs at least one account, one day and a seed >= 0")
    rng = np.random.default_rng(seed)
    world = _world(rng)
    profiles: list[Profile] = []
    for account in range(accounts):
        first_card = profiles[-1].cards[-1] + 1 if profiles else 0
        profiles.append(_profile(rng, world, account, int(first_card), start_ms, days))
    parts = [_legit(rng, world, p, start_ms, days) for p in profiles]
    legit_rows = sum(len(part.local_ms) for part in parts)
    episodes = round(legit_rows * _EPISODES_PER_ROW)
    victims = rng.choice(accounts, episodes, replace=episodes > accounts)
    kinds = rng.choice(len(PATTERNS), episodes, p=_PATTERN_P)
    for victim, kind in zip(victims.tolist(), kinds.tolist(), strict=True):
        day = int(rng.integers(max(1, days // 10), days)) if days > 1 else 0
        parts.append(_EPISODES[kind](rng, world, profiles[victim], start_ms + day * DAY_MS))
    return _transactions(seed, world, profiles, parts, start_ms, start_ms + days * DAY_MS)


# --- the world and the accounts ------------------------------------------------------------

def _scatter(rng: np.random.Generator, lat: np.ndarray, lon: np.ndarray,
             radius_km: float) -> tuple[np.ndarray, np.ndarray]:
    """Points uniformly within `radius_km` of each (lat, lon)."""
    distance_km = radius_km * np.sqrt(rng.random(lat.shape))
    angle = rng.uniform(0, 2 * np.pi, lat.shape)
    north = distance_km * np.cos(angle) / 111.32
    east = distance_km * np.sin(angle) / (111.32 * np.cos(np.radians(lat)))
    return np.round(lat + north, 6), np.round(lon + east, 6)


def _world(rng: np.random.Generator) -> World:
    cities = [(ci, *city) for ci, country in enumerate(COUNTRIES) for city in country.cities]
    city_country = np.array([c[0] for c in cities])
    city_lat = np.array([c[1] for c in cities])
    city_lon = np.array([c[2] for c in cities])
    shape = (len(cities), len(CATEGORIES), SHOPS_PER_CITY_CATEGORY)
    shops = np.arange(math.prod(shape)).reshape(shape)
    shop_city = np.repeat(np.arange(len(cities)), shops[0].size)
    merchant_id = [f"m-{m}" for m in range(shops.size)]
    merchant_category = np.tile(np.repeat(np.arange(len(CATEGORIES)), shape[2]), len(cities))
    # Two high-risk online shops per home country, one per online category, in its capital.
    home = [ci for ci, country in enumerate(COUNTRIES) if country.home_share > 0]
    high_risk = np.full((len(COUNTRIES), len(CATEGORIES)), -1)
    for n, (ci, category) in enumerate((ci, c) for ci in home for c in ONLINE):
        high_risk[ci, category] = shops.size + n
        merchant_id.append(f"hr-{n}")
        merchant_category = np.append(merchant_category, category)
        shop_city = np.append(shop_city, np.flatnonzero(city_country == ci)[0])
    lat, lon = _scatter(rng, city_lat[shop_city], city_lon[shop_city], SHOP_RADIUS_KM)
    return World(
        city_country=city_country, city_lat=city_lat, city_lon=city_lon,
        city_offset_min=np.array([c[3] for c in cities]),
        country_cities=[np.flatnonzero(city_country == ci) for ci in range(len(COUNTRIES))],
        shops=shops, high_risk=high_risk, merchant_id=merchant_id,
        merchant_category=merchant_category, merchant_country=city_country[shop_city],
        merchant_lat=lat, merchant_lon=lon)


def _profile(rng: np.random.Generator, world: World, account: int, first_card: int,
             start_ms: int, days: int) -> Profile:
    country = int(rng.choice(len(COUNTRIES), p=_HOME_P))
    home_city = int(rng.choice(world.country_cities[country]))
    home_lat, home_lon = _scatter(rng, world.city_lat[[home_city]], world.city_lon[[home_city]],
                                  HOME_RADIUS_KM)
    currency = CURRENCY[COUNTRIES[country].code]
    two_cards = bool(rng.random() < 0.3)
    wealth = rng.lognormal(0.0, 0.35)
    median_major = (_MEDIAN_EUR * wealth * rng.lognormal(0.0, 0.25, len(CATEGORIES))
                    * FX_PER_EUR[currency])
    picks = np.argsort(rng.random((len(CATEGORIES), SHOPS_PER_CITY_CATEGORY)), axis=1)[:, :3]
    favourites = world.shops[home_city, np.arange(len(CATEGORIES))[:, None], picks]
    return Profile(
        account=account, country=country, home_city=home_city, home_lat=float(home_lat[0]),
        home_lon=float(home_lon[0]),
        created_ms=start_ms - int(rng.integers(60, 3 * 365)) * DAY_MS
        - int(rng.integers(0, DAY_MS)),
        currency=currency,
        cards=np.arange(first_card, first_card + 1 + two_cards),
        card_p=np.array([0.75, 0.25]) if two_cards else np.array([1.0]),
        daily_rate=float(np.clip(rng.lognormal(math.log(1.8), 0.55), 0.5, 6.0)),
        category_p=rng.dirichlet(_SHARE * 25), median_major=median_major,
        favourites=favourites, hour_p=np.roll(HOUR_PROFILE, int(rng.integers(-1, 3))),
        trips=_trips(rng, world, country, home_city, days))


def _trips(rng: np.random.Generator, world: World, country: int, home_city: int,
           days: int) -> list[tuple[int, int, int]]:
    domestic = world.country_cities[country]
    domestic = domestic[domestic != home_city]
    abroad = np.flatnonzero((_HOME_P[world.city_country] > 0) & (world.city_country != country))
    trips = []
    for kind, where in (("domestic", domestic), ("abroad", abroad)):
        if len(where) == 0:
            continue
        for _ in range(int(rng.poisson(TRIPS_PER_30_DAYS[kind] * days / 30))):
            first = int(rng.integers(0, days))
            trips.append((first, first + int(rng.integers(1, 6)), int(rng.choice(where))))
    return trips


def _minor(major: np.ndarray, currency: str) -> np.ndarray:
    minor: np.ndarray = np.maximum(np.rint(major * 10 ** EXPONENT[currency]), 1)
    return minor.astype(np.int64)


def _legit(rng: np.random.Generator, world: World, p: Profile, start_ms: int,
           days: int) -> Rows:
    day = np.repeat(np.arange(days), rng.poisson(p.daily_rate, days))
    n = len(day)
    hour = rng.choice(24, n, p=p.hour_p)
    local_ms = start_ms + day * DAY_MS + hour * HOUR_MS + rng.integers(0, HOUR_MS, n)
    city = np.full(n, p.home_city)
    for first, end, where in p.trips:
        city[(day >= first) & (day < end)] = where
    category = rng.choice(len(CATEGORIES), n, p=p.category_p)
    online = _IS_ONLINE[category]
    # Favourite shops are near home; the online ones stay favourites on a trip.
    favourite = (rng.random(n) < FAVOURITE_SHARE) & (online | (city == p.home_city))
    rank = rng.choice(3, n, p=_FAVOURITE_RANK)
    merchant = np.where(favourite, p.favourites[category, rank],
                        _random_shops(rng, world, city, category))
    high_risk = online & (rng.random(n) < LEGIT_HIGH_RISK_SHARE)
    merchant[high_risk] = world.high_risk[p.country, category[high_risk]]
    amount = p.median_major[category] * np.exp(_SIGMA[category] * rng.standard_normal(n))
    return Rows(local_ms, city, np.full(n, p.account), rng.choice(p.cards, n, p=p.card_p),
                merchant, _minor(amount, p.currency), np.zeros(n, np.int64))


# --- fraud episodes: each returns the rows of one attack on one account -------------------

def _episode(p: Profile, pattern: str, local_ms: np.ndarray, city: int, card: int,
             merchant: np.ndarray, major: np.ndarray) -> Rows:
    n = len(local_ms)
    return Rows(local_ms, np.full(n, city), np.full(n, p.account), np.full(n, card), merchant,
                _minor(major, p.currency), np.full(n, PATTERNS.index(pattern) + 1))


def _random_shops(rng: np.random.Generator, world: World, cities: np.ndarray,
                  category: np.ndarray) -> np.ndarray:
    shops: np.ndarray = world.shops[cities, category,
                                    rng.integers(0, SHOPS_PER_CITY_CATEGORY, len(category))]
    return shops


def _card_testing(rng: np.random.Generator, world: World, p: Profile, day_ms: int) -> Rows:
    n = int(rng.integers(5, 31))
    # A script tries the stolen card at small online shops, seconds apart.
    local_ms = day_ms + int(rng.integers(0, DAY_MS)) + np.cumsum(rng.integers(3_000, 45_000, n))
    category = rng.choice(ONLINE, n)
    major = rng.uniform(0.5, 5.0, n)
    if rng.random() < 0.6:  # the card works: cash it out
        local_ms = np.append(local_ms, local_ms[-1] + rng.integers(MINUTE_MS, 10 * MINUTE_MS))
        category = np.append(category, CATEGORY["shopping_net"])
        major = np.append(major, rng.uniform(250.0, 1500.0))
    shops = _random_shops(rng, world, rng.choice(world.country_cities[p.country], len(category)),
                          category)
    return _episode(p, "card_testing", local_ms, p.home_city, int(rng.choice(p.cards)), shops,
                    major * FX_PER_EUR[p.currency])


def _distance_km(lat: float, lon: float, lats: np.ndarray, lons: np.ndarray) -> np.ndarray:
    lat1, lat2, dlon = np.radians(lat), np.radians(lats), np.radians(lons - lon)
    cos = np.sin(lat1) * np.sin(lat2) + np.cos(lat1) * np.cos(lat2) * np.cos(dlon)
    distance: np.ndarray = 6371.0 * np.arccos(np.clip(cos, -1.0, 1.0))
    return distance


def _account_takeover(rng: np.random.Generator, world: World, p: Profile,
                      day_ms: int) -> Rows:
    far = np.flatnonzero((world.city_country != p.country) & (_distance_km(
        p.home_lat, p.home_lon, world.city_lat, world.city_lon) >= ATO_MIN_DISTANCE_KM))
    city = int(rng.choice(far))
    n = int(rng.integers(3, 9))
    local_ms = day_ms + int(rng.integers(0, DAY_MS)) + np.sort(rng.integers(0, 12 * HOUR_MS, n))
    category = rng.choice([CATEGORY[c] for c in ("shopping_pos", "shopping_net", "travel",
                                                 "entertainment", "misc_pos", "restaurant")], n)
    shops = _random_shops(rng, world, np.full(n, city), category)
    return _episode(p, "account_takeover", local_ms, city, int(rng.choice(p.cards)), shops,
                    p.usual_major * rng.uniform(3.0, 12.0, n))


def _night_high_amount(rng: np.random.Generator, world: World, p: Profile,
                       day_ms: int) -> Rows:
    n = int(rng.integers(1, 6))
    local_ms = day_ms + np.sort(rng.integers(0, 5 * HOUR_MS, n))  # 00:00-04:59 at home
    category = rng.choice([CATEGORY[c] for c in ("shopping_pos", "misc_pos", "entertainment",
                                                 "gas_transport", "shopping_net", "travel")], n)
    shops = _random_shops(rng, world, np.full(n, p.home_city), category)
    return _episode(p, "night_high_amount", local_ms, p.home_city, int(rng.choice(p.cards)),
                    shops, p.usual_major * rng.uniform(4.0, 12.0, n))


def _high_risk_merchant(rng: np.random.Generator, world: World, p: Profile,
                        day_ms: int) -> Rows:
    n = int(rng.integers(1, 6))
    local_ms = day_ms + np.sort(rng.integers(0, 2 * DAY_MS, n))
    category = rng.choice(ONLINE, n)
    return _episode(p, "high_risk_merchant", local_ms, p.home_city, int(rng.choice(p.cards)),
                    world.high_risk[p.country, category],
                    p.median_major[category] * rng.uniform(3.0, 8.0, n))


_EPISODES: tuple[Callable[[np.random.Generator, World, Profile, int], Rows], ...] = (
    _card_testing, _account_takeover, _night_high_amount, _high_risk_merchant)


# --- UTC offsets and the final records ----------------------------------------------------

def _utc_offsets(world: World, city: np.ndarray, local_ms: np.ndarray) -> np.ndarray:
    offset: np.ndarray = world.city_offset_min[city]
    rule = np.array([COUNTRIES[c].dst for c in world.city_country])[city]
    for name in ("eu", "us"):
        mask = rule == name
        offset[mask] += 60 * in_dst(name, local_ms[mask], offset[mask])
    return offset


def _transactions(seed: int, world: World, profiles: list[Profile], parts: list[Rows],
                  start_ms: int, end_ms: int) -> list[Txn]:
    rows = Rows(*(np.concatenate(column) for column in zip(*parts, strict=True)))
    offset = _utc_offsets(world, rows.city, rows.local_ms)
    event_ms = rows.local_ms - offset * MINUTE_MS
    keep = (event_ms >= start_ms) & (event_ms < end_ms)
    order = np.flatnonzero(keep)[np.argsort(event_ms[keep], kind="stable")]
    accounts = [(f"acc-{p.account}", p.currency, EXPONENT[p.currency], COUNTRIES[p.country].code,
                 p.home_lat, p.home_lon, p.created_ms) for p in profiles]
    # Python lists, not numpy scalars, inside the loop: a third of the time for 100k rows.
    category = [CATEGORIES[c][0] for c in world.merchant_category.tolist()]
    country = [COUNTRIES[c].code for c in world.merchant_country.tolist()]
    lat, lon = world.merchant_lat.tolist(), world.merchant_lon.tolist()
    txns = []
    for n, (at, off, account, card, merchant, amount, pattern) in enumerate(zip(
            event_ms[order].tolist(), offset[order].tolist(), rows.account[order].tolist(),
            rows.card[order].tolist(), rows.merchant[order].tolist(),
            rows.amount_minor[order].tolist(), rows.pattern[order].tolist(), strict=True)):
        account_id, currency, exponent, home, home_lat, home_lon, created_ms = accounts[account]
        txns.append(Txn(
            transaction_id=f"t-{seed}-{n}", event_ms=at, utc_offset_min=off,
            account_id=account_id, card_id=f"card-{card}",
            merchant_id=world.merchant_id[merchant],
            merchant_category=category[merchant], amount_minor=amount, currency=currency,
            exponent=exponent, country=country[merchant], lat=lat[merchant], lon=lon[merchant],
            home_country=home, home_lat=home_lat, home_lon=home_lon,
            account_created_ms=created_ms, is_fraud=pattern > 0,
            pattern=PATTERNS[pattern - 1] if pattern else None))
    # Ids count in time order, but as text "t-1-10" < "t-1-9": ties in event_ms need this.
    txns.sort(key=lambda t: (t.event_ms, t.transaction_id))
    return txns


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="generate", description="Write labelled synthetic card transactions.")
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", required=True, help="file to write (native CSV, .gz to compress)")
    args = parser.parse_args(argv)
    if args.accounts < 1 or args.days < 1 or args.seed < 0:
        parser.error("--accounts and --days must be at least 1, --seed at least 0")
    rows = generate(args.accounts, args.days, args.seed)
    write_native(rows, args.out)
    frauds = sum(1 for r in rows if r.is_fraud)
    print(f"wrote {len(rows)} transactions ({frauds} fraud) to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
