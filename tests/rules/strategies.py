"""Hypothesis strategies: well-typed rule texts and transactions to evaluate them on.

Rules are generated as typed trees rendered to text: numbers, text values and conditions,
each built from the smaller ones. Parentheses around arithmetic and logic operands are
sometimes left out (the result is still well typed, just grouped by precedence), keywords
come in random case, and literals are drawn so that they often equal the sample values.
"""

from __future__ import annotations

from decimal import Decimal

from hypothesis import strategies as st

from rules import CompiledRule, RuleContext, VelocityKey

NUMBER_FIELDS = ["amount", "hour", "lat", "lon", "account.age_days", "distance_km_from_home",
                 "risk_score"]
TEXT_FIELDS = ["currency", "country", "merchant_id", "merchant_category", "card_id",
               "account_id", "account.home_country", "account.currency"]
WINDOWS = ["30s", "10m", "600s", "1h", "7d", "30d", "90d"]
LIST_NAMES = ["high_risk", "empty", "other"]
WORDS = ["EUR", "USD", "FR", "DE", "m-1", "m-2", "it's", 'say "hi"', "back\\slash", ""]
SHARED_NUMBERS = ["0", "1", "0.9", "0.5", "3", "100", "6000", "6000.00", "12.50", "880.5",
                  "48.85", "-2.35", "0.1", "0.30000000000000004", "1e0"]
FLOATS = [0.9, 0.5, 1.0, 100.0, 880.5, 48.85, -2.35, 0.1, 0.30000000000000004, 0.0, -0.0]


def keyword(word: str) -> st.SearchStrategy[str]:
    return st.sampled_from([word, word.upper(), word.capitalize()])


def quoted(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _decimal_text(value: Decimal) -> str:
    return format(value, "f")


number_literals = st.one_of(
    st.sampled_from([n for n in SHARED_NUMBERS if "e" not in n]),
    st.decimals(min_value=-10**6, max_value=10**6, places=3).map(_decimal_text),
    st.decimals(min_value=0, max_value=1, places=22).map(_decimal_text),  # beyond a float
    st.integers(min_value=0, max_value=10**30).map(str),
)
text_literals = st.one_of(st.sampled_from(WORDS).map(quoted),
                          st.text(max_size=5).map(quoted),
                          st.sampled_from(WORDS[:4]).map(lambda w: f'"{w}"'))
velocity_calls = st.builds(
    lambda f, e, w: f"{f}({e}, {w})",
    st.sampled_from(["count", "sum", "avg_amount", "distinct_countries"]),
    st.sampled_from(["card", "account", "Card"]), st.sampled_from(WINDOWS))


def _maybe_parens(draw: st.DrawFn, text: str) -> str:
    return f"({text})" if draw(st.booleans()) else text


@st.composite
def _arithmetic(draw: st.DrawFn, children: st.SearchStrategy[str]) -> str:
    operator = draw(st.sampled_from(["+", "-", "*", "/"]))
    left, right = draw(children), draw(children)
    return f"{_maybe_parens(draw, left)} {operator} ({right})"


numbers = st.recursive(
    st.one_of(number_literals, st.sampled_from(NUMBER_FIELDS), velocity_calls),
    lambda children: st.one_of(_arithmetic(children), children.map(lambda c: f"-({c})")),
    max_leaves=6)
texts = st.one_of(st.sampled_from(TEXT_FIELDS), text_literals)


@st.composite
def comparisons(draw: st.DrawFn) -> str:
    if draw(st.booleans()):
        operator = draw(st.sampled_from(["=", "!=", "<", "<=", ">", ">="]))
        return f"{draw(numbers)} {operator} {draw(numbers)}"
    return f"{draw(texts)} {draw(st.sampled_from(['=', '!=']))} {draw(texts)}"


@st.composite
def memberships(draw: st.DrawFn) -> str:
    word = draw(keyword("not")) + " " if draw(st.booleans()) else ""
    word += draw(keyword("in"))
    choice = draw(st.integers(0, 2))
    if choice == 0:
        return f"{draw(texts)} {word} list('{draw(st.sampled_from(LIST_NAMES))}')"
    values = texts if choice == 1 else numbers
    items = draw(st.lists(values, min_size=1, max_size=4))
    return f"{draw(values)} {word} ({', '.join(items)})"


@st.composite
def betweens(draw: st.DrawFn) -> str:
    word = draw(keyword("not")) + " " if draw(st.booleans()) else ""
    return (f"{draw(numbers)} {word}{draw(keyword('between'))} {draw(numbers)} "
            f"{draw(keyword('and'))} {draw(numbers)}")


@st.composite
def _logic(draw: st.DrawFn, children: st.SearchStrategy[str]) -> str:
    operands = [_maybe_parens(draw, c) for c in draw(st.lists(children, min_size=2,
                                                              max_size=3))]
    return f" {draw(keyword(draw(st.sampled_from(['and', 'or']))))} ".join(operands)


@st.composite
def _negation(draw: st.DrawFn, children: st.SearchStrategy[str]) -> str:
    return f"{draw(keyword('not'))} ({draw(children)})"


@st.composite
def _bool_comparison(draw: st.DrawFn, children: st.SearchStrategy[str]) -> str:
    return f"({draw(children)}) {draw(st.sampled_from(['=', '!=']))} ({draw(children)})"


conditions = st.recursive(
    st.one_of(comparisons(), memberships(), betweens(), keyword("true"), keyword("false")),
    lambda children: st.one_of(_logic(children), _negation(children),
                               _bool_comparison(children)),
    max_leaves=6)

maybe_floats = st.one_of(st.none(), st.sampled_from(FLOATS),
                         st.floats(allow_nan=True, allow_infinity=True))
words = st.sampled_from(WORDS)


@st.composite
def contexts(draw: st.DrawFn, rule: CompiledRule) -> RuleContext:
    """A transaction holding every velocity key and list `rule` needs."""
    return RuleContext(
        amount=draw(st.one_of(st.sampled_from([Decimal("6000.00"), Decimal("0")]),
                              st.decimals(min_value=0, max_value=10**7, places=2))),
        currency=draw(words), country=draw(words), merchant_id=draw(words),
        merchant_category=draw(words), card_id=draw(words), account_id=draw(words),
        hour=draw(st.integers(0, 23)), lat=draw(maybe_floats), lon=draw(maybe_floats),
        account_home_country=draw(st.one_of(st.none(), words)),
        account_age_days=draw(st.one_of(st.none(), st.integers(0, 5_000))),
        account_currency=draw(words), distance_km_from_home=draw(maybe_floats),
        risk_score=draw(maybe_floats),
        velocity={key: draw(_velocity_value(key)) for key in sorted(
            rule.velocity, key=lambda k: (k.function, k.entity, k.window_s))},
        lists={name: frozenset(draw(st.lists(words, max_size=4))) for name in sorted(
            rule.lists)},
    )


def _velocity_value(key: VelocityKey) -> st.SearchStrategy[object]:
    if key.function in ("count", "distinct_countries"):
        return st.one_of(st.none(), st.integers(0, 20))
    return st.one_of(st.none(), st.decimals(min_value=0, max_value=10**6, places=2))
