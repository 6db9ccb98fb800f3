"""The series selectors generated alert rules and dashboards put in front of every query.

Rendered objects find a service's series by two labels: ``namespace`` and the pod label
``app.kubernetes.io/instance`` as Prometheus' ``labelmap`` relabeling spells it. Values are quoted by
``promql.quote_string``, the same literal writer the adapter uses, so a value can never end the string.
"""

from __future__ import annotations

from typing import Final

from tgi_autoscaler.config.constants import LABEL_INSTANCE
from tgi_autoscaler.promql.matchers import quote_string, sanitize_label_name

__all__ = ["SERVICE_LABEL", "label_matchers"]

# The pod label app.kubernetes.io/instance as Prometheus' labelmap sanitizes it.
SERVICE_LABEL: Final = sanitize_label_name(LABEL_INSTANCE)


def label_matchers(**labels: str) -> str:
    """``{a="x", b="y"}`` with every value quoted; keys in the given order."""
    return "{" + ", ".join(f"{key}={quote_string(value)}" for key, value in labels.items()) + "}"
