"""Condition nodes: comparisons, `in`, `between`, and `and`/`or`/`not` over them.

Every condition is true or false, never null: a comparison involving a null value is false,
so logic on top of it stays two-valued (`not (risk_score > 0.5)` is true when the score is
missing). See `rules.values` for the shared semantics.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rules import values
from rules.codegen import MIRRORED, PYTHON_OPERATORS, float_twin
from rules.errors import RuleTypeError
from rules.fields import CONDITION, Kind
from rules.nodes import AND, COMPARISON, NOT, OR, SUM, Node, NumberLiteral, require

if TYPE_CHECKING:
    from rules.codegen import Codegen
    from rules.context import RuleContext

_SCALARS = (Kind.NUMBER, Kind.TEXT, Kind.BOOL)


def scalar(node: Node, role: str) -> None:
    if node.type.kind not in _SCALARS:
        require(node, Kind.NUMBER, role)


class Compare(Node):
    """`a = b`, `a != b`, `a < b`... ; ordering only between numbers."""

    __slots__ = ("operator",)
    precedence = COMPARISON

    def __init__(self, operator: str, left: Node, right: Node, start: int, end: int,
                 column: int) -> None:
        role = f"'{operator}'"
        scalar(left, role)
        scalar(right, role)
        if left.type.kind is not right.type.kind:
            raise RuleTypeError(
                f"cannot compare {left.describe()} ({left.type.kind.value}) with "
                f"{right.describe()} ({right.type.kind.value})", column)
        if operator not in ("=", "!=") and left.type.kind is not Kind.NUMBER:
            raise RuleTypeError(f"{role} compares numbers, but {left.describe()} is "
                                f"{left.type.kind.value}", column, "use = or !=")
        super().__init__(start, end, CONDITION, (left, right))
        self.operator = operator

    def evaluate(self, ctx: RuleContext) -> bool:
        left, right = self.children
        return values.compare(self.operator, left.evaluate(ctx), right.evaluate(ctx))

    def compile(self, gen: Codegen) -> str:
        left, right = self.children
        operator = self.operator
        if right.type.floating and not left.type.floating:
            left, right, operator = right, left, MIRRORED[operator]
        twin = float_twin(right.value) if isinstance(right, NumberLiteral) else None
        if left.type.floating and (twin is not None or right.type.floating):
            operand = gen.constant(twin) if twin is not None else right.compile(gen)
            return _float_test(gen, operator, left.compile(gen), operand, right.type.nullable)
        return gen.guarded([gen.exact(left), gen.exact(right)],
                           lambda n: f"{n[0]} {PYTHON_OPERATORS[operator]} {n[1]}")

    def render(self) -> str:
        left, right = self.children
        return f"{self.render_child(left, SUM)} {self.operator} {self.render_child(right, SUM)}"


def _float_test(gen: Codegen, operator: str, left: str, right: str,
                right_nullable: bool) -> str:
    """Compare floats as floats: exact for these operands (see float_twin). A NaN reads as
    null and already fails every test but `!=`, hence the `x == x` guards there."""
    python = PYTHON_OPERATORS[operator]

    def test(n: list[str]) -> str:
        if operator != "!=":
            return f"{n[0]} {python} {n[1]}"
        variables = n if right_nullable else n[:1]
        return " and ".join([*(f"{v} == {v}" for v in variables), f"{n[0]} != {n[1]}"])

    return gen.guarded([(left, True), (right, right_nullable)], test)


class Not(Node):
    __slots__ = ()
    precedence = NOT

    def __init__(self, operand: Node, start: int, end: int) -> None:
        require(operand, Kind.BOOL, "'not'")
        super().__init__(start, end, CONDITION, (operand,))

    def evaluate(self, ctx: RuleContext) -> bool:
        return not self.children[0].evaluate(ctx)

    def compile(self, gen: Codegen) -> str:
        return f"(not {self.children[0].compile(gen)})"

    def render(self) -> str:
        return "not " + self.render_child(self.children[0], NOT)


class Logic(Node):
    """`a and b and c` or `a or b or c`, short-circuiting left to right."""

    __slots__ = ()
    word: ClassVar[str]

    def __init__(self, operands: tuple[Node, ...], start: int, end: int) -> None:
        for operand in operands:
            require(operand, Kind.BOOL, f"'{self.word}'")
        super().__init__(start, end, CONDITION, operands)

    def compile(self, gen: Codegen) -> str:
        return "(" + f" {self.word} ".join(c.compile(gen) for c in self.children) + ")"

    def render(self) -> str:
        return f" {self.word} ".join(self.render_child(c, self.precedence + 1)
                                     for c in self.children)


class And(Logic):
    __slots__ = ()
    word = "and"
    precedence = AND

    def evaluate(self, ctx: RuleContext) -> bool:
        return all(child.evaluate(ctx) for child in self.children)


class Or(Logic):
    __slots__ = ()
    word = "or"
    precedence = OR

    def evaluate(self, ctx: RuleContext) -> bool:
        return any(child.evaluate(ctx) for child in self.children)
