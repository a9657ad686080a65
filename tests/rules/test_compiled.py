"""The public API around a rule: what a CompiledRule declares, explain's steps, canonical
text, and the guarantees of the generated fast path."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import msgspec
import pytest

from rules import CompiledRule, RuleContext, VelocityKey, compile_rule, explain
from rules.codegen import Codegen, audit, build_function, float_twin
from rules.parser import parse
from tests.rules.samples import make_context


def test_the_analysts_example_works_as_written() -> None:
    rule = compile_rule("amount > 5000 and country != account.home_country")
    assert rule.evaluate(make_context()) is True
    assert rule.evaluate(make_context(country="DE")) is False
    assert rule.evaluate(make_context(amount=Decimal("5000"))) is False
    assert (rule.velocity, rule.lists, rule.uses_risk_score) == (frozenset(), frozenset(), False)
    assert rule.fields == {"amount", "country", "account.home_country"}


def test_a_rule_declares_what_the_admit_stage_must_provide() -> None:
    rule = compile_rule("count(card, 10m) >= 5 and sum(Account, 1h) > 100 and count(card, 600s) "
                        "< 9 or merchant_id not in list('high_risk') and risk_score > 0.8 or "
                        "distinct_countries(account, 90d) > 2 or amount / avg_amount(card, 30d) "
                        "> 3 or country in list('watch')")
    assert rule.velocity == {
        VelocityKey("count", "card", 600), VelocityKey("sum", "account", 3_600),
        VelocityKey("distinct_countries", "account", 7_776_000),
        VelocityKey("avg_amount", "card", 2_592_000)}
    assert rule.lists == {"high_risk", "watch"}
    assert rule.uses_risk_score is True
    assert rule.fields == {"merchant_id", "risk_score", "amount", "country"}
    assert rule.expression.startswith("count(card, 10m)")


def test_compiled_rules_and_keys_are_immutable_values() -> None:
    rule = compile_rule("amount > 1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        rule.expression = "true"  # type: ignore[misc]
    key = VelocityKey("count", "card", 600)
    assert key == VelocityKey("count", "card", 600) and hash(key) == hash(
        VelocityKey("count", "card", 600))
    assert {key: 1}[VelocityKey("count", "card", 600)] == 1
    with pytest.raises(AttributeError):
        key.window_s = 1  # type: ignore[misc]
    with pytest.raises(AttributeError):
        make_context().amount = Decimal(1)  # type: ignore[misc]
    assert isinstance(rule, CompiledRule) and isinstance(make_context(), msgspec.Struct)


def test_the_velocity_key_of_a_feature_text_like_the_test_endpoint_reads_it() -> None:
    assert compile_rule("count(card, 10m) = 0").velocity == {VelocityKey("count", "card", 600)}
    assert compile_rule("avg_amount(account, 7d) = 0").velocity == {
        VelocityKey("avg_amount", "account", 604_800)}


def test_explain_lists_every_step_in_source_order() -> None:
    explanation = explain("(amount > 5000) and country != account.home_country",
                          make_context())
    assert explanation.matched is True
    assert explanation.steps == [
        ("(amount > 5000) and country != account.home_country", True),
        ("amount > 5000", True),
        ("amount", Decimal("6000.00")),
        ("country != account.home_country", True),
        ("country", "FR"),
        ("account.home_country", "DE"),
    ]


def test_explain_shows_functions_and_arithmetic_but_not_literals_or_lists() -> None:
    explanation = explain("merchant_id in list('high_risk_merchants') or "
                          "amount / avg_amount(account, 30d) > 3", make_context())
    assert explanation.matched is True
    assert explanation.steps == [
        ("merchant_id in list('high_risk_merchants') or amount / avg_amount(account, 30d) "
         "> 3", True),
        ("merchant_id in list('high_risk_merchants')", True),
        ("merchant_id", "m-42"),
        ("amount / avg_amount(account, 30d) > 3", False),
        ("amount / avg_amount(account, 30d)", None),
        ("amount", Decimal("6000.00")),
        ("avg_amount(account, 30d)", None),
    ]


def test_explain_evaluates_steps_that_the_answer_did_not_need() -> None:
    explanation = explain("true or risk_score > 0.5", make_context(risk_score=None))
    assert explanation.steps == [("true or risk_score > 0.5", True),
                                 ("risk_score > 0.5", False), ("risk_score", None)]


@pytest.mark.parametrize(("text", "canonical"), [
    ("amount>5 AND (country='FR' OR country='DE')",
     "amount > 5 and (country = 'FR' or country = 'DE')"),
    ("((amount > 5))", "amount > 5"),
    ("(amount + 1) * 2 > 3", "(amount + 1) * 2 > 3"),
    ("amount + (1 * 2) > 3", "amount + 1 * 2 > 3"),
    ("amount - (1 - 2) > (amount - 1) - 2", "amount - (1 - 2) > (amount - 1) - 2"),
    ("- -amount = -6000", "--amount = -6000"),
    ("-(5) = - 5", "-5 = -5"),
    ("not (not true)", "not not true"),
    ("not (true and false)", "not (true and false)"),
    ("(not true) and false", "not true and false"),
    ("(true or false) or true", "(true or false) or true"),
    ("(amount > 1) = (amount > 2)", "(amount > 1) = (amount > 2)"),
    ("Count(CARD, 600s) > 1", "count(card, 600s) > 1"),
    ('merchant_id = "it\'s"', "merchant_id = 'it\\'s'"),
    ("merchant_id NOT IN LIST('x')", "merchant_id not in list('x')"),
    ("country In ('FR','DE')", "country in ('FR', 'DE')"),
    ("amount Not Between 1 And 2", "amount not between 1 and 2"),
    ("amount = 0.0000001", "amount = 0.0000001"),
    ("amount = 5000.00", "amount = 5000.00"),
])
def test_rules_render_as_canonical_text(text: str, canonical: str) -> None:
    assert parse(text).render() == canonical
    assert parse(canonical).render() == canonical


def test_the_generated_source_never_contains_user_text() -> None:
    evil = "merchant_id = '\\' or __import__(\"os\").system(\"true\") or \\''"
    gen = Codegen()
    source = parse(evil).compile(gen)
    assert "import" not in source and "system" not in source
    assert source == "(ctx.merchant_id == _k1)"
    assert gen.namespace["_k1"] == "' or __import__(\"os\").system(\"true\") or '"
    assert compile_rule(evil).evaluate(make_context()) is False


def test_the_generated_function_sees_no_builtins() -> None:
    rule = compile_rule("amount > 1")
    assert rule.evaluate.__globals__["__builtins__"] == {}
    assert rule.evaluate.__name__ == "rule"


@pytest.mark.parametrize("source", [
    "lambda ctx: __import__('os')",
    "lambda ctx: ctx.__class__",
    "lambda ctx: open",
    "lambda ctx: 'text'",
    "lambda ctx: [x for x in ctx.lists]",
    "lambda ctx: exact(ctx.amount, key=1)",
    "lambda ctx: ctx.amount.__class__",
])
def test_the_audit_refuses_anything_but_whitelisted_reads_and_helpers(source: str) -> None:
    with pytest.raises(RuntimeError, match="failed its audit"):
        audit(source, {"exact": object()})


def test_the_audit_accepts_what_the_generator_writes() -> None:
    audit("lambda ctx: ((_t1 := ctx.risk_score) is not None and _t1 > _k2)", {"_k2": 0.5})


def test_codegen_reads_only_context_attributes() -> None:
    with pytest.raises(ValueError, match="not a RuleContext attribute"):
        Codegen().read("__class__")


def test_a_float_field_is_compared_as_a_float_only_when_that_is_exact() -> None:
    assert float_twin(Decimal("0.9")) == 0.9
    assert float_twin(Decimal("0")) == 0.0
    assert float_twin(Decimal("123456789012345")) == 123456789012345.0
    assert float_twin(Decimal("1234567890123456")) is None  # 16 digits
    assert float_twin(Decimal("1E+301")) is None
    assert float_twin(Decimal("1E-301")) is None
    gen = Codegen()
    assert parse("risk_score > 0.9").compile(gen) == (
        "((_t2 := ctx.risk_score) is not None and _t2 > _k1)")
    assert gen.namespace["_k1"] == 0.9


def test_build_function_returns_plain_booleans() -> None:
    function = build_function(parse("risk_score > 0.5 or country in ('FR')"))
    ctx: RuleContext = make_context()
    assert function(ctx) is True
    assert function(make_context(risk_score=None, country="DE")) is False
