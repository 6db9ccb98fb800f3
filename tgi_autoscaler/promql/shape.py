"""What a definition's query template allows beyond one query per request: grouping, and data age.

Two derived queries are built from a compiled template, never from request text:

- the **data age**: ``timestamp()`` of every series selector in the template, reduced with ``min``:
  the time of the oldest of the newest samples behind the value. An instant query's own result is
  stamped with the evaluation time, so only this says how old the data is (scrape interval, a target
  that stopped answering with ``honor_timestamps``, remote-write or federation lag);
- the **grouped** form, for templates that are aggregations (``sum``, ``min``, ``max``, ``avg``,
  ``count``, ``group`` without their own ``by``/``without``) combined with numbers and arithmetic,
  whose insides only use per-series functions: each aggregation gets ``by (<labels>)``, so one query
  answers every exact-match selector on those labels at once. ``sum by (ns, app) (A) + sum by (ns,
  app) (B) / 60`` has, for each (ns, app), exactly the value of ``sum(A{ns, app}) + sum(B{ns, app}) /
  60``, empty groups included. Anything else (functions around the aggregation, label-changing
  functions, vector matching modifiers, nested aggregations) is not grouped: the adapter then asks
  Prometheus once per selector, as before.

``combined`` joins a value and its age into one query: the two parts are told apart by the
``tgi_autoscaler_part`` label, so one round trip brings both.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from tgi_autoscaler.promql.template import PLACEHOLDER, QueryTemplate

__all__ = ["PART_LABEL", "PART_TIMESTAMP", "PART_VALUE", "QueryShape", "analyze_template", "combined"]

PART_LABEL: Final = "tgi_autoscaler_part"
PART_VALUE: Final = "value"
PART_TIMESTAMP: Final = "timestamp"
_SELECTOR_LABEL: Final = "tgi_autoscaler_selector"
_MATCHERS_MARK: Final = "\x00m\x00"
_BY_MARK: Final = "\x00b\x00"

_AGGREGATIONS: Final = frozenset({"sum", "min", "max", "avg", "count", "group"})
# Functions that keep each series' labels and never look across series: safe inside a grouped sum.
_PER_SERIES_FUNCTIONS: Final = frozenset(
    {
        "rate", "irate", "increase", "delta", "idelta", "deriv", "resets", "changes", "abs", "ceil",
        "floor", "round", "clamp", "clamp_min", "clamp_max", "exp", "ln", "log2", "log10", "sqrt",
        "avg_over_time", "min_over_time", "max_over_time", "sum_over_time", "count_over_time",
        "last_over_time", "present_over_time", "stddev_over_time", "stdvar_over_time",
    }
)  # fmt: skip
# Words that change how series are matched or labelled; a template using them is not grouped.
_NOT_GROUPABLE_WORDS: Final = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "and", "or", "unless", "atan2"}
)
_TOKEN_RE: Final = re.compile(
    r"""(?P<space>\s+)|(?P<comment>\#[^\n]*)|(?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)"""
    r"""|(?P<placeholder>\$matchers)|(?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)"""
    r"""|(?P<number>\.?[0-9][0-9a-zA-Z_.]*)|(?P<punct>.)""",
    re.DOTALL,
)


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    start: int
    end: int


@dataclass(frozen=True)
class QueryShape:
    """The derived queries of one template; ``grouped`` is None when the template cannot be grouped."""

    selectors: tuple[str, ...]  # each series selector, the placeholder marked
    grouped: str | None  # the template with ``by`` marks, the placeholder marked

    @property
    def groupable(self) -> bool:
        return self.grouped is not None

    def age(self, matchers: str, by: Sequence[str] = ()) -> str:
        """``min(timestamp(...))`` over the template's selectors, optionally ``by`` labels."""
        clause = f" by ({', '.join(by)}) " if by else ""
        parts = [f"timestamp({selector.replace(_MATCHERS_MARK, matchers)})" for selector in self.selectors]
        if len(parts) == 1:
            return f"min{clause}({parts[0]})"
        # timestamp() drops the metric name: a label per selector keeps equal label sets apart.
        tagged = " or ".join(
            f'label_replace({part}, "{_SELECTOR_LABEL}", "{index}", "", "")'
            for index, part in enumerate(parts)
        )
        return f"min{clause}({tagged})"

    def grouped_value(self, matchers: str, by: Sequence[str]) -> str:
        """The value for every group of ``by`` labels at once (only when ``groupable``)."""
        if self.grouped is None:
            raise ValueError("this template cannot be grouped")
        return self.grouped.replace(_BY_MARK, f" by ({', '.join(by)}) ").replace(_MATCHERS_MARK, matchers)


