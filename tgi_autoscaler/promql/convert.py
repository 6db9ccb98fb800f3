"""The conversion table from Kubernetes label-selector requirements to PromQL label matchers.

Every row is exact under Prometheus' data model, where a label with an empty value and an absent
label are the same thing (Prometheus drops empty labels at ingestion, so a pod label ``k: ""`` never
reaches a series). Anything without an exact row is refused with the requirement named, rather than
approximated:

=====================  ===============================  ====================================
Kubernetes              PromQL                            note
=====================  ===============================  ====================================
``k=v``, ``k==v``       ``l="v"``
``k!=v``                ``l!="v"``                        also matches series without ``l``,
                                                          as Kubernetes matches pods without k
``k in (v)``            ``l="v"``
``k in (a,b)``          ``l=~"^(?:a|b)$"``                values regex-escaped, sorted
``k notin (v)``         ``l!="v"``
``k notin (a,b)``       ``l!~"^(?:a|b)$"``
``k``                   ``l!=""``                         exists
``!k``                  ``l=""``                          does not exist
``k>n``, ``k<n``        refused                           no exact matcher for integer order
key -> ``l``            ``labelMap[k]`` or ``k`` with     a name that is not a valid, public
                        ``[^a-zA-Z0-9_]`` -> ``_``        Prometheus label name is refused
namespace label         refused                           the adapter injects it from the path
=====================  ===============================  ====================================

The request's namespace is always the first matcher, so no selector can read another namespace.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from tgi_autoscaler.promql.errors import SelectorUnsupportedError
from tgi_autoscaler.promql.matchers import (
    Matcher,
    MatchOp,
    is_valid_label_name,
    regex_escape,
    sanitize_label_name,
)
from tgi_autoscaler.promql.selector import Operator, Requirement

__all__ = ["prometheus_label_for", "requirements_to_matchers"]


def prometheus_label_for(key: str, label_map: Mapping[str, str]) -> str:
    """The Prometheus label a selector key refers to: an explicit override, else sanitized."""
    return label_map.get(key) or sanitize_label_name(key)


def _alternation(values: Iterable[str]) -> str:
    return "^(?:" + "|".join(regex_escape(value) for value in values) + ")$"


def _matcher_for(requirement: Requirement, label: str) -> Matcher:
    op, values = requirement.operator, requirement.values
    if op in (Operator.EQUALS, Operator.DOUBLE_EQUALS):
        return Matcher(label, MatchOp.EQUAL, values[0])
    if op is Operator.NOT_EQUALS:
        return Matcher(label, MatchOp.NOT_EQUAL, values[0])
    if op is Operator.IN:
        if len(values) == 1:
            return Matcher(label, MatchOp.EQUAL, values[0])
        return Matcher(label, MatchOp.REGEX, _alternation(values))
    if op is Operator.NOT_IN:
        if len(values) == 1:
            return Matcher(label, MatchOp.NOT_EQUAL, values[0])
        return Matcher(label, MatchOp.NOT_REGEX, _alternation(values))
    if op is Operator.EXISTS:
        return Matcher(label, MatchOp.NOT_EQUAL, "")
    if op is Operator.DOES_NOT_EXIST:
        return Matcher(label, MatchOp.EQUAL, "")
    raise SelectorUnsupportedError(
        f"requirement {str(requirement)!r}: operator {op.value!r} (integer comparison) has no exact "
        "PromQL label matcher; use =, ==, !=, in, notin, exists or !",
        part=str(requirement),
    )


def requirements_to_matchers(
    requirements: Iterable[Requirement],
    *,
    namespace: str,
    namespace_label: str,
    label_map: Mapping[str, str],
) -> list[Matcher]:
    """Matchers for ``requirements`` in ``namespace``: the namespace first, the rest sorted, unique."""
    converted: set[Matcher] = set()
    for requirement in requirements:
        label = prometheus_label_for(requirement.key, label_map)
        if not is_valid_label_name(label):
            raise SelectorUnsupportedError(
                f"requirement {str(requirement)!r}: key {requirement.key!r} maps to Prometheus label "
                f"{label!r}, which is not a valid, non-reserved label name ([a-zA-Z_][a-zA-Z0-9_]*, "
                "not starting with '__'); map it explicitly with labelMap",
                part=str(requirement),
            )
        if label == namespace_label:
            raise SelectorUnsupportedError(
                f"requirement {str(requirement)!r}: key {requirement.key!r} selects on the namespace "
                f"label {namespace_label!r}, which the adapter sets from the request path",
                part=str(requirement),
            )
        converted.add(_matcher_for(requirement, label))
    return [Matcher(namespace_label, MatchOp.EQUAL, namespace), *sorted(converted)]
