"""Benchmark: µs per transaction to evaluate 100 mixed active rules, as the engine does.

    .venv/bin/python -m rules.bench [--transactions 4000] [--rounds 5]

Builds 100 rules of every kind (plain comparisons, text and `in` tests, named lists,
velocity, arithmetic, float fields, nested logic) and a few thousand seeded random
transactions, then times `rule.evaluate(ctx)` for all rules on each transaction. Goal:
≤ 50 µs per transaction (BENCHMARKS.md). The tree-walking interpreter is timed on a sample
for comparison.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Sequence
from decimal import Decimal

from rules.compiled import CompiledRule, compile_rule
from rules.context import RuleContext, VelocityKey
from rules.parser import parse

COUNTRIES = ["DE", "FR", "IT", "ES", "NL", "GB", "US", "NG", "RU", "BR"]
CATEGORIES = ["grocery_pos", "electronics", "gambling", "travel", "misc", "crypto"]
TEMPLATES = [
    "amount > {big}",
    "amount >= {big} and hour between 0 and 5",
    "amount > {big} and country != account.home_country",
    "currency != account.currency and amount > {small}",
    "country in ('NG', 'RU', 'BR') and amount > {small}",
    "merchant_category in ('gambling', 'crypto') and account.age_days < {days}",
    "merchant_id in list('high_risk_merchants')",
    "card_id not in list('trusted_cards') and amount > {big}",
    "count(card, 10m) >= {count}",
    "count(account, 1h) > {count} and amount > {small}",
    "sum(card, 1h) > {big}",
    "amount / avg_amount(card, 30d) > {ratio}",
    "distinct_countries(card, 1h) >= 3",
    "risk_score > 0.{digit} and amount > {small}",
    "distance_km_from_home > {km} and account.age_days < {days}",
    "(country in ('NG', 'RU') or merchant_category = 'gambling') and not (hour between 8 "
    "and 20)",
    "amount * 2 > sum(account, 1d) or count(card, 1m) > {count}",
    "amount not between {small} and {big} and merchant_category != 'grocery_pos'",
    "lat > 60 or lon < -30 or risk_score >= 0.95",
    "account.home_country = 'DE' and country not in ('DE', 'AT', 'CH') and hour < 6",
]


def build_rules(count: int, rng: random.Random) -> list[CompiledRule]:
    rules = []
    for index in range(count):
        template = TEMPLATES[index % len(TEMPLATES)]
        rules.append(compile_rule(template.format(
            big=rng.choice([500, 1000, 2500, 5000]), small=rng.choice(["10", "49.99", "100"]),
            days=rng.choice([7, 30, 90]), count=rng.randint(3, 10), ratio=rng.choice([3, 5]),
            digit=rng.randint(5, 9), km=rng.choice([300, 500, 1000]))))
    return rules


def build_contexts(count: int, rules: Sequence[CompiledRule],
                   rng: random.Random) -> list[RuleContext]:
    keys = sorted(set().union(*(rule.velocity for rule in rules)),
                  key=lambda k: (k.function, k.entity, k.window_s))  # seeded draws stay put
    lists = {"high_risk_merchants": frozenset(f"m-{i}" for i in range(0, 50_000, 10)),
             "trusted_cards": frozenset(f"card-{i}" for i in range(0, 5_000, 7))}
    return [_context(rng, keys, lists) for _ in range(count)]


def _context(rng: random.Random, keys: Sequence[VelocityKey],
             lists: dict[str, frozenset[str]]) -> RuleContext:
    located = rng.random() < 0.8
    velocity: dict[VelocityKey, object] = {}
    for key in keys:
        if key.function in ("count", "distinct_countries"):
            velocity[key] = rng.randint(0, 12)
        else:
            velocity[key] = None if rng.random() < 0.1 else Decimal(rng.randint(0, 900_000)) / 100
    return RuleContext(
        amount=Decimal(rng.randint(1, 1_000_000)) / 100, currency=rng.choice(["EUR", "USD"]),
        country=rng.choice(COUNTRIES), merchant_id=f"m-{rng.randint(0, 50_000)}",
        merchant_category=rng.choice(CATEGORIES), card_id=f"card-{rng.randint(0, 5_000)}",
        account_id=f"acct-{rng.randint(0, 5_000)}", hour=rng.randint(0, 23),
        lat=rng.uniform(-90, 90) if located else None,
        lon=rng.uniform(-180, 180) if located else None,
        account_home_country=rng.choice(COUNTRIES), account_age_days=rng.randint(0, 3_000),
        account_currency="EUR", distance_km_from_home=rng.uniform(0, 9_000) if located else None,
        risk_score=rng.random() if rng.random() < 0.9 else None, velocity=velocity, lists=lists)


def time_compiled(rules: Sequence[CompiledRule],
                  contexts: Sequence[RuleContext]) -> tuple[list[float], int]:
    """Per-transaction µs of evaluating every rule, and the number of hits."""
    evaluators = [rule.evaluate for rule in rules]
    timings, hits, clock = [], 0, time.perf_counter_ns
    for ctx in contexts:
        started = clock()
        for evaluate in evaluators:
            if evaluate(ctx):
                hits += 1
        timings.append((clock() - started) / 1_000)
    return timings, hits


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rules", type=int, default=100)
    parser.add_argument("--transactions", type=int, default=4_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    rng = random.Random(20261129)
    rules = build_rules(args.rules, rng)
    contexts = build_contexts(args.transactions, rules, rng)
    best: list[float] = []
    hits = 0
    for _ in range(args.rounds):
        timings, hits = time_compiled(rules, contexts)
        if not best or statistics.fmean(timings) < statistics.fmean(best):
            best = timings
    best.sort()
    trees = [parse(rule.expression) for rule in rules]
    sample = contexts[:500]
    started = time.perf_counter()
    for ctx in sample:
        for tree in trees:
            tree.evaluate(ctx)
    interpreted_us = (time.perf_counter() - started) * 1e6 / len(sample)
    print(f"{len(rules)} rules x {len(contexts)} transactions, best of {args.rounds} rounds, "
          f"{hits / len(contexts):.1f} hits per transaction")
    print(f"compiled:    mean {statistics.fmean(best):.1f} µs  p50 {best[len(best) // 2]:.1f} µs"
          f"  p99 {best[int(len(best) * 0.99)]:.1f} µs per transaction (all rules)")
    print(f"interpreted: mean {interpreted_us:.1f} µs per transaction (tree walk, no parse)")


if __name__ == "__main__":
    main()
