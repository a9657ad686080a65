"""Errors of the rule language: what is wrong with a rule, and at which column.

    ValueError
    └── RuleError              (root: `code`, `column`, `message`, `hint`)
        ├── RuleSyntaxError    rule_syntax_error   bad characters, missing ')', limits
        ├── RuleTypeError      rule_type_error     text compared with a number, bad window
        └── UnknownName        unknown_field       a field or function that does not exist

`str(error)` is the message an analyst reads, e.g.
`unknown field 'amout' at column 1 (did you mean 'amount'?)`. Columns count characters of
the whole expression from 1; a column one past the end means "at the end".
"""

from __future__ import annotations

from typing import ClassVar


class RuleError(ValueError):
    code: ClassVar[str] = "rule_error"

    def __init__(self, message: str, column: int | None = None, hint: str | None = None):
        self.message = message
        self.column = column
        self.hint = hint
        where = "" if column is None else f" at column {column}"
        super().__init__(message + where + ("" if hint is None else f" ({hint})"))


class RuleSyntaxError(RuleError):
    code = "rule_syntax_error"


class RuleTypeError(RuleError):
    code = "rule_type_error"


class UnknownName(RuleError):
    code = "unknown_field"
