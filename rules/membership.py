"""`x in (a, b)`, `x in list('name')`, `x between a and b`, and their `not` forms.

All are false when x is null. Unknown items of an `in` list are skipped; a null bound makes
`between` false. Literal items become one frozenset when the rule is compiled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rules import values
from rules.codegen import float_twin
from rules.conditions import scalar
from rules.errors import RuleTypeError
from rules.fields import CONDITION, Kind
from rules.functions import ListOf
from rules.nodes import COMPARISON, SUM, Literal, Node, NumberLiteral, require

if TYPE_CHECKING:
    from rules.codegen import Codegen
    from rules.context import RuleContext


class Membership(Node):
    __slots__ = ("negated",)
    precedence = COMPARISON

    def __init__(self, negated: bool, start: int, end: int, children: tuple[Node, ...]):
        super().__init__(start, end, CONDITION, children)
        self.negated = negated

    @property
    def word(self) -> str:
        return "not in" if self.negated else "in"


class InItems(Membership):
    """`x in (a, b, c)`: items of x's type, literals or not."""

    __slots__ = ()

    def __init__(self, value: Node, items: tuple[Node, ...], negated: bool, start: int,
                 end: int) -> None:
        scalar(value, "'in'")
        for item in items:
            if item.type.kind is not value.type.kind:
                raise RuleTypeError(
                    f"{item.describe()} is {item.type.kind.value}, but {value.describe()} "
                    f"is {value.type.kind.value}", item.column)
        super().__init__(negated, start, end, (value, *items))

    def evaluate(self, ctx: RuleContext) -> bool:
        value, *items = (child.evaluate(ctx) for child in self.children)
        return (values.not_in if self.negated else values.is_in)(value, items)

    def compile(self, gen: Codegen) -> str:
        value, *items = self.children
        literals = [item.value for item in items if isinstance(item, Literal)]
        if len(literals) < len(items):
            codes = "".join(item.compile(gen) + ", " for item in items)
            helper = gen.helper("not_in" if self.negated else "is_in")
            return f"{helper}({value.compile(gen)}, ({codes}))"
        known = gen.constant(frozenset(literals))
        code, nullable = gen.exact(value)
        if not self.negated:
            return f"({code} in {known})"  # None is in no set
        return gen.guarded([(code, nullable)], lambda n: f"{n[0]} not in {known}")

    def render(self) -> str:
        value, *items = self.children
        listed = ", ".join(item.render() for item in items)
        return f"{self.render_child(value, SUM)} {self.word} ({listed})"


class InList(Membership):
    """`x in list('name')`: a named list of text values, kept outside the rule."""

    __slots__ = ()

    def __init__(self, value: Node, source: ListOf, negated: bool, start: int,
                 end: int) -> None:
        if value.type.kind is not Kind.TEXT:
            raise RuleTypeError(f"{source.describe()} holds text, but {value.describe()} is "
                                f"{value.type.kind.value}", value.column)
        super().__init__(negated, start, end, (value, source))

    def evaluate(self, ctx: RuleContext) -> bool:
        value, source = (child.evaluate(ctx) for child in self.children)
        if self.negated:
            return value is not None and value not in source  # type: ignore[operator]
        return value in source  # type: ignore[operator]

    def compile(self, gen: Codegen) -> str:
        value, source = (child.compile(gen) for child in self.children)
        if not self.negated:
            return f"({value} in {source})"
        return gen.guarded([(value, self.children[0].type.nullable)],
                           lambda n: f"{n[0]} not in {source}")

    def render(self) -> str:
        value, source = self.children
        return f"{self.render_child(value, SUM)} {self.word} {source.render()}"


class Between(Node):
    """`x between low and high`, both ends included; `not between` is the rest."""

    __slots__ = ("negated",)
    precedence = COMPARISON

    def __init__(self, value: Node, low: Node, high: Node, negated: bool, start: int,
                 end: int) -> None:
        for node in (value, low, high):
            require(node, Kind.NUMBER, "'between'")
        super().__init__(start, end, CONDITION, (value, low, high))
        self.negated = negated

    def evaluate(self, ctx: RuleContext) -> bool:
        value, low, high = (child.evaluate(ctx) for child in self.children)
        return (values.not_between if self.negated else values.between)(value, low, high)

    def compile(self, gen: Codegen) -> str:
        value, low, high = self.children
        bounds = _literal_bounds(gen, value, low, high)
        if bounds is None:
            helper = gen.helper("not_between" if self.negated else "between")
            codes = ", ".join(child.compile(gen) for child in self.children)
            return f"{helper}({codes})"
        code, nullable = value.compile(gen), value.type.nullable

        def test(n: list[str]) -> str:
            inside = f"{bounds[0]} <= {n[0]} <= {bounds[1]}"
            if not self.negated:
                return inside
            nan_guard = f"{n[0]} == {n[0]} and " if value.type.floating else ""
            return f"{nan_guard}not ({inside})"

        return gen.guarded([(code, nullable)], test)

    def render(self) -> str:
        value, low, high = (self.render_child(child, SUM) for child in self.children)
        word = "not between" if self.negated else "between"
        return f"{value} {word} {low} and {high}"


def _literal_bounds(gen: Codegen, value: Node, low: Node,
                    high: Node) -> tuple[str, str] | None:
    """Constant names for literal bounds, as floats when value is a float field (exact, see
    float_twin), or None when the generic helper must run."""
    if not (isinstance(low, NumberLiteral) and isinstance(high, NumberLiteral)):
        return None
    if not value.type.floating:
        return gen.constant(low.value), gen.constant(high.value)
    twins = float_twin(low.value), float_twin(high.value)
    if twins[0] is None or twins[1] is None:
        return None
    return gen.constant(twins[0]), gen.constant(twins[1])
