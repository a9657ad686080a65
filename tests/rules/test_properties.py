"""Property tests: compiled == interpreted, render -> parse round trips, no stray exceptions."""

from __future__ import annotations

import math
import operator
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rules import RuleError, compile_rule, explain, interpret, values
from rules.codegen import float_twin
from rules.parser import parse
from tests.rules.samples import make_context
from tests.rules.strategies import conditions, contexts

PYTHON = {"=": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
          ">": operator.gt, ">=": operator.ge}
SETTINGS = settings(max_examples=400, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(conditions, st.data())
def test_the_fast_path_agrees_with_the_interpreter(text: str, data: st.DataObject) -> None:
    rule = compile_rule(text)  # every generated rule is well typed
    ctx = data.draw(contexts(rule))
    expected = interpret(text, ctx)
    assert rule.evaluate(ctx) is expected
    assert explain(text, ctx).matched is expected


@SETTINGS
@given(conditions, st.data())
def test_render_then_parse_gives_the_same_rule(text: str, data: st.DataObject) -> None:
    rendered = parse(text).render()
    assert parse(rendered).render() == rendered
    ctx = data.draw(contexts(compile_rule(text)))
    assert interpret(rendered, ctx) is interpret(text, ctx)
    assert compile_rule(rendered).velocity == compile_rule(text).velocity


TOKENS = ["amount", "risk_score", "lat", "country", "account.home_country", "count",
          "list", "card", "account", "(", ")", ",", "=", "!=", "<", ">=", "+", "-", "*",
          "/", "and", "OR", "not", "in", "between", "true", "5", "0.9", "10m", "91d", "'FR'",
          "'x", '"', "\\", "==", "&", ".", "null", "'high_risk'", "sum", "1.5h"]


def _check_random_text(text: str) -> None:
    try:
        rule = compile_rule(text)
    except RuleError as error:
        assert error.column is None or 1 <= error.column <= len(text) + 1
        assert str(error)
        return
    ctx = make_context(velocity=dict.fromkeys(rule.velocity, 3),
                       lists=dict.fromkeys(rule.lists, frozenset({"FR"})))
    assert rule.evaluate(ctx) is interpret(text, ctx)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=60))
def test_random_text_raises_nothing_but_rule_errors(text: str) -> None:
    _check_random_text(text)


@settings(max_examples=1_000, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), max_size=14).map(" ".join))
def test_random_token_soup_raises_nothing_but_rule_errors(text: str) -> None:
    _check_random_text(text)


literals = st.one_of(
    st.decimals(allow_nan=False, allow_infinity=False),
    st.tuples(st.floats(allow_nan=False, allow_infinity=False), st.integers(1, 17)).map(
        lambda pair: Decimal(f"{pair[0]:.{pair[1]}g}")),
)


@settings(max_examples=3_000, deadline=None)
@given(literals, st.data(), st.sampled_from(["=", "!=", "<", "<=", ">", ">="]))
def test_a_float_twin_compares_exactly_like_the_decimal(literal: Decimal,
                                                        data: st.DataObject,
                                                        operator: str) -> None:
    twin = float_twin(literal)
    near = float(literal)
    x = data.draw(st.one_of(
        st.floats(), st.sampled_from([near, math.nextafter(near, math.inf),
                                      math.nextafter(near, -math.inf)])))
    if twin is not None:  # else the fast path converts x to Decimal instead
        as_floats = PYTHON[operator](x, twin) and (operator != "!=" or x == x)
        assert as_floats == values.compare(operator, x, literal)
