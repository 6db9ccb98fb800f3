"""The series selectors generated alert rules and dashboards put in front of every query.

Rendered objects find a service's series by two labels: ``namespace`` and the pod label
``app.kubernetes.io/instance`` as Prometheus' ``labelmap`` relabeling spells it. Values are quoted by
``promql.quote_string``, the same literal writer the adapter uses, so a value can never end the string.
"""

from __future__ import annotations

from typing import Final

from tgi_autoscaler.config.constants import LABEL_INSTANCE
from tgi_autoscaler.engines import Counted
from tgi_autoscaler.promql.matchers import quote_string, sanitize_label_name

__all__ = ["SERVICE_LABEL", "counted_rate", "label_matchers", "with_matchers"]

# The pod label app.kubernetes.io/instance as Prometheus' labelmap sanitizes it.
SERVICE_LABEL: Final = sanitize_label_name(LABEL_INSTANCE)


def label_matchers(**labels: str) -> str:
    """``{a="x", b="y"}`` with every value quoted; keys in the given order."""
    return "{" + ", ".join(f"{key}={quote_string(value)}" for key, value in labels.items()) + "}"


def with_matchers(selector: str, matchers: str) -> str:
    """``selector`` (``{a="x"}``) with the engine table's fixed ``matchers`` added inside its braces."""
    if not matchers:
        return selector
    return selector[:-1] + ", " + matchers + "}"


def counted_rate(counted: Counted, selector: str, window: str, by: str | None = None) -> str:
    """Per-second rate of ``counted`` over the selected series, summed (``by`` the given labels).

    A subtracted counter that has no series yet (SGLang creates its abort counter with the first
    abort) counts as zero, so the rate does not vanish until something fails.
    """
    aggregate = f"sum by ({by}) " if by else "sum"

    def rate(name: str, matchers: str) -> str:
        return f"{aggregate}(rate({name}{with_matchers(selector, matchers)}[{window}]))"

    total = rate(counted.name, counted.matchers)
    if counted.minus is None:
        return total
    return f"{total} - ({counted_rate(counted.minus, selector, window, by)} or 0 * {total})"