def combined(value: str, age: str) -> str:
    """One query returning the value (``PART_VALUE``) and its data age (``PART_TIMESTAMP``) series."""
    return (
        f'label_replace({value}, "{PART_LABEL}", "{PART_VALUE}", "", "") or '
        f'label_replace({age}, "{PART_LABEL}", "{PART_TIMESTAMP}", "", "")'
    )


def _tokens(source: str) -> list[_Token]:
    tokens: list[_Token] = []
    for match in _TOKEN_RE.finditer(source):
        kind = match.lastgroup
        assert kind is not None
        if kind != "space":
            tokens.append(_Token(kind, match.group(), match.start(), match.end()))
    return tokens


def _marked(source: str, tokens: list[_Token], start: int, end: int, inserts: dict[int, str]) -> str:
    """``source[start:end]`` with placeholders marked and ``inserts`` (offset -> text) added."""
    pieces: list[str] = []
    at = start
    for token in tokens:
        if token.start < start or token.end > end:
            continue
        if token.kind == "placeholder":
            pieces += [source[at : token.start], _MATCHERS_MARK]
            at = token.end
        elif token.end in inserts:
            pieces += [source[at : token.end], inserts[token.end]]
            at = token.end
    pieces.append(source[at:end])
    return "".join(pieces)


def _selectors(source: str, tokens: list[_Token]) -> tuple[str, ...]:
    found: list[str] = []
    i = 0
    while i < len(tokens):
        if tokens[i].kind == "punct" and tokens[i].text == "{":
            end = i
            while not (tokens[end].kind == "punct" and tokens[end].text == "}"):
                end += 1
            start = i - 1 if i > 0 and tokens[i - 1].kind == "ident" else i
            text = _marked(source, tokens, tokens[start].start, tokens[end].end, {})
            if text not in found:
                found.append(text)
            i = end + 1
        else:
            i += 1
    return tuple(found)


def _closing(tokens: list[_Token], open_at: int) -> int:
    depth = 0
    for k in range(open_at, len(tokens)):
        if tokens[k].kind == "punct" and tokens[k].text in "([{":
            depth += 1
        elif tokens[k].kind == "punct" and tokens[k].text in ")]}":
            depth -= 1
            if depth == 0:
                return k
    raise ValueError("unbalanced")  # the template compiler refused these already


def _inside_is_per_series(tokens: list[_Token]) -> bool:
    in_braces = in_range = False
    for k, token in enumerate(tokens):
        if token.kind == "comment":
            return False
        if token.kind == "punct":
            if token.text in "{}":
                in_braces = token.text == "{"
            elif token.text in "[]":
                in_range = token.text == "["
            continue
        if in_braces or in_range or token.kind != "ident":
            continue
        word = token.text.lower()
        if word in _NOT_GROUPABLE_WORDS or word in _AGGREGATIONS:
            return False
        following = tokens[k + 1].text if k + 1 < len(tokens) else ""
        if following == "(" and word not in _PER_SERIES_FUNCTIONS:
            return False
    return True


def _grouped(source: str, tokens: list[_Token]) -> str | None:
    inserts: dict[int, str] = {}
    k = 0
    while k < len(tokens):
        token = tokens[k]
        if token.kind == "number" or (token.kind == "punct" and token.text in "+-*/%^()"):
            k += 1
            continue
        if token.kind != "ident" or token.text.lower() not in _AGGREGATIONS:
            return None
        if k + 1 >= len(tokens) or tokens[k + 1].text != "(":
            return None
        end = _closing(tokens, k + 1)
        if not _inside_is_per_series(tokens[k + 2 : end]):
            return None
        if end + 1 < len(tokens) and tokens[end + 1].text.lower() in ("by", "without"):
            return None
        inserts[token.end] = _BY_MARK
        k = end + 1
    return _marked(source, tokens, 0, len(source), inserts) if inserts else None


def analyze_template(template: QueryTemplate) -> QueryShape:
    """The derived queries of a template compiled by ``compile_template``."""
    source = PLACEHOLDER.join(template.segments)
    if "\x00" in source:
        return QueryShape(selectors=(), grouped=None)
    tokens = _tokens(source)
    return QueryShape(selectors=_selectors(source, tokens), grouped=_grouped(source, tokens))
