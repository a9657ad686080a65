"""The tokenizer: rule text -> tokens with their positions.

Keywords (`and`, `OR`, `Between`...) are matched case-insensitively; names keep their case.
A number glued to a unit (`10m`, `1h`, `7d`, `30s`) is a duration token.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

from rules.errors import RuleSyntaxError

KEYWORDS = frozenset({"and", "or", "not", "in", "between", "true", "false"})
UNITS_S = {"s": 1, "m": 60, "h": 3_600, "d": 86_400}

_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<number>\d+(?:\.\d+)?) (?P<unit>[A-Za-z_]\w*)?
  | (?P<name>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)
  | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
  | (?P<mistake>==|<>|&&?|\|\|?|!(?!=))
  | (?P<op><=|>=|!=|[=<>+\-*/(),])
""", re.VERBOSE | re.ASCII | re.DOTALL)

_MISTAKES = {"==": "'='", "<>": "'!='", "&": "'and'", "&&": "'and'", "|": "'or'",
             "||": "'or'", "!": "'not' or '!='"}
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)
_EXPONENT = re.compile(r"[eE]\d+\Z")


@dataclass(frozen=True, slots=True)
class Token:
    """kind: a keyword, an operator itself, or number/duration/string/name/end."""

    kind: str
    text: str  # as written
    start: int  # 0-based offsets into the expression
    end: int
    value: Decimal | str | int | None = None  # number, unescaped string, window seconds

    @property
    def column(self) -> int:
        return self.start + 1


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise _bad_character(text, position)
        if match.lastgroup != "space":
            tokens.append(_token(match))
        position = match.end()
    tokens.append(Token("end", "", len(text), len(text)))
    return tokens


def _token(match: re.Match[str]) -> Token:
    kind, text, start, end = match.lastgroup or "", match.group(), match.start(), match.end()
    if kind == "unit":
        return _duration(match)
    if kind == "number":
        return Token("number", text, start, end, Decimal(text))
    if kind == "name":
        lowered = text.lower()
        return Token(lowered if lowered in KEYWORDS else "name", text, start, end)
    if kind == "string":
        return Token("string", text, start, end, _unescape(text, start))
    if kind == "mistake":
        raise RuleSyntaxError(f"unexpected '{text}'", start + 1, f"use {_MISTAKES[text]}")
    return Token(text, text, start, end)


def _duration(match: re.Match[str]) -> Token:
    number, unit, start = match.group("number"), match.group("unit"), match.start()
    if _EXPONENT.match(unit):
        raise RuleSyntaxError(f"numbers have no exponent: '{match.group()}'", start + 1,
                              "write the digits out, like 1000")
    if unit not in UNITS_S:
        raise RuleSyntaxError(f"unknown unit '{unit}' in '{match.group()}'", start + 1,
                              "a window is a whole number and s, m, h or d, like 10m")
    if "." in number:
        raise RuleSyntaxError(f"a window must be a whole number, not '{match.group()}'",
                              start + 1, "use a smaller unit, like 90m for 1.5h")
    seconds = int(number) * UNITS_S[unit]
    return Token("duration", match.group(), start, match.end(), seconds)


def _unescape(text: str, start: int) -> str:
    for escape in _ESCAPE.finditer(text):
        if escape.group(1) not in "\\'\"":
            raise RuleSyntaxError(f"unknown escape '{escape.group()}' in a string",
                                  start + escape.start() + 1, "only \\\\, \\' and \\\" exist")
    return _ESCAPE.sub(r"\1", text[1:-1])


def _bad_character(text: str, position: int) -> RuleSyntaxError:
    char = text[position]
    if char in "'\"":
        return RuleSyntaxError("unterminated string", position + 1,
                               "end it with the same quote it starts with")
    return RuleSyntaxError(f"unexpected character {char!r}", position + 1)
