"""Locust scenario: a card gateway's realistic mix against a running SentinelStream.

    make locust          # installs the `load` extra, then runs the headless command below
    .venv/bin/locust -f loadtest/locustfile.py --headless -u 200 -r 50 -t 60s \\
        --host http://127.0.0.1:8080 [--sentinel-accounts 500] [--sentinel-token "$TOKEN"]

At test start each Locust process creates and funds its own accounts (`--sentinel-accounts`,
ids `lc<random>-a<n>`) and puts the `hr-*` shops on the `high_risk_merchants` list. Then each
user, a gateway connection, mixes everyday payments (mostly at home, some abroad) with the
fraud patterns of `model/generate.py` (card-testing bursts of small online payments, payments
far from home, high amounts at night, high-risk shops), idempotent retries (same
Idempotency-Key, same body: the answer must be a replay) and history and balance reads.
At the end each process prints the decisions per scenario. The token comes from
`--sentinel-token` (or SENTINEL_LOCUST_TOKEN), else is minted from the SENTINEL_* settings.

Closed-loop by nature: use it for realistic mixes and errors, `loadtest.bench` for latency.
"""

from __future__ import annotations

import random
import sys
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import gevent.pool
import msgspec
import requests
from locust import FastHttpUser, between, events, task
from locust.env import Environment
from locust.runners import MasterRunner

from http_edge.auth import TokenIssuer
from model.generate import FX_PER_EUR
from ops.settings import load_settings

# Locust puts only this file's folder on sys.path; the loadtest package needs the project's.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from loadtest.workload import (
    HOME_COUNTRIES,
    ONLINE_CATEGORIES,
    Account,
    Merchant,
    World,
    account_body,
    build_world,
    category_amount,
    deposit_body,
    local_time,
    payment_body,
)

PAYMENTS = "/v1/transactions"
HIGH_RISK_LIST = "high_risk_merchants"
SETUP_CONCURRENCY = 16
VICTIM_EVERY = 10  # the first tenth of the accounts are the fraud patterns' victims
_FAR_COUNTRIES = ("BR", "NG", "RO", "UA", "ID", "VN", "PH", "MX", "TH", "ZA")
_encode = msgspec.json.Encoder().encode


class Population:
    """This Locust process's accounts, shops and auth header, set at test start."""

    def __init__(self) -> None:
        self.world: World | None = None
        self.high_risk: list[Merchant] = []
        self.headers: dict[str, str] = {}
        self.decisions: Counter[tuple[str, str]] = Counter()

    def require(self) -> World:
        if self.world is None:
            raise RuntimeError("the population is made at test start")
        return self.world


POPULATION = Population()


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--sentinel-accounts", type=int, default=500,
                        help="accounts each Locust process creates and funds")
    parser.add_argument("--sentinel-merchants", type=int, default=400)
    parser.add_argument("--sentinel-token", default="", env_var="SENTINEL_LOCUST_TOKEN",
                        is_secret=True, help="bearer token (default: minted from SENTINEL_*)")


def _token(given: str) -> str:
    if given:
        return given
    s = load_settings()
    issuer = TokenIssuer(s.jwt_secret, issuer=s.jwt_issuer, audience=s.jwt_audience)
    return issuer.issue("locust", ["admin"], ttl_s=24 * 3600)


def _high_risk_shops() -> list[Merchant]:
    """One `hr-` shop per home country and online category, like the generator's."""
    return [Merchant(f"hr-{n}", category, country.code, *country.cities[0][:2])
            for n, (country, category) in enumerate(
                (c, cat) for c in HOME_COUNTRIES for cat in ONLINE_CATEGORIES)]


def _post(http: requests.Session, url: str, headers: dict[str, str], body: object) -> None:
    response = http.post(url, data=_encode(body), headers=headers, timeout=30)
    if response.status_code not in (200, 201):
        raise RuntimeError(f"POST {url}: {response.status_code} {response.text}")


