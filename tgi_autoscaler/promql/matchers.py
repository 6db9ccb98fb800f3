"""PromQL label matchers: the only text the adapter ever splices into a query.

Values are written as double-quoted PromQL string literals with every character that could end or
bend the literal escaped, and regular-expression values are built with ``regex_escape`` first, so no
label value can change the structure of a query. ``parse_matchers`` reads a matcher list back; the
property tests use it to prove that what is generated is exactly what was meant.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from tgi_autoscaler.promql.errors import PromQLError

__all__ = [
    "MatchOp",
    "Matcher",
    "format_matchers",
    "is_label_name",
    "is_valid_label_name",
    "parse_matchers",
    "quote_string",
    "regex_escape",
    "sanitize_label_name",
]

_LABEL_NAME_RE: Final = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_LABEL_NAME_INVALID_CHARS: Final = re.compile(r"[^a-zA-Z0-9_]")
_REGEX_META: Final = frozenset("\\.+*?()|[]{}^$")
_STRING_ESCAPES: Final = {
    "\\": "\\\\",
    '"': '\\"',
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\v": "\\v",
}
_UNESCAPES: Final = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    '"': '"',
    "'": "'",
}


class MatchOp(enum.StrEnum):
    EQUAL = "="
    NOT_EQUAL = "!="
    REGEX = "=~"
    NOT_REGEX = "!~"


@dataclass(frozen=True, order=True)
class Matcher:
    """``label op "value"``; ordering sorts matchers canonically (so equal selectors share a query)."""

    label: str
    op: MatchOp
    value: str

    def __str__(self) -> str:
        return f"{self.label}{self.op.value}{quote_string(self.value)}"


def is_label_name(name: str) -> bool:
    """A classic Prometheus label name (``[a-zA-Z_][a-zA-Z0-9_]*``), reserved ones included."""
    return bool(_LABEL_NAME_RE.fullmatch(name))


def is_valid_label_name(name: str) -> bool:
    """A classic Prometheus label name that is not reserved (``__``-prefixed names are internal)."""
    return is_label_name(name) and not name.startswith("__")


def sanitize_label_name(key: str) -> str:
    """The Prometheus label a Kubernetes label key becomes under ``labelmap`` relabeling.

    Prometheus' Kubernetes service discovery replaces every character outside ``[a-zA-Z0-9_]`` with
    ``_`` (``app.kubernetes.io/instance`` -> ``app_kubernetes_io_instance``).
    """
    return _LABEL_NAME_INVALID_CHARS.sub("_", key)


def quote_string(value: str) -> str:
    """``value`` as a double-quoted PromQL string literal that decodes back to exactly ``value``."""
    out: list[str] = ['"']
    for char in value:
        escaped = _STRING_ESCAPES.get(char)
        if escaped is not None:
            out.append(escaped)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\x{ord(char):02x}")
        elif 0xD800 <= ord(char) <= 0xDFFF:
            raise PromQLError(f"value contains a lone surrogate (U+{ord(char):04X})")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def regex_escape(value: str) -> str:
    """``value`` as an RE2 pattern matching exactly that literal text."""
    return "".join("\\" + char if char in _REGEX_META else char for char in value)


def format_matchers(matchers: Iterable[Matcher]) -> str:
    """Comma-separated matcher list (no braces), in the order given."""
    return ",".join(str(matcher) for matcher in matchers)


def _read_string(text: str, pos: int) -> tuple[str, int]:
    quote = text[pos]
    if quote not in ("'", '"', "`"):
        raise PromQLError(f"expected a string literal at offset {pos}")
    pos += 1
    out: list[str] = []
    while pos < len(text):
        char = text[pos]
        if char == quote:
            return "".join(out), pos + 1
        if char == "\\" and quote != "`":
            pos += 1
            if pos >= len(text):
                break
            code = text[pos]
            if code in _UNESCAPES:
                out.append(_UNESCAPES[code])
                pos += 1
            elif code == "x":
                out.append(chr(int(text[pos + 1 : pos + 3], 16)))
                pos += 3
            elif code in ("u", "U"):
                width = 4 if code == "u" else 8
                out.append(chr(int(text[pos + 1 : pos + 1 + width], 16)))
                pos += 1 + width
            elif code in "01234567":
                out.append(chr(int(text[pos : pos + 3], 8)))
                pos += 3
            else:
                raise PromQLError(f"unknown escape sequence \\{code} at offset {pos - 1}")
            continue
        out.append(char)
        pos += 1
    raise PromQLError("unterminated string literal")


def parse_matchers(text: str) -> list[Matcher]:
    """Parse a comma-separated matcher list as PromQL's lexer would (used to verify output)."""
    matchers: list[Matcher] = []
    pos, size = 0, len(text)

    def skip_blanks(at: int) -> int:
        while at < size and text[at] in " \t\r\n":
            at += 1
        return at

    pos = skip_blanks(pos)
    while pos < size:
        name_match = _LABEL_NAME_RE.match(text, pos)
        if name_match is None:
            raise PromQLError(f"expected a label name at offset {pos}")
        pos = skip_blanks(name_match.end())
        op = next((op for op in ("=~", "!~", "!=", "=") if text.startswith(op, pos)), None)
        if op is None:
            raise PromQLError(f"expected a match operator at offset {pos}")
        pos = skip_blanks(pos + len(op))
        value, pos = _read_string(text, pos)
        matchers.append(Matcher(name_match.group(), MatchOp(op), value))
        pos = skip_blanks(pos)
        if pos < size:
            if text[pos] != ",":
                raise PromQLError(f"expected ',' at offset {pos}")
            pos = skip_blanks(pos + 1)
    return matchers
