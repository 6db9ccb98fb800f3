"""From an HTTP request's namespace and ``labelSelector`` to the final PromQL of one definition.

This is the whole untrusted-input path of the adapter, kept pure so it can be tested exhaustively:
parse the selector (Kubernetes rules), convert it through the explicit table in ``convert``, prepend
the namespace matcher, and substitute the matcher list into the compiled template.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from tgi_autoscaler.promql.convert import requirements_to_matchers
from tgi_autoscaler.promql.matchers import Matcher, MatchOp, format_matchers
from tgi_autoscaler.promql.selector import Operator, Requirement, parse_selector
from tgi_autoscaler.promql.template import QueryTemplate

__all__ = ["BuiltQuery", "QueryBuilder", "exact_match_labels"]

# The HPA asks for the same (namespace, selector) every sync period; remembering the result of the
# parse-convert-render pipeline makes a read cheap; one entry per selector being read (10,000 HPAs
# are 10,000 selectors). Bounded: cleared when full.
_MEMO_SIZE: Final = 16384


@dataclass(frozen=True)
class BuiltQuery:
    """The PromQL to run, the matchers inside it, and the labels to report on the result."""

    promql: str
    matchers: tuple[Matcher, ...]
    metric_labels: Mapping[str, str]
    matchers_text: str = ""  # the matcher list as substituted for the placeholder
    # (label names, values) when every matcher pins a distinct label to a non-empty value: the
    # selectors a grouped query by those labels answers exactly. Sorted by label name.
    exact: tuple[tuple[str, ...], tuple[str, ...]] | None = None


def exact_match_labels(requirements: tuple[Requirement, ...]) -> dict[str, str]:
    """Keys the selector pins to one value (``=``, ``==``, single-value ``in``), as ``RequiresExactMatch``.

    A key pinned twice to different values matches nothing; it is reported with the first value.
    """
    labels: dict[str, str] = {}
    for requirement in requirements:
        exact = requirement.operator in (Operator.EQUALS, Operator.DOUBLE_EQUALS) or (
            requirement.operator is Operator.IN and len(requirement.values) == 1
        )
        if exact:
            labels.setdefault(requirement.key, requirement.values[0])
    return labels


@dataclass(frozen=True)
class QueryBuilder:
    """Everything a definition contributes to turning a request into PromQL."""

    template: QueryTemplate
    namespace_label: str
    label_map: Mapping[str, str]
    _memo: dict[tuple[str, str], BuiltQuery] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )

    def build(self, *, namespace: str, selector: str) -> BuiltQuery:
        """Raises ``SelectorParseError`` / ``SelectorUnsupportedError`` naming the bad part."""
        key = (namespace, selector)
        built = self._memo.get(key)
        if built is None:
            built = self._build(namespace, selector)
            if len(self._memo) >= _MEMO_SIZE:
                self._memo.clear()
            self._memo[key] = built
        return built

    def _build(self, namespace: str, selector: str) -> BuiltQuery:
        requirements = parse_selector(selector)
        matchers = requirements_to_matchers(
            requirements,
            namespace=namespace,
            namespace_label=self.namespace_label,
            label_map=self.label_map,
        )
        text = format_matchers(matchers)
        return BuiltQuery(
            promql=self.template.render(text),
            matchers=tuple(matchers),
            metric_labels=exact_match_labels(requirements),
            matchers_text=text,
            exact=_exact(matchers),
        )


def _exact(matchers: list[Matcher]) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    labels: list[str] = []
    values: list[str] = []
    for matcher in sorted(matchers):
        if matcher.op is not MatchOp.EQUAL or not matcher.value or (labels and labels[-1] == matcher.label):
            return None
        labels.append(matcher.label)
        values.append(matcher.value)
    return tuple(labels), tuple(values)
