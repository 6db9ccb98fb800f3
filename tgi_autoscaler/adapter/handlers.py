"""Reading one external metric: from the request to an ``ExternalMetricValueList``.

``GET /apis/external.metrics.k8s.io/v1beta1/namespaces/{namespace}/{metric}?labelSelector=...``
answers with exactly one item, the definition's aggregate (the HPA sums the items it gets, so one
pre-aggregated item is the same number with one sample to fetch). ``metricLabels`` are the labels the
selector pins to one value (``=``, ``==``, single-value ``in``), keyed as in the selector. The
``timestamp`` is the time of the Prometheus sample (the query's evaluation time), written as
``metav1.Time`` writes it (RFC 3339, whole seconds, UTC). The value is a Kubernetes quantity at milli
precision (see ``tgi_autoscaler.k8s.quantity``).

Everything that can go wrong is an ``AdapterError`` (see ``errors``) that the app turns into a
``metav1.Status``; in particular an empty result is an error unless the definition says
``onEmpty: zero``, and NaN/Inf are errors, never numbers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from aiohttp import web

from tgi_autoscaler.adapter.cache import CacheOutcome, SingleFlightCache
from tgi_autoscaler.adapter.definitions import DefinitionStore
from tgi_autoscaler.adapter.discovery import GROUP_VERSION, LIST_KIND, PLAIN_JSON, negotiate
from tgi_autoscaler.adapter.errors import (
    EmptyResult,
    InvalidRequest,
    InvalidSelector,
    NonFiniteValue,
    NotAcceptable,
    UnexpectedResult,
    UnknownMetric,
)
from tgi_autoscaler.adapter.own_metrics import AdapterMetrics
from tgi_autoscaler.adapter.prometheus import InstantResult, PrometheusQuerier, Sample
from tgi_autoscaler.adapter.status import encode_json, encoded_json_response
from tgi_autoscaler.config.metrics import AdapterSettings, MetricDefinition
from tgi_autoscaler.k8s.names import is_dns1123_label
from tgi_autoscaler.promql import BuiltQuery, NonFiniteValueError, SelectorError, format_quantity

__all__ = [
    "DEFINITIONS_KEY",
    "METRICS_KEY",
    "METRIC_PATH",
    "PROMETHEUS_KEY",
    "READER_KEY",
    "REQUEST_INFO_KEY",
    "SETTINGS_KEY",
    "MetricReader",
    "RequestInfo",
    "get_external_metric",
    "metav1_time",
]

METRIC_PATH: Final = f"/apis/{GROUP_VERSION}/namespaces/{{namespace}}/{{metric}}"
_RENDERED_SIZE: Final = 1024


@dataclass
class RequestInfo:
    """Filled in by handlers so the access log can say what a request was about."""

    endpoint: str = "other"
    metric: str = ""
    namespace: str = ""
    cache: str = ""


class MetricReader:
    """Turns (metric, namespace, selector) into the API response, through the shared cache."""

    def __init__(
        self,
        *,
        prometheus: PrometheusQuerier,
        definitions: DefinitionStore,
        cache: SingleFlightCache[str, InstantResult],
        metrics: AdapterMetrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._prometheus = prometheus
        self._definitions = definitions
        self._cache = cache
        self._metrics = metrics
        self._clock = clock
        self._cache_counters = {
            outcome: metrics.cache_requests.labels(result=outcome.value) for outcome in CacheOutcome
        }
        # Last rendering per request: while the same definition gets the same Prometheus answer
        # from the cache, the response bytes are the same too.
        self._rendered: dict[
            tuple[str, str, str], tuple[MetricDefinition, InstantResult, dict[str, Any], bytes, float]
        ] = {}

    async def read(self, metric: str, namespace: str, selector: str) -> tuple[dict[str, Any], CacheOutcome]:
        """The ``ExternalMetricValueList`` for the request, and how the cache served it."""
        body, _, outcome = await self._read(metric, namespace, selector)
        return body, outcome

    async def read_encoded(self, metric: str, namespace: str, selector: str) -> tuple[bytes, CacheOutcome]:
        """As ``read``, already JSON-encoded (reused while the same Prometheus answer is served)."""
        _, encoded, outcome = await self._read(metric, namespace, selector)
        return encoded, outcome

    async def _read(
        self, metric: str, namespace: str, selector: str
    ) -> tuple[dict[str, Any], bytes, CacheOutcome]:
        definition = self._definitions.get(metric)
        if definition is None:
            raise UnknownMetric(metric)
        if not is_dns1123_label(namespace):
            raise InvalidRequest(
                f"namespace {namespace!r} is not a valid namespace name: a lowercase RFC 1123 label "
                "must consist of lower case alphanumeric characters or '-', start and end with an "
                "alphanumeric character, and be at most 63 characters"
            )
        try:
            built = definition.builder.build(namespace=namespace, selector=selector)
        except SelectorError as exc:
            raise InvalidSelector(str(exc), part=exc.part) from None
        result, outcome = await self._cache.get(built.promql, lambda: self._prometheus.query(built.promql))
        self._cache_counters[outcome].inc()
        key = (metric, namespace, selector)
        rendered = self._rendered.get(key)
        if rendered is None or rendered[0] is not definition or rendered[1] is not result:
            body, sample_time = self._render(definition, built, result, namespace, selector)
            rendered = (definition, result, body, encode_json(body), sample_time)
            if len(self._rendered) >= _RENDERED_SIZE:
                self._rendered.clear()
            self._rendered[key] = rendered
        self._metrics.sample_age.observe(max(self._clock() - rendered[4], 0.0))
        return rendered[2], rendered[3], outcome

    def _render(
        self,
        definition: MetricDefinition,
        built: BuiltQuery,
        result: InstantResult,
        namespace: str,
        selector: str,
    ) -> tuple[dict[str, Any], float]:
        sample = _single_sample(definition, result, namespace=namespace, selector=selector)
        try:
            value = format_quantity(sample.value)
        except NonFiniteValueError:
            raise NonFiniteValue(
                f"external metric {definition.name!r} evaluated to {sample.value} in namespace "
                f"{namespace!r}; only finite values can be reported"
            ) from None
        item = {
            "metricName": definition.name,
            "metricLabels": dict(sorted(built.metric_labels.items())),
            "timestamp": metav1_time(sample.timestamp),
            "value": value,
        }
        return {
            "kind": LIST_KIND,
            "apiVersion": GROUP_VERSION,
            "metadata": {},
            "items": [item],
        }, sample.timestamp


def _single_sample(
    definition: MetricDefinition, result: InstantResult, *, namespace: str, selector: str
) -> Sample:
    if result.result_type == "scalar":
        return result.samples[0]
    if result.result_type != "vector":
        raise UnexpectedResult(
            f"the query of external metric {definition.name!r} returned a {result.result_type}; "
            "it must return one instant sample"
        )
    if not result.samples:
        if definition.on_empty == "zero":
            return Sample(labels={}, timestamp=result.evaluated_at, value="0")
        raise EmptyResult(definition.name, namespace, selector)
    if len(result.samples) > 1:
        raise UnexpectedResult(
            f"the query of external metric {definition.name!r} returned {len(result.samples)} series; "
            "it must aggregate them into one (for example with sum(...))"
        )
    return result.samples[0]


def metav1_time(timestamp: float) -> str:
    """``metav1.Time`` JSON: RFC 3339 in UTC with whole seconds (fractions truncated)."""
    return datetime.fromtimestamp(int(timestamp // 1), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


SETTINGS_KEY: Final = web.AppKey("tgi_autoscaler.settings", AdapterSettings)
DEFINITIONS_KEY: Final = web.AppKey("tgi_autoscaler.definitions", DefinitionStore)
PROMETHEUS_KEY: Final = web.AppKey("tgi_autoscaler.prometheus", PrometheusQuerier)
METRICS_KEY: Final = web.AppKey("tgi_autoscaler.metrics", AdapterMetrics)
READER_KEY: Final = web.AppKey("tgi_autoscaler.reader", MetricReader)
REQUEST_INFO_KEY: Final = web.RequestKey("tgi_autoscaler.request_info", RequestInfo)


async def get_external_metric(request: web.Request) -> web.Response:
    """The external metrics API's one read operation."""
    metric = request.match_info["metric"]
    namespace = request.match_info["namespace"]
    info = request.get(REQUEST_INFO_KEY)
    if info is not None:
        info.endpoint, info.metric, info.namespace = "external_metric", metric, namespace
    if negotiate(request.headers.get("Accept"), (PLAIN_JSON,)) is None:
        raise NotAcceptable(PLAIN_JSON.mime)
    # Like Convert_Slice_string_To_string: the first labelSelector parameter counts.
    selector = request.query.getone("labelSelector", "")
    body, outcome = await request.app[READER_KEY].read_encoded(metric, namespace, selector)
    if info is not None:
        info.cache = outcome.value
    return encoded_json_response(body)
