"""Invalid rules: each fails with a stable code, the right column and a readable message."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rules import (
    RuleError,
    RuleSyntaxError,
    RuleTypeError,
    UnknownName,
    compile_rule,
    explain,
    interpret,
    validate,
)
from tests.rules.samples import make_context

SYNTAX, TYPE, UNKNOWN = "rule_syntax_error", "rule_type_error", "unknown_field"

# (rule, code, column, words the message must contain)
INVALID = [
    ("amout > 5000", UNKNOWN, 1, "unknown field 'amout' at column 1 (did you mean 'amount'?)"),
    ("Amount > 1", UNKNOWN, 1, "did you mean 'amount'?"),
    ("amount > 5 and account.home_contry = 'DE'", UNKNOWN, 16, "'account.home_country'"),
    ("card > 1", UNKNOWN, 1, "only an argument of a function"),
    ("count > 1", UNKNOWN, 1, "count is a function"),
    ("risk_score = null", UNKNOWN, 14, "there is no null"),
    ("zzz = 1", UNKNOWN, 1, "unknown field 'zzz' at column 1"),
    ("cnt(card, 10m) > 1", UNKNOWN, 1, "unknown function 'cnt' at column 1 (did you mean 'count'?)"),
    ("amount > (5000", SYNTAX, 15, "expected ')' at column 15"),
    ("(amount > 5000 and (country = 'FR')", SYNTAX, 36, "expected ')'"),
    ("count(card, 10m", SYNTAX, 16, "expected ')'"),
    ("amount > 5000 and ", SYNTAX, 19, "unexpected end of expression at column 19"),
    ("", SYNTAX, 1, "unexpected end of expression at column 1"),
    ("   ", SYNTAX, 4, "unexpected end of expression"),
    ("amount >", SYNTAX, 9, "unexpected end of expression"),
    ("amount > 5 and )", SYNTAX, 16, "unexpected ')'"),
    ("country in ()", SYNTAX, 13, "unexpected ')'"),
    ("amount > 5000 country = 'FR'", SYNTAX, 15, "missing 'and' or 'or'?"),
    ("amount > 5 )", SYNTAX, 12, "unexpected ')' at column 12"),
    ("amount == 5", SYNTAX, 8, "use '='"),
    ("amount <> 5", SYNTAX, 8, "use '!='"),
    ("amount > 5 && hour < 3", SYNTAX, 12, "use 'and'"),
    ("amount > 5 || hour < 3", SYNTAX, 12, "use 'or'"),
    ("!(amount > 5)", SYNTAX, 1, "use 'not'"),
    ("amount < 5 < 6", SYNTAX, 12, "comparisons cannot be chained"),
    ("amount = 5 in (5)", SYNTAX, 12, "comparisons cannot be chained"),
    ("merchant_id in list('x') = true", SYNTAX, 26, "comparisons cannot be chained"),
    ("currency = 'EUR", SYNTAX, 12, "unterminated string"),
    ("currency = 'E\\n'", SYNTAX, 14, "unknown escape"),
    ("amount > 5.", SYNTAX, 11, "unexpected character '.'"),
    ("amount > 5 ; drop", SYNTAX, 12, "unexpected character ';'"),
    ("amount between 1", SYNTAX, 17, "expected 'and' at column 17"),
    ("amount not 5", SYNTAX, 8, "unexpected 'not'"),
    ("count(card, 1.5h) > 1", SYNTAX, 13, "whole number"),
    ("count(card, 10min) > 1", SYNTAX, 13, "unknown unit 'min'"),
    ("count(card, 10M) > 1", SYNTAX, 13, "unknown unit 'M'"),
    ("amount > 1e3", SYNTAX, 10, "numbers have no exponent: '1e3'"),
    ("currency > 5", TYPE, 10, "cannot compare currency (text) with 5 (a number) at column 10"),
    ("amount = 'x'", TYPE, 8, "cannot compare amount (a number) with 'x' (text)"),
    ("currency < 'X'", TYPE, 10, "'<' compares numbers, but currency is text"),
    ("true > false", TYPE, 6, "'>' compares numbers"),
    ("count(merchant, 10m) > 1", TYPE, 7,
     "first argument of count must be card or account at column 7"),
    ("count(amount, 10m) > 1", TYPE, 7, "first argument of count must be card or account"),
    ("sum('card', 10m) > 1", TYPE, 5, "first argument of sum must be card or account"),
    ("count(card, 10) > 1", TYPE, 13, "window of count needs a unit"),
    ("avg_amount(card, 91d) > 1", TYPE, 18, "window of avg_amount is longer than 90d"),
    ("count(card, 7776001s) > 1", TYPE, 13, "longer than 90d"),
    ("count(card, 0m) > 1", TYPE, 13, "at least 1s"),
    ("count(card, amount) > 1", TYPE, 13, "second argument of count must be a window"),
    ("count(card) > 1", TYPE, 1, "count takes 2 arguments, got 1"),
    ("count() > 1", TYPE, 1, "got 0"),
    ("distinct_countries(card, 1h, 1) > 1", TYPE, 1, "got 3"),
    ("list(5)", TYPE, 6, "list takes the name of a list in quotes"),
    ("merchant_id in list('')", TYPE, 21, "list takes the name of a list in quotes"),
    ("merchant_id in list('a', 'b')", TYPE, 16, "list takes 1 argument, got 2"),
    ("list('x')", TYPE, 1, "a rule must be a condition, but this is a list"),
    ("list('x') = 'a'", TYPE, 1, "'=' needs a number, but list('x') is a list"),
    ("amount in list('x')", TYPE, 1, "list('x') holds text, but amount is a number"),
    ("merchant_id in merchant_id", TYPE, 16, "'in' needs a list"),
    ("merchant_id in count(card, 10m)", TYPE, 16, "'in' needs a list"),
    ("country in ('FR', 5)", TYPE, 19, "5 is a number, but country is text"),
    ("list('a') in ('b')", TYPE, 1, "'in' needs a number, but list('a') is a list"),
    ("amount > 10m", TYPE, 10, "a duration like 10m is only allowed as a window"),
    ("amount", TYPE, 1, "a rule must be a condition, but this is a number"),
    ("'abc'", TYPE, 1, "but this is text"),
    ("amount + 1", TYPE, 1, "a number"),
    ("not amount", TYPE, 5, "'not' needs a condition, but amount is a number"),
    ("amount and true", TYPE, 1, "'and' needs a condition"),
    ("true or currency", TYPE, 9, "'or' needs a condition, but currency is text"),
    ("amount + 'x' > 1", TYPE, 10, "'+' needs a number, but 'x' is text"),
    ("amount * (amount > 1) > 1", TYPE, 11, "'*' needs a number"),
    ("-currency = 1", TYPE, 2, "'-' needs a number, but currency is text"),
    ("amount between 'a' and 'b'", TYPE, 16, "'between' needs a number"),
    ("currency between 1 and 2", TYPE, 1, "'between' needs a number, but currency is text"),
    ("amount = '" + "x" * 60 + "'", TYPE, 8, "with '" + "x" * 36 + "... (text)"),
]


@pytest.mark.parametrize(("expression", "code", "column", "message"), INVALID)
def test_invalid_rules_say_what_and_where(expression: str, code: str, column: int,
                                          message: str) -> None:
    with pytest.raises(RuleError) as caught:
        compile_rule(expression)
    error = caught.value
    assert (error.code, error.column) == (code, column), str(error)
    assert message in str(error)
    assert f"at column {column}" in str(error)


@pytest.mark.parametrize(("expression", "code", "column", "message"), INVALID[:12])
def test_every_entry_point_raises_the_same_error(expression: str, code: str, column: int,
                                                 message: str) -> None:
    for call in (validate, lambda e: interpret(e, make_context()),
                 lambda e: explain(e, make_context())):
        with pytest.raises(RuleError) as caught:
            call(expression)
        assert (caught.value.code, caught.value.column) == (code, column)


def test_the_hierarchy_has_one_root_with_stable_codes() -> None:
    assert issubclass(RuleError, ValueError)
    assert {cls.code for cls in (RuleSyntaxError, RuleTypeError, UnknownName)} == {
        SYNTAX, TYPE, UNKNOWN}
    error = RuleSyntaxError("expected ')'", 17)
    assert (str(error), error.message, error.column, error.hint) == (
        "expected ')' at column 17", "expected ')'", 17, None)
    assert str(RuleError("no column")) == "no column"


def test_a_rule_longer_than_4000_characters_is_refused() -> None:
    longest = "amount > 1" + " " * 3_990
    validate(longest)
    with pytest.raises(RuleSyntaxError, match=r"4,001 characters long at column 4001"):
        validate(longest + " ")


def test_nesting_deeper_than_50_is_refused_cleanly() -> None:
    validate("(" * 50 + "amount > 1" + ")" * 50)
    validate("not " * 48 + "amount > 1")  # 48 nots, a comparison and a field: 50 levels
    validate("-" * 48 + "amount > 1")
    for text in ("(" * 51 + "amount > 1" + ")" * 51, "not " * 51 + "amount > 1",
                 "-" * 51 + "amount > 1", "count(" * 51):
        with pytest.raises(RuleSyntaxError, match="nested too deeply") as caught:
            validate(text)
        assert caught.value.column is not None


def test_a_tree_deeper_than_50_nodes_is_refused_even_with_few_parentheses() -> None:
    def nest(levels: int) -> str:
        text = "amount > 1"
        for _ in range(levels):  # not -> or -> = : three nodes per parenthesis
            text = f"not ({text} or false) = true"
        return text

    assert compile_rule(nest(16)).evaluate(make_context()) is interpret(nest(16), make_context())
    with pytest.raises(RuleSyntaxError, match="nested too deeply"):
        validate(nest(17))


def test_an_in_list_holds_at_most_1000_items() -> None:
    items = ",".join("1" for _ in range(1_000))
    validate(f"amount in ({items})")
    with pytest.raises(RuleSyntaxError, match=r"more than 1,000 items") as caught:
        validate(f"amount in ({items},2)")
    assert caught.value.column == len(f"amount in ({items},") + 1


@pytest.mark.parametrize("text", [
    "(" * 3_000, "not " * 900, "-" * 3_999, "count(" * 600, "'" * 3_000, "\x00",
    "amount > 5\u00a0", "amount > " + "(" * 1_000 + "1" + ")" * 1_000, "é = 1",
    "amount > \u0661", "x" * 4_001,
])
def test_pathological_inputs_raise_rule_errors_only(text: str) -> None:
    with pytest.raises(RuleError):
        validate(text)


@pytest.mark.parametrize("text", [
    "1 + " * 998 + "1 > 0",
    "true and " * 444 + "true",
    "amount > 1 or " * 285 + "true",
    "amount * " * 443 + "1 > 0",
    "amount in (" + ",".join(["hour"] * 790) + ")",
])
def test_long_flat_rules_are_wide_not_deep(text: str) -> None:
    assert len(text) <= 4_000
    ctx = make_context()
    assert compile_rule(text).evaluate(ctx) is interpret(text, ctx)


def _documented_errors() -> list[tuple[str, str]]:
    text = (Path(__file__).parents[2] / "docs" / "rules.md").read_text(encoding="utf-8")
    section = text.split("## When a rule is wrong")[1].split("\n## ")[0]
    rows = re.findall(r"^\| `(.*)` \| (.*) \|$", section, flags=re.MULTILINE)
    assert len(rows) >= 10
    return rows


@pytest.mark.parametrize(("expression", "message"), _documented_errors())
def test_the_messages_in_the_docs_are_the_real_ones(expression: str, message: str) -> None:
    with pytest.raises(RuleError) as caught:
        validate(expression)
    assert str(caught.value) == message