@events.test_start.add_listener
def _create_population(environment: Environment, **kwargs: Any) -> None:
    if isinstance(environment.runner, MasterRunner):
        return  # the workers make their own
    options = environment.parsed_options
    base = environment.host or "http://127.0.0.1:8080"
    headers = {"Authorization": f"Bearer {_token(options.sentinel_token)}",
               "Content-Type": "application/json"}
    world = build_world(f"lc{uuid.uuid4().hex[:8]}", options.sentinel_accounts,
                        options.sentinel_merchants, seed=random.randrange(1 << 30))
    high_risk = _high_risk_shops()
    with requests.Session() as http:
        def open_account(account: Account) -> None:
            _post(http, f"{base}/v1/accounts", headers, account_body(account))
            _post(http, f"{base}/v1/accounts/{account.account_id}/deposits",
                  {**headers, "Idempotency-Key": f"fund-{account.account_id}"},
                  deposit_body(account))

        gevent.pool.Pool(SETUP_CONCURRENCY).map(open_account, world.accounts)
        _post(http, f"{base}/v1/lists/{HIGH_RISK_LIST}/items", headers,
              {"items": [shop.merchant_id for shop in high_risk]})
    POPULATION.world, POPULATION.high_risk, POPULATION.headers = world, high_risk, headers
    print(f"created and funded {len(world.accounts)} accounts", flush=True)


@events.test_stop.add_listener
def _print_decisions(environment: Environment, **kwargs: Any) -> None:
    if not POPULATION.decisions:
        return
    outcomes = sorted({outcome for _, outcome in POPULATION.decisions})
    scenarios = sorted({scenario for scenario, _ in POPULATION.decisions})
    print(f"\n{'scenario':<16}" + "".join(f"{o:>20}" for o in outcomes))
    for scenario in scenarios:
        print(f"{scenario:<16}" + "".join(
            f"{POPULATION.decisions[(scenario, o)]:>20,}" for o in outcomes))


def _last_night(account: Account, rng: random.Random) -> datetime:
    """A moment between 00:00 and 04:59 at the account's home, within the last day."""
    now = local_time(account, datetime.now(UTC))
    night = now.replace(hour=rng.randrange(5), minute=rng.randrange(60),
                        second=rng.randrange(60), microsecond=0)
    return night if night <= now else night - timedelta(days=1)


