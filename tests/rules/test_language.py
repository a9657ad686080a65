"""Valid rules and their answers on the sample transaction: compiled, interpreted, explained."""

from __future__ import annotations

import pytest

from rules import RuleContext, compile_rule, explain, interpret
from tests.rules.samples import NULLS, make_context

SAMPLE = make_context()

# (rule, answer on SAMPLE): amount 6000.00 EUR, FR, home DE, hour 3, risk 0.9, 880.5 km,
# count(card, 10m) 6, sum(card, 1h) 1500.50, avg_amount(card, 30d) 1500.
VALID = [
    # the example analysts write
    ("amount > 5000 and country != account.home_country", True),
    # every comparison, decimal against decimal
    ("amount = 6000", True),
    ("amount = 6000.000", True),
    ("amount != 6000", False),
    ("amount > 6000", False),
    ("amount >= 6000", True),
    ("amount < 6000.01", True),
    ("amount <= 5999.99", False),
    ("amount >= 12.50", True),
    ("hour < 6", True),
    ("account.age_days <= 30", True),
    ("currency = 'EUR'", True),
    ('currency = "EUR"', True),
    ("currency != 'USD'", True),
    ("merchant_category = 'electronics'", True),
    ("card_id = 'card-1' and account_id = 'acct-1'", True),
    ("account.currency = currency", True),
    ("merchant_id = 'M-42'", False),  # text compares exactly
    # keywords in any case; names are case-sensitive (see the error table)
    ("amount > 5000 AND country != account.home_country", True),
    ("NOT amount < 10 Or FALSE", True),
    ("country In ('FR') aNd hour BETWEEN 0 AND 5", True),
    ("TRUE", True),
    ("false", False),
    ("true = (amount > 1)", True),
    ("(amount > 1) != (amount > 2)", False),
    # precedence: or < and < not < comparison < + - < * / < unary minus
    ("true or false and false", True),
    ("(true or false) and false", False),
    ("not false and false", False),
    ("not (false and false)", True),
    ("not not true", True),
    ("amount > 1000 + 2000 * 2", True),
    ("amount = 2 * 3000", True),
    ("amount = 12000 / 2", True),
    ("amount - 1000 = 5000", True),
    ("amount - 1000 - 2000 = 3000", True),
    ("amount - (1000 - 2000) = 7000", True),
    ("amount / 2 / 3 = 1000", True),
    ("amount / (2 / 4) = 12000", True),
    ("-amount = -6000", True),
    ("- -amount = 6000", True),
    ("-(amount) < 0", True),
    ("2 - -3 = 5", True),
    ("-2 * -3 = 6", True),
    ("1 + 2 * 3 - 4 / 2 = 5", True),
    ("(1 + 2) * 3 = 9", True),
    ("1 / 3 * 3 = 1", False),  # 28 significant digits: 0.999...
    ("1 / 3 * 3 > 0.99999", True),
    # in / not in
    ("country in ('FR', 'DE', 'IT')", True),
    ("country not in ('FR', 'DE')", False),
    ("country not in ('US', 'GB')", True),
    ("country in (account.home_country, 'FR')", True),
    ("account.home_country in (country, 'IT')", False),
    ("hour in (1, 2, 3)", True),
    ("amount in (6000, 7000)", True),
    ("amount not in (1, 2)", True),
    ("amount in (5000 + 1000)", True),
    ("risk_score in (0.9, 0.95)", True),
    ("risk_score not in (0.1)", True),
    ("merchant_id in list('high_risk_merchants')", True),
    ("merchant_id not in list('high_risk_merchants')", False),
    ("merchant_id in List('empty')", False),
    ("merchant_id not in list('empty')", True),
    # between, inclusive
    ("amount between 6000 and 7000", True),
    ("amount between 5000 and 6000", True),
    ("amount between 6000.01 and 7000", False),
    ("amount not between 1 and 10", True),
    ("amount not between 6000 and 6000", False),
    ("hour between 0 and 5 and amount > 100", True),
    ("hour between 1 + 1 and 2 * 2", True),
    ("risk_score between 0.9 and 1", True),
    ("risk_score not between 0.5 and 0.8", True),
    ("risk_score between 0.90000000000000000001 and 1", False),  # no float twin: exact
    ("risk_score not between 0.90000000000000000001 and 1", True),
    ("amount between avg_amount(card, 30d) and 10000", True),
    ("amount between 7000 and 5000", False),  # empty range
    # float fields read as the decimal that prints them
    ("risk_score > 0.9", False),
    ("risk_score >= 0.9", True),
    ("risk_score = 0.9", True),
    ("risk_score != 0.9", False),
    ("0.9 = risk_score", True),
    ("0.8 < risk_score", True),
    ("distance_km_from_home > 500", True),
    ("distance_km_from_home = 880.5", True),
    ("lat > lon", True),
    ("lat != lon", True),
    ("risk_score * 10 = 9", True),
    ("risk_score > amount / 10000", True),
    ("risk_score = 0.90000000000000000001", False),  # beyond float precision: exact
    ("risk_score < 0.90000000000000000001", True),
    ("lat + lon = 51.2", True),
    # functions
    ("count(card, 10m) >= 5", True),
    ("count(card, 600s) = 6", True),
    ("count(card, 1h) = 9", True),
    ("COUNT(Card, 10m) = 6", True),
    ("sum(card, 1h) > 1500", True),
    ("sum(card, 1h) = 1500.5", True),
    ("avg_amount(card, 30d) = 1500", True),
    ("amount / avg_amount(card, 30d) > 3", True),
    ("amount / avg_amount(card, 30d) = 4", True),
    ("distinct_countries(account, 1h) >= 3", True),
    ("distinct_countries(card, 90d) = 0", True),
    ("count(card, 10m) + count(card, 1h) = 15", True),
    ("count(card, 1h) / count(card, 10m) = 1.5", True),
    # null: velocity unknown, no history
    ("count(account, 10m) > 0", False),
    ("count(account, 10m) = 0", False),
    ("count(account, 10m) != 0", False),
    ("not (count(account, 10m) > 0)", True),
    ("amount / avg_amount(account, 30d) > 3", False),
    ("not (amount / avg_amount(account, 30d) > 3)", True),
    ("avg_amount(account, 30d) + 1 < 0 or avg_amount(account, 30d) + 1 >= 0", False),
    ("amount in (avg_amount(account, 30d), 6000)", True),  # unknown items are skipped
    ("amount not in (avg_amount(account, 30d), 1)", True),
    ("count(account, 10m) in (1, 2)", False),
    ("count(account, 10m) not in (1, 2)", False),
    ("count(account, 10m) between 0 and 10", False),
    ("count(account, 10m) not between 0 and 10", False),
    ("amount between count(account, 10m) and 10000", False),
    ("amount not between count(account, 10m) and 1", False),
    # division by zero is null
    ("amount / 0 > 1", False),
    ("amount / 0 = amount / 0", False),
    ("amount / (count(card, 10m) - 6) > 1", False),
    ("distinct_countries(card, 90d) / distinct_countries(card, 90d) >= 0", False),
    # whitespace, newlines, quotes and escapes
    ("  amount\n  >\t5000  ", True),
    ("merchant_category != 'it\\'s'", True),
    ('merchant_category != "say \\"hi\\""', True),
    ("merchant_category != 'back\\\\slash'", True),
    ("currency = 'EUR' or currency = 'USD' or currency = 'GBP' or currency = 'CHF'", True),
]


