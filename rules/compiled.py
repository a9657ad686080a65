"""`compile_rule`: rule text -> a CompiledRule the engine evaluates once per transaction."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rules.codegen import build_function
from rules.context import RuleContext, VelocityKey
from rules.functions import ListOf, VelocityFunction
from rules.nodes import Field, walk
from rules.parser import parse


@dataclass(frozen=True, slots=True, eq=False)
class CompiledRule:
    """A checked rule and its fast path.

    `velocity` and `lists` say what the admit stage must put in the RuleContext;
    `uses_risk_score` rules must run after scoring; `fields` are the field names the rule
    reads, as written in rules (`account.home_country`).
    """

    expression: str
    evaluate: Callable[[RuleContext], bool]
    velocity: frozenset[VelocityKey]
    lists: frozenset[str]
    uses_risk_score: bool
    fields: frozenset[str]


def compile_rule(expression: str) -> CompiledRule:
    """Parse, check and compile a rule; raises RuleError saying what is wrong and where."""
    root = parse(expression)
    nodes = list(walk(root))
    fields = frozenset(node.spec.name for node in nodes if isinstance(node, Field))
    return CompiledRule(
        expression=expression,
        evaluate=build_function(root),
        velocity=frozenset(node.key for node in nodes if isinstance(node, VelocityFunction)),
        lists=frozenset(node.list_name for node in nodes if isinstance(node, ListOf)),
        uses_risk_score="risk_score" in fields,
        fields=fields,
    )


def validate(expression: str) -> None:
    """Raise RuleError unless `expression` is a valid rule."""
    compile_rule(expression)
