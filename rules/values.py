"""Runtime semantics of values: null, numbers, comparison and arithmetic.

Both the interpreter and the generated fast path call these functions (the fast path only
inlines the cases proven equivalent), so the two cannot drift apart.

- null (None) makes every comparison false, `!=` included, and every arithmetic result null;
- numbers are exact: int or Decimal. A float field (lat, lon, distance_km_from_home,
  risk_score) is read as the shortest decimal that prints it, so risk_score 0.9 equals 0.9;
  a NaN reads as null;
- arithmetic runs in its own decimal context (28 significant digits), so it does not depend
  on whatever context the calling thread set; division by zero or a result out of range is
  null, never an exception.
"""

from __future__ import annotations

import decimal
import operator
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

Number = int | Decimal

_ARITHMETIC = decimal.Context(
    prec=28, rounding=decimal.ROUND_HALF_EVEN, Emax=999_999, Emin=-999_999,
    traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow])

COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
    ">": operator.gt, ">=": operator.ge,
}


def exact(value: object) -> object:
    """A float as the Decimal that prints like it (NaN -> None); anything else unchanged."""
    if type(value) is float:
        return None if value != value else Decimal(repr(value))
    return value


def compare(op: str, left: object, right: object) -> bool:
    left, right = exact(left), exact(right)
    if left is None or right is None:
        return False
    return COMPARISONS[op](left, right)


def is_in(value: object, items: Iterable[object]) -> bool:
    """`value in (...)`: known and equal to one of the known items."""
    value = exact(value)
    return value is not None and any(value == exact(item) for item in items)


def not_in(value: object, items: Iterable[object]) -> bool:
    """`value not in (...)`: known and equal to none of the items (unknown items skipped)."""
    value = exact(value)
    return value is not None and all(value != exact(item) for item in items)


def between(value: object, low: object, high: object) -> bool:
    return compare(">=", value, low) and compare("<=", value, high)


def not_between(value: object, low: object, high: object) -> bool:
    value, low, high = exact(value), exact(low), exact(high)
    if value is None or low is None or high is None:
        return False
    return not low <= value <= high  # type: ignore[operator]


def _numbers(left: object, right: object) -> tuple[Number, Number] | None:
    left, right = exact(left), exact(right)
    if left is None or right is None:
        return None
    return left, right  # type: ignore[return-value]


def add(left: object, right: object) -> Decimal | None:
    pair = _numbers(left, right)
    return None if pair is None else _safe(_ARITHMETIC.add, *pair)


def subtract(left: object, right: object) -> Decimal | None:
    pair = _numbers(left, right)
    return None if pair is None else _safe(_ARITHMETIC.subtract, *pair)


def multiply(left: object, right: object) -> Decimal | None:
    pair = _numbers(left, right)
    return None if pair is None else _safe(_ARITHMETIC.multiply, *pair)


def divide(left: object, right: object) -> Decimal | None:
    pair = _numbers(left, right)
    if pair is None or not pair[1]:
        return None
    return _safe(_ARITHMETIC.divide, *pair)


def negate(value: object) -> Decimal | None:
    number = exact(value)
    return None if number is None else _safe(_ARITHMETIC.minus, number)  # type: ignore[arg-type]


def _safe(function: Callable[..., Decimal], *numbers: Number) -> Decimal | None:
    try:
        return function(*numbers)
    except ArithmeticError:  # decimal's InvalidOperation, Overflow: the result is unknown
        return None


ARITHMETIC: dict[str, Callable[[object, object], Decimal | None]] = {
    "+": add, "-": subtract, "*": multiply, "/": divide,
}


def chain(first: object, *steps: object) -> Decimal | None:
    """`first op1 x1 op2 x2 ...` left to right; steps alternate a function of ARITHMETIC and
    an operand. Keeps long sums flat in the generated code (Python limits nesting)."""
    result: object = first
    for index in range(0, len(steps), 2):
        function: Callable[[object, object], Decimal | None] = steps[index]  # type: ignore[assignment]
        result = function(result, steps[index + 1])
    return result  # type: ignore[return-value]
