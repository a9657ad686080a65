"""The live rule set and the decision it gives for one transaction.

A `RuleSet` is built from the shadow and active rule versions of one rule-set version and is
never changed afterwards: a reload builds a new one and swaps it in (`RuleSetHolder`), so a
batch always sees one consistent set. Rules that use `risk_score` run after scoring, the
others before it.

Decision: an active `decline` hit declines, an active `flag` hit flags, an `allow` hit
suppresses a flag that only the ML score would raise (never a decline). Every active hit is
listed in the reasons as `rule:<name>`; shadow hits are recorded but change nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import msgspec

from ledger.records import RuleHit
from rules import CompiledRule, RuleContext, RuleError, VelocityKey, compile_rule
from rules.store import RuleVersion

log = logging.getLogger(__name__)

_SEVERITY = {"approve": 0, "flag": 1, "decline": 2}


class ActiveRule(msgspec.Struct, frozen=True):
    rule: RuleVersion
    compiled: CompiledRule

    @property
    def shadow(self) -> bool:
        return self.rule.status == "shadow"


class Verdict(msgspec.Struct, kw_only=True):
    """What the rules concluded so far for one transaction."""

    decision: str = "approve"
    reasons: list[str] = msgspec.field(default_factory=list)
    hits: list[RuleHit] = msgspec.field(default_factory=list)
    allowed: bool = False  # an allow rule matched: an ML-only flag is suppressed
    errors: int = 0

    def escalate(self, decision: str) -> None:
        if _SEVERITY[decision] > _SEVERITY[self.decision]:
            self.decision = decision


class SkippedRule(msgspec.Struct, frozen=True):
    rule_id: int
    name: str
    error: str


class RuleSet:
    """One immutable rule-set version, compiled and split around scoring."""

    def __init__(self, version: int, rules: Sequence[RuleVersion]) -> None:
        self.version = version
        compiled: list[ActiveRule] = []
        self.skipped: list[SkippedRule] = []
        for rule in sorted(rules, key=lambda r: (r.priority, r.rule_id)):
            try:
                compiled.append(ActiveRule(rule, compile_rule(rule.expression)))
            except RuleError as exc:
                # Refused at write time; this only happens when the language changed under a
                # stored rule. Skip it loudly rather than stop screening.
                log.error("rule %s (%s v%d) no longer compiles: %s", rule.rule_id, rule.name,
                          rule.version, exc)
                self.skipped.append(SkippedRule(rule.rule_id, rule.name, str(exc)))
        self.before_scoring = tuple(r for r in compiled if not r.compiled.uses_risk_score)
        self.after_scoring = tuple(r for r in compiled if r.compiled.uses_risk_score)
        self.velocity: frozenset[VelocityKey] = frozenset().union(
            *(r.compiled.velocity for r in compiled))
        self.list_names: frozenset[str] = frozenset().union(*(r.compiled.lists for r in compiled))
        self.lists: dict[str, frozenset[str]] = dict.fromkeys(self.list_names, frozenset())

    def attach_lists(self, lists: dict[str, frozenset[str]]) -> None:
        """Fill in the lists' contents; call before the set is published."""
        self.lists = {name: lists.get(name, frozenset()) for name in self.list_names}

    def __len__(self) -> int:
        return len(self.before_scoring) + len(self.after_scoring)

    def apply(self, ctx: RuleContext, verdict: Verdict, *, after_scoring: bool = False) -> None:
        """Evaluate one side of the set against ctx, folding hits into verdict."""
        for active in self.after_scoring if after_scoring else self.before_scoring:
            try:
                matched = active.compiled.evaluate(ctx)
            except Exception:
                log.exception("rule %s failed on a transaction", active.rule.name)
                verdict.errors += 1
                continue
            if matched:
                _fold(active, verdict)


def _fold(active: ActiveRule, verdict: Verdict) -> None:
    rule = active.rule
    verdict.hits.append(RuleHit(rule.change_id, active.shadow))
    if active.shadow:
        return
    verdict.reasons.append(f"rule:{rule.name}")
    if rule.action == "allow":
        verdict.allowed = True
    else:
        verdict.escalate(rule.action)


class RuleSetHolder:
    """The current RuleSet of this process; the reloader swaps it, stages read it."""

    def __init__(self, rule_set: RuleSet | None = None) -> None:
        self.current = rule_set or RuleSet(0, [])
