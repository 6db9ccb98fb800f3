"""Kubernetes label selector strings, parsed exactly as ``k8s.io/apimachinery/pkg/labels.Parse`` does.

The HPA sends its ``metricSelector`` as ``labelSelector=<selector.String()>``; the adapter must accept
everything the API server accepts and reject everything it rejects, with the same messages, so this is
a faithful port of the Go lexer and recursive-descent parser (including its quirks: ``in ()`` means the
empty value, values are de-duplicated and sorted, requirements are sorted by key). ``gt``/``lt`` parse
here as they do in Go; whether they can be served is decided later by the PromQL conversion.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from tgi_autoscaler.k8s.names import go_quote, label_key_errors, label_value_errors
from tgi_autoscaler.promql.errors import SelectorParseError

__all__ = ["Operator", "Requirement", "parse_selector"]


class Operator(enum.StrEnum):
    """``selection.Operator`` values (their Go string forms)."""

    DOES_NOT_EXIST = "!"
    EQUALS = "="
    DOUBLE_EQUALS = "=="
    IN = "in"
    NOT_EQUALS = "!="
    NOT_IN = "notin"
    EXISTS = "exists"
    GREATER_THAN = "gt"
    LESS_THAN = "lt"


_BINARY_OPERATORS: Final = ("in", "notin", "=", "==", "!=", "gt", "lt")


@dataclass(frozen=True)
class Requirement:
    """One parsed requirement: ``key``, ``operator`` and the sorted, de-duplicated ``values``."""

    key: str
    operator: Operator
    values: tuple[str, ...] = ()

    def __str__(self) -> str:
        # Requirement.String() in Go; used to name the requirement in error messages.
        if self.operator is Operator.EXISTS:
            return self.key
        if self.operator is Operator.DOES_NOT_EXIST:
            return "!" + self.key
        if self.operator in (Operator.IN, Operator.NOT_IN):
            return f"{self.key} {self.operator.value} ({','.join(self.values)})"
        symbol = {Operator.GREATER_THAN: ">", Operator.LESS_THAN: "<"}.get(self.operator, self.operator.value)
        return f"{self.key}{symbol}{self.values[0]}"


class _Tok(enum.Enum):
    ERROR = enum.auto()
    END = enum.auto()
    CLOSED_PAR = enum.auto()
    COMMA = enum.auto()
    DOES_NOT_EXIST = enum.auto()
    DOUBLE_EQUALS = enum.auto()
    EQUALS = enum.auto()
    GREATER_THAN = enum.auto()
    IDENTIFIER = enum.auto()
    IN = enum.auto()
    LESS_THAN = enum.auto()
    NOT_EQUALS = enum.auto()
    NOT_IN = enum.auto()
    OPEN_PAR = enum.auto()


_STRING_TO_TOKEN: Final = {
    ")": _Tok.CLOSED_PAR,
    ",": _Tok.COMMA,
    "!": _Tok.DOES_NOT_EXIST,
    "==": _Tok.DOUBLE_EQUALS,
    "=": _Tok.EQUALS,
    ">": _Tok.GREATER_THAN,
    "in": _Tok.IN,
    "<": _Tok.LESS_THAN,
    "!=": _Tok.NOT_EQUALS,
    "notin": _Tok.NOT_IN,
    "(": _Tok.OPEN_PAR,
}
_SPECIAL: Final = frozenset("=!(),><")
_WHITESPACE: Final = frozenset(" \t\r\n")


def _lex(text: str) -> list[tuple[_Tok, str]]:
    """The Go lexer: identifiers are maximal runs of non-special, non-blank characters.

    A NUL character ends the input, as the Go lexer's ``read()`` returns 0 at the end.
    """
    end = text.find("\x00")
    if end >= 0:
        text = text[:end]
    items: list[tuple[_Tok, str]] = []
    pos, size = 0, len(text)
    while True:
        while pos < size and text[pos] in _WHITESPACE:
            pos += 1
        if pos >= size:
            items.append((_Tok.END, ""))
            return items
        if text[pos] in _SPECIAL:
            buffer, last = "", ""
            while pos < size and text[pos] in _SPECIAL:
                candidate = buffer + text[pos]
                if candidate in _STRING_TO_TOKEN:
                    buffer = last = candidate
                    pos += 1
                elif last:
                    break
                else:
                    buffer = candidate
                    pos += 1
            if last:
                items.append((_STRING_TO_TOKEN[last], last))
            else:
                items.append((_Tok.ERROR, f"error expected: keyword found '{buffer}'"))
            continue
        start = pos
        while pos < size and text[pos] not in _SPECIAL and text[pos] not in _WHITESPACE:
            pos += 1
        word = text[start:pos]
        token = _STRING_TO_TOKEN.get(word, _Tok.IDENTIFIER)
        items.append((token, word))


class _Parser:
    def __init__(self, text: str) -> None:
        self._items = _lex(text)
        self._pos = 0

    def _lookahead(self, values_context: bool) -> tuple[_Tok, str]:
        tok, lit = self._items[self._pos]
        if values_context and tok in (_Tok.IN, _Tok.NOT_IN):
            tok = _Tok.IDENTIFIER
        return tok, lit

    def _consume(self, values_context: bool) -> tuple[_Tok, str]:
        item = self._lookahead(values_context)
        self._pos += 1
        return item

    def parse(self) -> list[Requirement]:
        requirements: list[Requirement] = []
        while True:
            tok, lit = self._lookahead(True)
            if tok in (_Tok.IDENTIFIER, _Tok.DOES_NOT_EXIST):
                try:
                    requirements.append(self._requirement())
                except _RequirementError as exc:
                    raise SelectorParseError(
                        f"unable to parse requirement: {exc.message}", part=exc.part
                    ) from None
                tok2, lit2 = self._consume(True)
                if tok2 is _Tok.END:
                    return requirements
                if tok2 is _Tok.COMMA:
                    tok3, lit3 = self._lookahead(True)
                    if tok3 not in (_Tok.IDENTIFIER, _Tok.DOES_NOT_EXIST):
                        raise SelectorParseError(f"found '{lit3}', expected: identifier after ','", part=lit3)
                    continue
                raise SelectorParseError(f"found '{lit2}', expected: ',' or 'end of string'", part=lit2)
            if tok is _Tok.END:
                return requirements
            raise SelectorParseError(f"found '{lit}', expected: !, identifier, or 'end of string'", part=lit)

    def _requirement(self) -> Requirement:
        key, operator = self._key_and_inferred_operator()
        if operator in (Operator.EXISTS, Operator.DOES_NOT_EXIST):
            return _new_requirement(key, operator, [])
        operator = self._operator()
        values = self._values() if operator in (Operator.IN, Operator.NOT_IN) else self._exact_value()
        return _new_requirement(key, operator, sorted(values))

    def _key_and_inferred_operator(self) -> tuple[str, Operator | None]:
        operator: Operator | None = None
        tok, literal = self._consume(True)
        if tok is _Tok.DOES_NOT_EXIST:
            operator = Operator.DOES_NOT_EXIST
            tok, literal = self._consume(True)
        if tok is not _Tok.IDENTIFIER:
            raise _RequirementError(f"found '{literal}', expected: identifier", literal)
        if errors := label_key_errors(literal):
            # labels.Parse validates the key against a nil field path, hence "<nil>".
            raise _RequirementError(
                f"<nil>: Invalid value: {go_quote(literal)}: {'; '.join(errors)}", literal
            )
        next_tok, _ = self._lookahead(True)
        if next_tok in (_Tok.END, _Tok.COMMA) and operator is not Operator.DOES_NOT_EXIST:
            operator = Operator.EXISTS
        return literal, operator

    def _operator(self) -> Operator:
        tok, lit = self._consume(False)
        operators = {
            _Tok.IN: Operator.IN,
            _Tok.EQUALS: Operator.EQUALS,
            _Tok.DOUBLE_EQUALS: Operator.DOUBLE_EQUALS,
            _Tok.GREATER_THAN: Operator.GREATER_THAN,
            _Tok.LESS_THAN: Operator.LESS_THAN,
            _Tok.NOT_IN: Operator.NOT_IN,
            _Tok.NOT_EQUALS: Operator.NOT_EQUALS,
        }
        if tok not in operators:
            raise _RequirementError(f"found '{lit}', expected: {', '.join(_BINARY_OPERATORS)}", lit)
        return operators[tok]

    def _values(self) -> set[str]:
        tok, lit = self._consume(True)
        if tok is not _Tok.OPEN_PAR:
            raise _RequirementError(f"found '{lit}' expected: '('", lit)
        tok, lit = self._lookahead(True)
        if tok in (_Tok.IDENTIFIER, _Tok.COMMA):
            values = self._identifier_list()
            closing, _ = self._consume(True)
            if closing is not _Tok.CLOSED_PAR:
                # Go reports the literal seen before the list here, not the offending one.
                raise _RequirementError(f"found '{lit}', expected: ')'", lit)
            return values
        if tok is _Tok.CLOSED_PAR:
            self._consume(True)
            return {""}
        raise _RequirementError(f"found '{lit}', expected: ',', ')' or identifier", lit)

    def _identifier_list(self) -> set[str]:
        values: set[str] = set()
        while True:
            tok, lit = self._consume(True)
            if tok is _Tok.IDENTIFIER:
                values.add(lit)
                tok2, lit2 = self._lookahead(True)
                if tok2 is _Tok.COMMA:
                    continue
                if tok2 is _Tok.CLOSED_PAR:
                    return values
                raise _RequirementError(f"found '{lit2}', expected: ',' or ')'", lit2)
            if tok is _Tok.COMMA:
                if not values:
                    values.add("")
                tok2, _ = self._lookahead(True)
                if tok2 is _Tok.CLOSED_PAR:
                    values.add("")
                    return values
                if tok2 is _Tok.COMMA:
                    self._consume(True)
                    values.add("")
                continue
            raise _RequirementError(f"found '{lit}', expected: ',', or identifier", lit)

    def _exact_value(self) -> set[str]:
        tok, _ = self._lookahead(True)
        if tok in (_Tok.END, _Tok.COMMA):
            return {""}
        tok, lit = self._consume(True)
        if tok is _Tok.IDENTIFIER:
            return {lit}
        raise _RequirementError(f"found '{lit}', expected: identifier", lit)


class _RequirementError(Exception):
    def __init__(self, message: str, part: str) -> None:
        super().__init__(message)
        self.message = message
        self.part = part


def _new_requirement(key: str, operator: Operator, values: list[str]) -> Requirement:
    """NewRequirement's checks; several failures are aggregated as ``[a, b]`` like Go does."""
    messages: list[str] = []
    if errors := label_key_errors(key):
        messages.append(f"key: Invalid value: {go_quote(key)}: {'; '.join(errors)}")
    if operator in (Operator.GREATER_THAN, Operator.LESS_THAN):
        for index, value in enumerate(values):
            if not _is_int64(value):
                messages.append(
                    f"values[{index}]: Invalid value: {go_quote(value)}: "
                    "for 'Gt', 'Lt' operators, the value must be an integer"
                )
    for index, value in enumerate(values):
        if errors := label_value_errors(value):
            messages.append(f"values[{index}][{key}]: Invalid value: {go_quote(value)}: {'; '.join(errors)}")
    unique = list(dict.fromkeys(messages))
    if len(unique) == 1:
        raise _RequirementError(unique[0], key)
    if unique:
        raise _RequirementError("[" + ", ".join(unique) + "]", key)
    return Requirement(key=key, operator=operator, values=tuple(values))


def _is_int64(text: str) -> bool:
    # strconv.ParseInt(s, 10, 64): optional sign, ASCII digits only, within int64.
    body = text[1:] if text[:1] in ("+", "-") else text
    if not body or not body.isascii() or not body.isdigit():
        return False
    return -(2**63) <= int(text) <= 2**63 - 1


def parse_selector(text: str) -> tuple[Requirement, ...]:
    """Parse ``text`` like ``labels.Parse``; requirements come back sorted by key (stable).

    Raises ``SelectorParseError`` with the API server's message and the offending part.
    """
    requirements = _Parser(text).parse()
    return tuple(sorted(requirements, key=lambda requirement: requirement.key))
