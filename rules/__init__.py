"""The rule language fraud analysts write, e.g. `amount > 5000 and country != account.home_country`.

Pure domain code: text -> tokens (`tokens`) -> checked tree (`parser`, `nodes`,
`conditions`, `membership`, `functions`) -> one generated Python function per rule
(`codegen`, `compiled`), or a tree-walking interpreter (`explain`). The language itself is
described for risk officers in docs/rules.md.
"""

from rules.compiled import CompiledRule, compile_rule, validate
from rules.context import RuleContext, VelocityKey
from rules.errors import RuleError, RuleSyntaxError, RuleTypeError, UnknownName
from rules.explain import Explanation, explain, interpret

__all__ = [
    "CompiledRule", "Explanation", "RuleContext", "RuleError", "RuleSyntaxError",
    "RuleTypeError", "UnknownName", "VelocityKey", "compile_rule", "explain", "interpret",
    "validate",
]
