"""The rule tree: one small class per kind of value node, checked when it is built.

Every node can `evaluate(ctx)` itself (the interpreter behind `interpret` and `explain`),
`compile(gen)` itself into a Python expression for the fast path (see `rules.codegen`), and
`render()` itself as canonical rule text. Conditions live in `rules.conditions`, function
calls in `rules.functions`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from decimal import Decimal
from typing import TYPE_CHECKING, ClassVar

from rules import values
from rules.errors import RuleSyntaxError, RuleTypeError
from rules.fields import CONDITION, MAYBE_NUMBER, NUMBER, TEXT, FieldSpec, Kind, ValueType

if TYPE_CHECKING:
    from rules.codegen import Codegen
    from rules.context import RuleContext

MAX_DEPTH = 50

# Binding strength, loosest first: what `render` needs to put parentheses back.
OR, AND, NOT, COMPARISON, SUM, PRODUCT, NEGATION, ATOM = range(1, 9)

_HINTS = {
    Kind.LIST: "list('name') can only follow 'in' or 'not in'",
    Kind.DURATION: "a duration is only the window of a function, like count(card, 10m)",
}


class Node(ABC):
    """A checked node covering `expression[start:end]`."""

    __slots__ = ("children", "depth", "end", "start", "type")
    start: int
    end: int
    type: ValueType
    children: tuple[Node, ...]
    depth: int
    precedence: ClassVar[int] = ATOM
    explained: ClassVar[bool] = True  # listed as a step by `explain`

    def __init__(self, start: int, end: int, type_: ValueType,
                 children: tuple[Node, ...] = ()) -> None:
        self.start, self.end, self.type, self.children = start, end, type_, children
        self.depth = 1 + max((child.depth for child in children), default=0)
        if self.depth > MAX_DEPTH:
            raise RuleSyntaxError("expression is nested too deeply", self.column,
                                  f"at most {MAX_DEPTH} levels")

    @property
    def column(self) -> int:
        return self.start + 1

    @abstractmethod
    def evaluate(self, ctx: RuleContext) -> object:
        """This node's value on ctx (None for null): the interpreter."""

    @abstractmethod
    def compile(self, gen: Codegen) -> str:
        """A Python expression computing the same value from `ctx`: the fast path."""

    @abstractmethod
    def render(self) -> str:
        """Canonical rule text that parses back to this node."""

    def render_child(self, child: Node, loosest: int) -> str:
        text = child.render()
        return text if child.precedence >= loosest else f"({text})"

    def describe(self) -> str:
        text = self.render()
        return text if len(text) <= 40 else text[:37] + "..."


def walk(root: Node) -> Iterator[Node]:
    """Every node, parents before children, children left to right: source order."""
    stack = [root]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(reversed(node.children))


def require(node: Node, kind: Kind, role: str) -> None:
    """Raise a type error at `node` unless it is of `kind`; `role` names who needs it."""
    if node.type.kind is not kind:
        raise RuleTypeError(f"{role} needs {kind.value}, but {node.describe()} is "
                            f"{node.type.kind.value}", node.column, _HINTS.get(node.type.kind))


class Literal(Node):
    __slots__ = ("value",)
    explained = False

    def __init__(self, value: object, start: int, end: int, type_: ValueType) -> None:
        super().__init__(start, end, type_)
        self.value = value

    def evaluate(self, ctx: RuleContext) -> object:
        return self.value

    def compile(self, gen: Codegen) -> str:
        return gen.constant(self.value)


class NumberLiteral(Literal):
    value: Decimal

    def __init__(self, value: Decimal, start: int, end: int) -> None:
        super().__init__(value, start, end, NUMBER)

    def render(self) -> str:
        return format(self.value, "f")


class TextLiteral(Literal):
    value: str

    def __init__(self, value: str, start: int, end: int) -> None:
        super().__init__(value, start, end, TEXT)

    def render(self) -> str:
        return quote(self.value)


class BoolLiteral(Literal):
    value: bool

    def __init__(self, value: bool, start: int, end: int) -> None:
        super().__init__(value, start, end, CONDITION)

    def compile(self, gen: Codegen) -> str:
        return "True" if self.value else "False"

    def render(self) -> str:
        return "true" if self.value else "false"


def quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


class Field(Node):
    """A field of the transaction or account, e.g. `amount`, `account.home_country`."""

    __slots__ = ("spec",)

    def __init__(self, spec: FieldSpec, start: int, end: int) -> None:
        super().__init__(start, end, spec.type)
        self.spec = spec

    def evaluate(self, ctx: RuleContext) -> object:
        return getattr(ctx, self.spec.attribute)

    def compile(self, gen: Codegen) -> str:
        return gen.read(self.spec.attribute)

    def render(self) -> str:
        return self.spec.name


class Negate(Node):
    """`-x` of anything but a literal (the parser folds `-5` into the literal)."""

    __slots__ = ()
    precedence = NEGATION

    def __init__(self, operand: Node, start: int, end: int) -> None:
        require(operand, Kind.NUMBER, "'-'")
        nullable = operand.type.nullable or operand.type.floating  # a NaN reads as null
        super().__init__(start, end, MAYBE_NUMBER if nullable else NUMBER, (operand,))

    def evaluate(self, ctx: RuleContext) -> object:
        return values.negate(self.children[0].evaluate(ctx))

    def compile(self, gen: Codegen) -> str:
        return f"{gen.helper('negate')}({self.children[0].compile(gen)})"

    def render(self) -> str:
        return "-" + self.render_child(self.children[0], NEGATION)


class Arithmetic(Node):
    """`a + b - c` (a Sum) or `a * b / c` (a Product), evaluated left to right."""

    __slots__ = ("operators",)

    def __init__(self, operands: tuple[Node, ...], operators: tuple[str, ...], start: int,
                 end: int) -> None:
        for operand in operands:
            require(operand, Kind.NUMBER, f"'{operators[0]}'")
        # Always nullable: division by zero and out-of-range results are null.
        super().__init__(start, end, MAYBE_NUMBER, operands)
        self.operators = operators

    def evaluate(self, ctx: RuleContext) -> object:
        result = self.children[0].evaluate(ctx)
        for operator, operand in zip(self.operators, self.children[1:], strict=True):
            result = values.ARITHMETIC[operator](result, operand.evaluate(ctx))
        return result

    def compile(self, gen: Codegen) -> str:
        names = [gen.helper(_HELPERS[operator]) for operator in self.operators]
        operands = [operand.compile(gen) for operand in self.children]
        if len(names) == 1:
            return f"{names[0]}({operands[0]}, {operands[1]})"
        steps = "".join(f", {name}, {operand}" for name, operand in zip(
            names, operands[1:], strict=True))
        return f"{gen.helper('chain')}({operands[0]}{steps})"

    def render(self) -> str:
        tight = self.precedence + 1
        parts = [self.render_child(self.children[0], tight)]
        for operator, operand in zip(self.operators, self.children[1:], strict=True):
            parts.append(f"{operator} {self.render_child(operand, tight)}")
        return " ".join(parts)


class Sum(Arithmetic):
    __slots__ = ()
    precedence = SUM


class Product(Arithmetic):
    __slots__ = ()
    precedence = PRODUCT


_HELPERS = {"+": "add", "-": "subtract", "*": "multiply", "/": "divide"}
