"""The tree-walking interpreter: `interpret` a rule, or `explain` every step of it.

Slower than the compiled fast path but plain; the property tests hold the two equal, and
the analysts' "test this rule on a sample" endpoint shows its steps.
"""

from __future__ import annotations

import msgspec

from rules.context import RuleContext
from rules.nodes import walk
from rules.parser import parse


class Explanation(msgspec.Struct, frozen=True):
    """The rule's answer, and each sub-expression's value in source order: (text, value)
    pairs, the whole rule first. Literals and list contents are left out."""

    matched: bool
    steps: list[tuple[str, object]]


def interpret(expression: str, ctx: RuleContext) -> bool:
    return bool(parse(expression).evaluate(ctx))


def explain(expression: str, ctx: RuleContext) -> Explanation:
    root = parse(expression)
    steps = [(expression[node.start:node.end], node.evaluate(ctx))
             for node in walk(root) if node.explained]
    return Explanation(matched=bool(root.evaluate(ctx)), steps=steps)
