"""Recursive-descent parser: rule text -> checked tree (see `rules.nodes`).

Binding, loosest first: `or` < `and` < `not` < comparison, `in`, `between` < `+ -` < `* /` <
unary `-` < values. Comparisons do not chain. `and`/`or` and same-level arithmetic are parsed
as flat n-ary nodes, so a long rule is a wide tree, not a deep one; nesting (parentheses,
`not`, `-`, calls) is capped at MAX_DEPTH, so the parser never nears Python's recursion
limit.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import cast

from rules.conditions import And, Compare, Not, Or
from rules.context import ENTITIES
from rules.errors import RuleSyntaxError, RuleTypeError, UnknownName
from rules.fields import FIELDS, Kind, did_you_mean
from rules.functions import FUNCTIONS, Argument, Duration, ListOf, Word
from rules.membership import Between, InItems, InList
from rules.nodes import (
    MAX_DEPTH,
    Arithmetic,
    BoolLiteral,
    Field,
    Negate,
    Node,
    NumberLiteral,
    Product,
    Sum,
    TextLiteral,
)
from rules.tokens import Token, tokenize

MAX_LENGTH = 4_000
MAX_ITEMS = 1_000
COMPARISONS = frozenset({"=", "!=", "<", "<=", ">", ">="})


def parse(expression: str) -> Node:
    """The checked tree of a whole rule, which must be a condition; raises RuleError."""
    if len(expression) > MAX_LENGTH:
        raise RuleSyntaxError(f"the rule is {len(expression):,} characters long",
                              MAX_LENGTH + 1, f"at most {MAX_LENGTH:,} are allowed")
    return Parser(expression).rule()


class Parser:
    def __init__(self, expression: str) -> None:
        self.tokens = tokenize(expression)
        self.index = 0
        self.nesting = 0

    # -- tokens ---------------------------------------------------------------------------

    @property
    def token(self) -> Token:
        return self.tokens[self.index]

    def peek(self) -> Token:
        return self.tokens[min(self.index + 1, len(self.tokens) - 1)]

    def advance(self) -> Token:
        token = self.token
        self.index = min(self.index + 1, len(self.tokens) - 1)
        return token

    @property
    def end(self) -> int:
        """Where the last consumed token ends: the end of the node being built."""
        return self.tokens[self.index - 1].end

    def expect(self, kind: str) -> Token:
        if self.token.kind != kind:
            raise RuleSyntaxError(f"expected '{kind}'", self.token.column)
        return self.advance()

    def enter(self, token: Token) -> None:
        self.nesting += 1
        if self.nesting > MAX_DEPTH:
            raise RuleSyntaxError("expression is nested too deeply", token.column,
                                  f"at most {MAX_DEPTH} levels")

    def unexpected(self, hint: str | None = None) -> RuleSyntaxError:
        if self.token.kind == "end":
            return RuleSyntaxError("unexpected end of expression", self.token.column)
        return RuleSyntaxError(f"unexpected '{self.token.text}'", self.token.column, hint)

    # -- grammar --------------------------------------------------------------------------

    def rule(self) -> Node:
        node = self.disjunction()
        if self.token.kind != "end":
            glued = self.token.kind in ("name", "number", "string", "(", "not")
            raise self.unexpected("missing 'and' or 'or'?" if glued else None)
        if node.type.kind is not Kind.BOOL:
            raise RuleTypeError(f"a rule must be a condition, but this is "
                                f"{node.type.kind.value}", node.column,
                                "compare it with something, like amount > 100")
        return node

    def disjunction(self) -> Node:
        start = self.token.start
        operands = [self.conjunction()]
        while self.token.kind == "or":
            self.advance()
            operands.append(self.conjunction())
        return operands[0] if len(operands) == 1 else Or(tuple(operands), start, self.end)

    def conjunction(self) -> Node:
        start = self.token.start
        operands = [self.negation()]
        while self.token.kind == "and":
            self.advance()
            operands.append(self.negation())
        return operands[0] if len(operands) == 1 else And(tuple(operands), start, self.end)

    def negation(self) -> Node:
        nots = []
        while self.token.kind == "not":
            nots.append(self.advance())
            self.enter(nots[-1])
        node = self.comparison()
        for token in reversed(nots):
            node = Not(node, token.start, self.end)
            self.nesting -= 1
        return node

    def comparison(self) -> Node:
        start = self.token.start
        left = self.sum()
        operator = self.token
        negated = operator.kind == "not" and self.peek().kind in ("in", "between")
        if negated:
            self.advance()
        keyword = self.token.kind
        if operator.kind in COMPARISONS:
            self.advance()
            node: Node = Compare(operator.text, left, self.sum(), start, self.end,
                                 operator.column)
        elif keyword == "in":
            self.advance()
            node = self.membership(left, negated, start)
        elif keyword == "between":
            self.advance()
            node = self.between(left, negated, start)
        else:
            return left
        if self.token.kind in COMPARISONS | {"in", "between"}:
            raise RuleSyntaxError("comparisons cannot be chained", self.token.column,
                                  "join them with 'and'")
        return node

    def membership(self, value: Node, negated: bool, start: int) -> Node:
        if self.token.kind != "(":
            source = self.unary()
            if not isinstance(source, ListOf):
                raise RuleTypeError("'in' needs a list", source.column,
                                    "like ('FR', 'DE') or list('name')")
            return InList(value, source, negated, start, self.end)
        self.enter(self.advance())
        items = [self.disjunction()]
        while self.token.kind == ",":
            self.advance()
            if len(items) == MAX_ITEMS:
                raise RuleSyntaxError(f"more than {MAX_ITEMS:,} items in a list",
                                      self.token.column, "use a named list: list('name')")
            items.append(self.disjunction())
        self.expect(")")
        self.nesting -= 1
        return InItems(value, tuple(items), negated, start, self.end)

    def between(self, value: Node, negated: bool, start: int) -> Node:
        low = self.sum()
        self.expect("and")
        return Between(value, low, self.sum(), negated, start, self.end)

    def sum(self) -> Node:
        return self.arithmetic(Sum, ("+", "-"), self.product)

    def product(self) -> Node:
        return self.arithmetic(Product, ("*", "/"), self.unary)

    def arithmetic(self, node: type[Arithmetic], operators: tuple[str, str],
                   operand: Callable[[], Node]) -> Node:
        start = self.token.start
        operands, seen = [operand()], []
        while self.token.kind in operators:
            seen.append(self.advance().kind)
            operands.append(operand())
        if not seen:
            return operands[0]
        return node(tuple(operands), tuple(seen), start, self.end)

    def unary(self) -> Node:
        minuses = []
        while self.token.kind == "-":
            minuses.append(self.advance())
            self.enter(minuses[-1])
        node = self.value()
        for token in reversed(minuses):
            if isinstance(node, NumberLiteral):  # `-5` is a literal, not an operation
                node = NumberLiteral(node.value.copy_negate(), token.start, self.end)
            else:
                node = Negate(node, token.start, self.end)
            self.nesting -= 1
        return node

    def value(self) -> Node:
        token = self.token
        if token.kind in ("number", "string", "true", "false"):
            self.advance()
            return _literal(token)
        if token.kind == "name":
            return self.call() if self.peek().kind == "(" else self.field()
        if token.kind == "(":
            self.enter(self.advance())
            node = self.disjunction()
            self.expect(")")
            self.nesting -= 1
            return node
        if token.kind == "duration":
            raise RuleTypeError(f"a duration like {token.text} is only allowed as a window",
                                token.column, "like count(card, 10m)")
        raise self.unexpected("expected a value")

    def field(self) -> Node:
        token = self.advance()
        spec = FIELDS.get(token.text)
        if spec is None:
            raise UnknownName(f"unknown field '{token.text}'", token.column,
                              unknown_field_hint(token.text))
        return Field(spec, token.start, token.end)

    def call(self) -> Node:
        name = self.advance()
        function = FUNCTIONS.get(name.text.lower())
        if function is None:
            raise UnknownName(f"unknown function '{name.text}'", name.column,
                              unknown_function_hint(name.text))
        self.enter(self.advance())
        arguments = self.arguments()
        self.nesting -= 1
        return function.build(arguments, name.start, self.end)

    def arguments(self) -> list[Argument]:
        arguments: list[Argument] = []
        if self.token.kind != ")":
            arguments.append(self.argument())
            while self.token.kind == ",":
                self.advance()
                arguments.append(self.argument())
        self.expect(")")
        return arguments

    def argument(self) -> Argument:
        token = self.token
        if token.kind == "name" and token.text not in FIELDS and self.peek().kind != "(":
            self.advance()
            return Word(token.text, token.start)
        if token.kind == "duration":
            self.advance()
            return Duration(token.text, cast(int, token.value), token.start)
        return self.disjunction()


def _literal(token: Token) -> Node:
    if isinstance(token.value, Decimal):
        return NumberLiteral(token.value, token.start, token.end)
    if isinstance(token.value, str):
        return TextLiteral(token.value, token.start, token.end)
    return BoolLiteral(token.kind == "true", token.start, token.end)


def unknown_field_hint(name: str) -> str | None:
    lowered = name.lower()
    if lowered in ENTITIES:
        return f"{lowered} is only an argument of a function, like count({lowered}, 10m)"
    if lowered in FUNCTIONS:
        return f"{lowered} is a function: {FUNCTIONS[lowered].signature}"
    if lowered in ("null", "none"):
        return "there is no null: any comparison with a missing value is false"
    return did_you_mean(name, list(FIELDS))


def unknown_function_hint(name: str) -> str | None:
    return did_you_mean(name.lower(), list(FUNCTIONS))
