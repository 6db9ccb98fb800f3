"""The adapter's exception tree: every failure a metric read can meet, and the answer it becomes.

::

    AdapterError                     500 InternalError   (a bug: nothing more specific applies)
    ├── InvalidRequest               400 BadRequest      (malformed namespace or query parameter)
    │   └── InvalidSelector          400 BadRequest      (labelSelector; message names the part)
    ├── NotAcceptable                406 NotAcceptable   (no media type the client accepts)
    ├── UnknownMetric                404 NotFound        (no definition with that name)
    ├── EmptyResult                  404 NotFound        (no series matched; onEmpty: error)
    ├── MetricUnavailable            503 ServiceUnavailable
    │   ├── PrometheusUnavailable        (cannot connect, timeout, 5xx, refused credentials)
    │   ├── PrometheusQueryError         (Prometheus answered with an error for the query)
    │   └── NonFiniteValue               (NaN or +/-Inf: the value is not a number right now)
    └── UnexpectedResult             500 InternalError   (the definition's query does not return
                                                          exactly one sample: fix the definition)

The HPA treats every error the same way: the metric is unavailable, the current replica count is
kept and nothing is scaled down on its account. So an outage is never turned into a value, least of
all zero. An empty result is a 404 rather than a 503 because the request was well formed and
Prometheus answered: no series matches (a selector typo, pods not scraped yet). That keeps 503 -- and
an alert on the adapter's 5xx rate -- meaning "the metrics pipeline is down".

Prometheus transport failures are mapped into this tree in one place,
``tgi_autoscaler.adapter.prometheus``; ``tgi_autoscaler.adapter.status`` turns the tree into
``metav1.Status`` responses.
"""

from __future__ import annotations

__all__ = [
    "AdapterError",
    "DataTooOld",
    "EmptyResult",
    "InvalidRequest",
    "InvalidSelector",
    "MetricUnavailable",
    "NonFiniteValue",
    "NotAcceptable",
    "PrometheusQueryError",
    "PrometheusUnavailable",
    "UnexpectedResult",
    "UnknownMetric",
]


class AdapterError(Exception):
    """Base of the tree; ``message`` is safe to show to the API client."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(AdapterError):
    """The request itself is malformed."""


class InvalidSelector(InvalidRequest):
    """The ``labelSelector`` cannot be parsed or has no exact PromQL form; ``part`` is the culprit."""

    def __init__(self, message: str, *, part: str) -> None:
        super().__init__(message)
        self.part = part


class NotAcceptable(AdapterError):
    """The Accept header allows no representation this endpoint can produce."""


class UnknownMetric(AdapterError):
    """No metric definition with this name is loaded."""

    def __init__(self, metric: str) -> None:
        super().__init__(f"no external metric named {metric!r} is defined")
        self.metric = metric


class EmptyResult(AdapterError):
    """The query matched no series and the definition says an empty result is an error."""

    def __init__(self, metric: str, namespace: str, selector: str) -> None:
        shown = selector or "<none>"
        super().__init__(
            f"no series for external metric {metric!r} in namespace {namespace!r} matched "
            f"labelSelector {shown!r}; no value is reported rather than a made-up zero"
        )
        self.metric = metric


class MetricUnavailable(AdapterError):
    """The metric cannot be read right now; trying again later may succeed."""


class PrometheusUnavailable(MetricUnavailable):
    """Prometheus could not be reached, timed out, failed, or refused the credentials."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class PrometheusQueryError(MetricUnavailable):
    """Prometheus rejected or failed to evaluate the query (``errorType`` in ``reason``)."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class DataTooOld(MetricUnavailable):
    """The newest samples behind the value are older than the configured bound (``dataAge``)."""

    def __init__(self, metric: str, namespace: str, selector: str, *, age_s: float, bound_s: float) -> None:
        shown = selector or "<none>"
        super().__init__(
            f"the data behind external metric {metric!r} in namespace {namespace!r} for labelSelector "
            f"{shown!r} is {age_s:.1f}s old, more than the {bound_s:g}s allowed (dataAge.maxSeconds); "
            "check the scrape of its pods (interval, target health) and any remote-write or federation lag"
        )
        self.metric = metric
        self.age_s = age_s


class NonFiniteValue(MetricUnavailable):
    """The query evaluated to NaN or an infinity (e.g. a ratio with a zero denominator)."""


class UnexpectedResult(AdapterError):
    """The definition's query returned a shape other than one sample (several series, a matrix)."""