class GatewayUser(FastHttpUser):
    """One connection of a card gateway: posts payments as they come, retries some, reads."""

    wait_time = between(0.1, 1.0)

    def on_start(self) -> None:
        self.rng = random.Random()
        self.world = POPULATION.require()
        self.last: tuple[str, bytes] | None = None  # the last payment's key and body

    # -- payments ---------------------------------------------------------------------------

    def _pay(self, scenario: str, account: Account, card: str, merchant: Merchant,
             amount_major: float, at: datetime | None = None, *,
             limited_ok: bool = False) -> None:
        key = f"lt-{uuid.uuid4().hex}"
        body = _encode(payment_body(key, account, card, merchant, amount_major,
                                    at or local_time(account, datetime.now(UTC))))
        with self.client.post(PAYMENTS, data=body, name=f"{PAYMENTS} [{scenario}]",
                              headers={**POPULATION.headers, "Idempotency-Key": key},
                              catch_response=True) as response:
            if response.status_code == 200:
                POPULATION.decisions[(scenario, response.json()["decision"])] += 1
                self.last = (key, body)
                response.success()
            elif response.status_code == 429 and limited_ok:
                # An attacked card is soon over the per-card rate limit: that is its purpose.
                POPULATION.decisions[(scenario, "429 rate limited")] += 1
                response.success()
            else:
                response.failure(f"{response.status_code} {response.text[:200]}")

    def _account(self) -> Account:
        """A cardholder paying as usual (never one of the fraud victims)."""
        accounts = self.world.accounts
        return accounts[self.rng.randrange(len(accounts) // VICTIM_EVERY, len(accounts))]

    def _victim(self) -> Account:
        """An account whose card is attacked: a card under attack is soon rate-limited, and
        its owner's everyday payments would be too."""
        return self.world.accounts[self.rng.randrange(len(self.world.accounts) // VICTIM_EVERY
                                                      or 1)]

    def _shop(self, country: str, categories: tuple[str, ...] = ()) -> Merchant:
        shops = self.world.by_country[country]
        fitting = [m for m in shops if m.category in categories] if categories else shops
        return self.rng.choice(fitting or shops)

    @task(60)
    def everyday(self) -> None:
        account = self._account()
        country = account.country
        if self.rng.random() < 0.05:  # a trip
            country = self.rng.choice(HOME_COUNTRIES).code
        merchant = self._shop(country)
        self._pay("everyday", account, self.rng.choice(account.cards), merchant,
                  category_amount(self.rng, account, merchant.category))

    @task(2)
    def card_testing(self) -> None:
        """A script tries a stolen card with small online payments, then cashes it out."""
        account, rng = self._victim(), self.rng
        card, fx = rng.choice(account.cards), FX_PER_EUR[account.currency]
        for _ in range(rng.randint(5, 15)):
            self._pay("card_testing", account, card,
                      self._shop(account.country, ONLINE_CATEGORIES),
                      rng.uniform(0.5, 5.0) * fx, limited_ok=True)
        if rng.random() < 0.6:
            self._pay("card_testing", account, card,
                      self._shop(account.country, ("shopping_net",)),
                      rng.uniform(250.0, 1500.0) * fx, limited_ok=True)

    @task(2)
    def far_from_home(self) -> None:
        """Account takeover: several large payments from a far country, new shops."""
        account, rng = self._victim(), self.rng
        country = rng.choice(_FAR_COUNTRIES)
        card = rng.choice(account.cards)
        for _ in range(rng.randint(1, 4)):
            self._pay("far_from_home", account, card, self._shop(country),
                      account.usual_major * rng.uniform(3.0, 12.0), limited_ok=True)

    @task(2)
    def night_high_amount(self) -> None:
        account, rng = self._victim(), self.rng
        self._pay("night_high", account, rng.choice(account.cards),
                  self._shop(account.country), account.usual_major * rng.uniform(4.0, 12.0),
                  at=_last_night(account, rng), limited_ok=True)

    @task(2)
    def high_risk_merchant(self) -> None:
        account, rng = self._victim(), self.rng
        shops = [m for m in POPULATION.high_risk if m.country == account.country]
        merchant = rng.choice(shops or POPULATION.high_risk)
        self._pay("high_risk_shop", account, rng.choice(account.cards), merchant,
                  category_amount(rng, account, merchant.category) * rng.uniform(3.0, 8.0),
                  limited_ok=True)

    @task(6)
    def retry(self) -> None:
        """The gateway lost the answer: the same key and body again must be a replay."""
        if self.last is None:
            return
        key, body = self.last
        with self.client.post(PAYMENTS, data=body, name=f"{PAYMENTS} [retry]",
                              headers={**POPULATION.headers, "Idempotency-Key": key},
                              catch_response=True) as response:
            replayed = response.headers.get("Idempotent-Replayed") == "true"
            if response.status_code == 200 and replayed:
                response.success()
            elif response.status_code == 409:  # the first is still in flight: allowed
                response.success()
            else:
                response.failure(f"{response.status_code}, replayed={replayed}")

    # -- reads ------------------------------------------------------------------------------

    @task(10)
    def history(self) -> None:
        account = self._account()
        self.client.get(f"/v1/accounts/{account.account_id}/transactions?limit=20",
                        headers=POPULATION.headers, name="/v1/accounts/[id]/transactions")

    @task(10)
    def balance(self) -> None:
        account = self._account()
        self.client.get(f"/v1/accounts/{account.account_id}/balance",
                        headers=POPULATION.headers, name="/v1/accounts/[id]/balance")

