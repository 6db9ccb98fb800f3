"""Query templates: PromQL with a ``$matchers`` placeholder, checked once when a definition loads.

A definition's query is written like ``sum(tgi_queue_size{$matchers})``. The compiler scans the
template with PromQL's lexical rules (strings, comments, brackets) and refuses, naming the offset:

- unbalanced brackets, unterminated strings, a ``$`` that is not the placeholder;
- a placeholder outside a ``{...}`` selector or not separated from other matchers by commas;
- any series selector without the placeholder (``{...}`` without it, or a bare metric name), because
  such a selector would read every namespace;
- a selector that already constrains the namespace label.

Rendering only ever substitutes the placeholder, so the text outside it is byte-for-byte the template.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from tgi_autoscaler.promql.errors import TemplateError

__all__ = ["PLACEHOLDER", "QueryTemplate", "compile_template"]

PLACEHOLDER: Final = "$matchers"

# Keywords and aggregation operators (PromQL matches them case-insensitively); none is a selector.
_KEYWORDS: Final = frozenset(
    {
        "and", "or", "unless", "atan2", "offset", "bool", "by", "without", "on", "ignoring",
        "group_left", "group_right", "inf", "nan", "start", "end", "sum", "avg", "count", "min",
        "max", "group", "stddev", "stdvar", "topk", "bottomk", "count_values", "quantile", "limitk",
        "limit_ratio",
    }
)  # fmt: skip
_LABEL_LIST_KEYWORDS: Final = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
_IDENT_RE: Final = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_RE: Final = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_NUMBER_RE: Final = re.compile(r"\.?[0-9][0-9a-zA-Z_.]*(?:(?<=[eE])[+-][0-9]+[0-9a-zA-Z_.]*)?")


@dataclass(frozen=True)
class QueryTemplate:
    """A compiled template: the literal text around each placeholder occurrence."""

    source: str
    segments: tuple[str, ...]

    def render(self, matchers: str) -> str:
        """The query with every placeholder replaced by ``matchers`` (a non-empty matcher list)."""
        return matchers.join(self.segments)


@dataclass
class _Open:
    char: str
    offset: int
    label_list: bool = False
    has_placeholder: bool = False


class _Scanner:
    def __init__(self, text: str, namespace_label: str) -> None:
        self.text = text
        self.namespace_label = namespace_label
        self.stack: list[_Open] = []
        self.placeholders: list[int] = []
        self.pending_label_list = False
        self.last = ""  # last character of the previous token (blanks and comments skipped)

    def _next_significant(self, pos: int) -> tuple[str, int]:
        text = self.text
        while pos < len(text):
            char = text[pos]
            if char in " \t\r\n":
                pos += 1
            elif char == "#":
                newline = text.find("\n", pos)
                pos = len(text) if newline < 0 else newline + 1
            else:
                return char, pos
        return "", pos

    def _skip_string(self, pos: int) -> int:
        quote, text, start = self.text[pos], self.text, pos
        pos += 1
        while pos < len(text):
            if text[pos] == "\\" and quote != "`":
                pos += 2
                continue
            if text[pos] == quote:
                return pos + 1
            if text[pos] == "\n" and quote != "`":
                break
            pos += 1
        raise TemplateError("unterminated string literal", offset=start)

    def _in(self, char: str) -> bool:
        return bool(self.stack) and self.stack[-1].char == char

    def scan(self) -> None:
        text, pos = self.text, 0
        while pos < len(text):
            char = text[pos]
            if char in " \t\r\n":
                pos += 1
            elif char == "#":
                newline = text.find("\n", pos)
                pos = len(text) if newline < 0 else newline + 1
            else:
                pos = self._token(pos)
                self.last = text[pos - 1]
        if self.stack:
            top = self.stack[-1]
            raise TemplateError(f"{top.char!r} is never closed", offset=top.offset)
        if not self.placeholders:
            raise TemplateError(
                f"the template never uses {PLACEHOLDER}; without it the query is not restricted to "
                "the request's namespace and selector"
            )

    def _token(self, pos: int) -> int:
        """Consume one token at ``pos`` (not a blank or comment); return the position after it."""
        text, char = self.text, self.text[pos]
        if char in "\"'`":
            return self._skip_string(pos)
        if char == "$":
            return self._placeholder(pos)
        if char in "([{":
            if char == "{" and (self._in("{") or self._in("[")):
                raise TemplateError("'{' inside a selector or range", offset=pos)
            self.stack.append(_Open(char, pos, label_list=char == "(" and self.pending_label_list))
            self.pending_label_list = False
            return pos + 1
        if char in ")]}":
            return self._close(pos)
        if not char.isdigit() and _IDENT_RE.match(text, pos):
            return self._identifier(pos)
        if (number := _NUMBER_RE.match(text, pos)) is not None:
            return number.end()
        return pos + 1

    def _placeholder(self, pos: int) -> int:
        end = pos + len(PLACEHOLDER)
        if not self.text.startswith(PLACEHOLDER, pos) or (
            end < len(self.text) and (self.text[end].isalnum() or self.text[end] == "_")
        ):
            word = re.match(r"\$(\{[a-zA-Z0-9_]*\}|[a-zA-Z0-9_]*)", self.text[pos:])
            shown = word.group() if word else "$"
            raise TemplateError(
                f"unknown placeholder {shown!r}; the only placeholder is {PLACEHOLDER}", offset=pos
            )
        if not self._in("{"):
            raise TemplateError(
                f"{PLACEHOLDER} must stand inside a series selector's braces, as in metric{{{PLACEHOLDER}}}",
                offset=pos,
            )
        if self.last not in ("{", ","):
            raise TemplateError(f"{PLACEHOLDER} must follow '{{' or ','", offset=pos)
        if self._next_significant(end)[0] not in ("}", ","):
            raise TemplateError(f"{PLACEHOLDER} must be followed by '}}' or ','", offset=pos)
        self.stack[-1].has_placeholder = True
        self.placeholders.append(pos)
        return end

    def _close(self, pos: int) -> int:
        char = self.text[pos]
        opening = {")": "(", "]": "[", "}": "{"}[char]
        if not self._in(opening):
            raise TemplateError(f"unbalanced {char!r}", offset=pos)
        closed = self.stack.pop()
        if char == "}" and not closed.has_placeholder:
            raise TemplateError(
                f"series selector has no {PLACEHOLDER}; it would read every namespace",
                offset=closed.offset,
            )
        return pos + 1

    def _identifier(self, pos: int) -> int:
        if self._in("{"):
            match = _LABEL_RE.match(self.text, pos)
            assert match is not None
            if match.group() == self.namespace_label:
                raise TemplateError(
                    f"the selector constrains the namespace label {self.namespace_label!r} itself; "
                    "the adapter sets it from the request",
                    offset=pos,
                )
            return match.end()
        match = _IDENT_RE.match(self.text, pos)
        assert match is not None
        word, end = match.group(), match.end()
        if self._in("[") or (self.stack and self.stack[-1].label_list):
            return end
        lowered = word.lower()
        following, _ = self._next_significant(end)
        if lowered in _KEYWORDS:
            self.pending_label_list = lowered in _LABEL_LIST_KEYWORDS and following == "("
            return end
        if following in ("(", "{"):
            return end  # a function call, or a selector whose braces are checked on '}'
        raise TemplateError(
            f"series selector {word!r} has no {{{PLACEHOLDER}}}; it would read every namespace",
            offset=pos,
        )


def compile_template(text: str, *, namespace_label: str = "namespace") -> QueryTemplate:
    """Check ``text`` and split it around its placeholders; raises ``TemplateError``."""
    if not text.strip():
        raise TemplateError("the query template is empty")
    scanner = _Scanner(text, namespace_label)
    scanner.scan()
    segments: list[str] = []
    start = 0
    for offset in scanner.placeholders:
        segments.append(text[start:offset])
        start = offset + len(PLACEHOLDER)
    segments.append(text[start:])
    return QueryTemplate(source=text, segments=tuple(segments))
