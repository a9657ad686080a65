"""The functions of the language, one class each; `FUNCTIONS` is the registry the parser reads.

A function class checks its arguments in `build` (raising RuleTypeError at the faulty
argument) and is then an ordinary node: `evaluate` for the interpreter, `compile` for the
fast path, `render` for canonical text. Velocity functions read a value the admit stage
computed beforehand (`RuleContext.velocity`), so evaluating them costs one dict lookup.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from rules.context import ENTITIES, VelocityKey
from rules.errors import RuleTypeError
from rules.fields import LIST, MAYBE_NUMBER
from rules.nodes import Node, NumberLiteral, TextLiteral, quote

if TYPE_CHECKING:
    from rules.codegen import Codegen
    from rules.context import RuleContext

MAX_WINDOW_S = 90 * 86_400


@dataclass(frozen=True, slots=True)
class Word:
    """A bare word argument that is not a field, like `card` in `count(card, 10m)`."""

    text: str
    start: int

    @property
    def column(self) -> int:
        return self.start + 1


@dataclass(frozen=True, slots=True)
class Duration:
    """A window argument like `10m`."""

    text: str
    seconds: int
    start: int

    @property
    def column(self) -> int:
        return self.start + 1


Argument = Node | Word | Duration


class Function(Node):
    """A call `name(arguments)`."""

    __slots__ = ()
    name: ClassVar[str]
    signature: ClassVar[str]  # for messages and the docs

    @classmethod
    @abstractmethod
    def build(cls, arguments: Sequence[Argument], start: int, end: int) -> Function:
        """Check the arguments (RuleTypeError at the faulty one) and make the node."""

    @classmethod
    def check_count(cls, arguments: Sequence[Argument], expected: int, start: int) -> None:
        if len(arguments) != expected:
            raise RuleTypeError(
                f"{cls.name} takes {expected} argument{'s' if expected > 1 else ''}, "
                f"got {len(arguments)}", start + 1, f"write {cls.signature}")


class VelocityFunction(Function):
    """A feature of the card's or account's payments in a window before this one."""

    __slots__ = ("key", "window")

    def __init__(self, key: VelocityKey, window: str, start: int, end: int) -> None:
        super().__init__(start, end, MAYBE_NUMBER)  # null when velocity is unavailable
        self.key, self.window = key, window

    @classmethod
    def build(cls, arguments: Sequence[Argument], start: int, end: int) -> Function:
        cls.check_count(arguments, 2, start)
        entity, window = arguments
        if not (isinstance(entity, Word) and entity.text.lower() in ENTITIES):
            raise RuleTypeError(f"first argument of {cls.name} must be card or account",
                                entity.column, f"write {cls.signature}")
        window = cls.checked_window(window)
        key = VelocityKey(cls.name, entity.text.lower(), window.seconds)
        return cls(key, window.text, start, end)

    @classmethod
    def checked_window(cls, window: Argument) -> Duration:
        if isinstance(window, NumberLiteral):
            raise RuleTypeError(f"window of {cls.name} needs a unit", window.column,
                                "like 30s, 10m, 1h or 7d")
        if not isinstance(window, Duration):
            raise RuleTypeError(f"second argument of {cls.name} must be a window",
                                window.column, "like 30s, 10m, 1h or 7d")
        if window.seconds > MAX_WINDOW_S:
            raise RuleTypeError(f"window of {cls.name} is longer than 90d", window.column)
        if window.seconds < 1:
            raise RuleTypeError(f"window of {cls.name} must be at least 1s", window.column)
        return window

    def evaluate(self, ctx: RuleContext) -> object:
        return ctx.velocity[self.key]

    def compile(self, gen: Codegen) -> str:
        return f"{gen.read('velocity')}[{gen.constant(self.key)}]"

    def render(self) -> str:
        return f"{self.name}({self.key.entity}, {self.window})"


class Count(VelocityFunction):
    """count(card|account, window): payments in the window, this one excluded (an int)."""

    __slots__ = ()
    name = "count"
    signature = "count(card, 10m)"


class Sum(VelocityFunction):
    """sum(card|account, window): total amount of those payments (a decimal)."""

    __slots__ = ()
    name = "sum"
    signature = "sum(card, 1h)"


class AvgAmount(VelocityFunction):
    """avg_amount(card|account, window): their average amount; null when there are none."""

    __slots__ = ()
    name = "avg_amount"
    signature = "avg_amount(card, 30d)"


class DistinctCountries(VelocityFunction):
    """distinct_countries(card|account, window): how many countries they came from."""

    __slots__ = ()
    name = "distinct_countries"
    signature = "distinct_countries(account, 1h)"


class ListOf(Function):
    """list('name'): a named list of text values, only after `in` / `not in`."""

    __slots__ = ("list_name",)
    name = "list"
    signature = "list('high_risk_merchants')"
    explained = False  # may hold many thousand values; the `in` step shows the answer

    def __init__(self, list_name: str, start: int, end: int) -> None:
        super().__init__(start, end, LIST)
        self.list_name = list_name

    @classmethod
    def build(cls, arguments: Sequence[Argument], start: int, end: int) -> Function:
        cls.check_count(arguments, 1, start)
        name = arguments[0]
        if not isinstance(name, TextLiteral) or not name.value:
            raise RuleTypeError("list takes the name of a list in quotes", name.column,
                                f"write {cls.signature}")
        return cls(name.value, start, end)

    def evaluate(self, ctx: RuleContext) -> object:
        return ctx.lists[self.list_name]

    def compile(self, gen: Codegen) -> str:
        return f"{gen.read('lists')}[{gen.constant(self.list_name)}]"

    def render(self) -> str:
        return f"list({quote(self.list_name)})"


FUNCTIONS: dict[str, type[Function]] = {function.name: function for function in (
    Count, Sum, AvgAmount, DistinctCountries, ListOf)}
