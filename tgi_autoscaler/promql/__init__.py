"""Pure PromQL and Kubernetes-API text handling for the external metrics adapter.

Label selectors are parsed as the API server parses them, converted to PromQL label matchers through
an explicit table, and substituted into query templates that were checked when they were loaded;
metric values are formatted as Kubernetes quantities. No I/O happens here.
"""

from __future__ import annotations

from tgi_autoscaler.k8s.names import label_key_errors, label_value_errors
from tgi_autoscaler.promql.convert import prometheus_label_for, requirements_to_matchers
from tgi_autoscaler.promql.errors import (
    NonFiniteValueError,
    PromQLError,
    SelectorError,
    SelectorParseError,
    SelectorUnsupportedError,
    TemplateError,
)
from tgi_autoscaler.promql.matchers import (
    Matcher,
    MatchOp,
    format_matchers,
    is_valid_label_name,
    parse_matchers,
    quote_string,
    regex_escape,
    sanitize_label_name,
)
from tgi_autoscaler.promql.query import BuiltQuery, QueryBuilder, exact_match_labels
from tgi_autoscaler.promql.selector import Operator, Requirement, parse_selector
from tgi_autoscaler.promql.template import PLACEHOLDER, QueryTemplate, compile_template
from tgi_autoscaler.promql.values import format_quantity, milli_value

__all__ = [
    "PLACEHOLDER",
    "BuiltQuery",
    "MatchOp",
    "Matcher",
    "NonFiniteValueError",
    "Operator",
    "PromQLError",
    "QueryBuilder",
    "QueryTemplate",
    "Requirement",
    "SelectorError",
    "SelectorParseError",
    "SelectorUnsupportedError",
    "TemplateError",
    "compile_template",
    "exact_match_labels",
    "format_matchers",
    "format_quantity",
    "is_valid_label_name",
    "label_key_errors",
    "label_value_errors",
    "milli_value",
    "parse_matchers",
    "parse_selector",
    "prometheus_label_for",
    "quote_string",
    "regex_escape",
    "requirements_to_matchers",
    "sanitize_label_name",
]