@pytest.mark.parametrize(("expression", "expected"), VALID)
def test_valid_rules_answer_the_same_on_every_path(expression: str, expected: bool) -> None:
    assert compile_rule(expression).evaluate(SAMPLE) is expected
    assert interpret(expression, SAMPLE) is expected
    assert explain(expression, SAMPLE).matched is expected


NULL_CASES = [
    ("risk_score > 0.5", False),
    ("risk_score <= 0.5", False),
    ("risk_score = risk_score", False),
    ("risk_score != 0.5", False),
    ("not (risk_score > 0.5)", True),
    ("risk_score > 0.5 or amount > 1", True),
    ("lat = lat", False),
    ("lat != lon", False),
    ("lat between -90 and 90", False),
    ("lat not between -90 and 90", False),
    ("lat in (1, 2)", False),
    ("lat not in (1, 2)", False),
    ("distance_km_from_home > 500", False),
    ("distance_km_from_home + 1 > 0", False),
    ("-distance_km_from_home < 0", False),
    ("account.home_country = 'DE'", False),
    ("account.home_country != 'DE'", False),
    ("country != account.home_country", False),
    ("account.home_country in ('DE', 'FR')", False),
    ("account.home_country not in ('DE', 'FR')", False),
    ("account.home_country in list('high_risk_merchants')", False),
    ("account.home_country not in list('empty')", False),
    ("account.age_days < 30", False),
    ("account.age_days >= 0", False),
    ("amount > 5000 and country != account.home_country", False),
]


@pytest.mark.parametrize(("expression", "expected"), NULL_CASES)
def test_any_comparison_with_null_is_false(expression: str, expected: bool) -> None:
    assert compile_rule(expression).evaluate(NULLS) is expected
    assert interpret(expression, NULLS) is expected


@pytest.mark.parametrize(("value", "expected"), [
    (float("nan"), [False, False, False, False, False, False, False]),
    (float("inf"), [True, False, True, False, False, True, False]),
    (float("-inf"), [False, True, True, False, False, True, False]),
])
def test_nan_reads_as_null_and_infinity_as_infinity(value: float, expected: list[bool]) -> None:
    rules = ["risk_score > 1", "risk_score < 1", "risk_score != 1", "risk_score = 1",
             "risk_score between 0 and 1", "risk_score not between 0 and 1",
             "risk_score - risk_score = 0"]
    ctx = make_context(risk_score=value)
    assert [compile_rule(rule).evaluate(ctx) for rule in rules] == expected
    assert [interpret(rule, ctx) for rule in rules] == expected


def test_arithmetic_ignores_the_callers_decimal_context() -> None:
    import decimal

    rule = compile_rule("1 / 3 * 3 > 0.99999")
    with decimal.localcontext(decimal.Context(prec=2)):
        assert rule.evaluate(SAMPLE) is True
        assert interpret(rule.expression, SAMPLE) is True


def test_a_missing_velocity_key_or_list_is_a_loud_key_error() -> None:
    ctx: RuleContext = make_context(velocity={}, lists={})
    with pytest.raises(KeyError):
        compile_rule("count(card, 10m) > 1").evaluate(ctx)
    with pytest.raises(KeyError):
        compile_rule("merchant_id in list('high_risk_merchants')").evaluate(ctx)
    with pytest.raises(KeyError):
        interpret("merchant_id in list('nope')", ctx)
