"""Reading one external metric: from the request to an ``ExternalMetricValueList``.

``GET /apis/external.metrics.k8s.io/v1beta1/namespaces/{namespace}/{metric}?labelSelector=...``
answers with exactly one item, the definition's aggregate (the HPA sums the items it gets, so one
pre-aggregated item is the same number with one sample to fetch). ``metricLabels`` are the labels the
selector pins to one value (``=``, ``==``, single-value ``in``), keyed as in the selector. The
``timestamp`` is the time of the data behind the value: ``timestamp()`` of its samples in PromQL,
the oldest series counting (the instant query's own result carries only the evaluation time),
written as ``metav1.Time`` writes it (RFC 3339, whole seconds, UTC). Data older than
``dataAge.maxSeconds`` is a 503 naming its age. The value is a Kubernetes quantity at milli
precision (see ``tgi_autoscaler.k8s.quantity``).

An answer comes from the grouped prefetch (``prefetch``) when the selector allows it, otherwise
from one query through the single-flight cache: value and data time in one query for plain
aggregations, two concurrent queries for other templates (whose value may be a scalar).

Everything that can go wrong is an ``AdapterError`` (see ``errors``) that the app turns into a
``metav1.Status``; in particular an empty result is an error unless the definition says
``onEmpty: zero``, and NaN/Inf are errors, never numbers.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from aiohttp import web

from tgi_autoscaler.adapter.answers import Answer, from_combined, from_pair
from tgi_autoscaler.adapter.cache import CacheOutcome, SingleFlightCache
from tgi_autoscaler.adapter.definitions import DefinitionStore
from tgi_autoscaler.adapter.discovery import GROUP_VERSION, LIST_KIND, PLAIN_JSON, negotiate
from tgi_autoscaler.adapter.errors import (
    DataTooOld,
    EmptyResult,
    InvalidRequest,
    InvalidSelector,
    NonFiniteValue,
    NotAcceptable,
    UnexpectedResult,
    UnknownMetric,
)
from tgi_autoscaler.adapter.own_metrics import AdapterMetrics
from tgi_autoscaler.adapter.prefetch import Prefetcher
from tgi_autoscaler.adapter.prometheus import PrometheusQuerier
from tgi_autoscaler.adapter.status import encode_json, encoded_json_response
from tgi_autoscaler.config.metrics import AdapterSettings, MetricDefinition
from tgi_autoscaler.k8s.names import is_dns1123_label
from tgi_autoscaler.promql import BuiltQuery, NonFiniteValueError, SelectorError, format_quantity
from tgi_autoscaler.promql.shape import combined

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
# One rendering per selector being read: 10,000 HPAs are 10,000 selectors. Bounded: cleared when full.
_RENDERED_SIZE: Final = 16384


@dataclass
class RequestInfo:
    """Filled in by handlers so the access log can say what a request was about."""

    endpoint: str = "other"
    metric: str = ""
    namespace: str = ""
    cache: str = ""


class MetricReader:
    """Turns (metric, namespace, selector) into the API response, through prefetch or the cache."""

    def __init__(
        self,
        *,
        prometheus: PrometheusQuerier,
        definitions: DefinitionStore,
        cache: SingleFlightCache[str, Answer],
        metrics: AdapterMetrics,
        max_data_age_s: float = math.inf,
        prefetcher: Prefetcher | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._prometheus = prometheus
        self._definitions = definitions
        self._cache = cache
        self._metrics = metrics
        self._max_age = max_data_age_s
        self._prefetcher = prefetcher
        self._clock = clock
        self._cache_counters = {
            outcome: metrics.cache_requests.labels(result=outcome.value) for outcome in CacheOutcome
        }
        # Last rendering per request: while the same definition gets the same answer (from the
        # cache or one prefetch), the response bytes are the same too.
        self._rendered: dict[tuple[str, str, str], tuple[MetricDefinition, Answer, bytes]] = {}

    async def read(self, metric: str, namespace: str, selector: str) -> tuple[dict[str, Any], CacheOutcome]:
        """The ``ExternalMetricValueList`` for the request, and how it was served."""
        encoded, outcome = await self.read_encoded(metric, namespace, selector)
        body: dict[str, Any] = json.loads(encoded)
        return body, outcome

    async def read_encoded(self, metric: str, namespace: str, selector: str) -> tuple[bytes, CacheOutcome]:
        """As ``read``, JSON-encoded (the bytes are reused while the same answer is served)."""
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
        answer = None
        if self._prefetcher is not None:
            answer = await self._prefetcher.answer(definition, built)
        if answer is not None:
            outcome = CacheOutcome.PREFETCH
        else:
            answer, outcome = await self._cache.get(built.promql, lambda: self._query(definition, built))
        self._cache_counters[outcome].inc()
        if answer.data_time is not None:
            # Checked before the value: frozen samples may leave a rate() empty, and that is
            # data too old (503), not data missing (404).
            age = max(self._clock() - answer.data_time, 0.0)
            self._metrics.sample_age.observe(age)
            self._metrics.data_ages.record(metric, namespace, selector, age)
            if age > self._max_age:
                raise DataTooOld(metric, namespace, selector, age_s=age, bound_s=self._max_age)
        if outcome is CacheOutcome.PREFETCH:
            # A selector is read once per HPA sync and its grouped answer renewed every refresh, so
            # a remembered rendering would only cost memory.
            return self._render(definition, built, answer, namespace, selector), outcome
        key = (metric, namespace, selector)
        rendered = self._rendered.get(key)
        if rendered is None or rendered[0] is not definition or rendered[1] is not answer:
            rendered = (definition, answer, self._render(definition, built, answer, namespace, selector))
            if len(self._rendered) >= _RENDERED_SIZE:
                self._rendered.clear()
            self._rendered[key] = rendered
        return rendered[2], outcome

    async def _query(self, definition: MetricDefinition, built: BuiltQuery) -> Answer:
        shape = definition.shape
        matchers = built.matchers_text
        if shape.groupable:
            return from_combined(await self._prometheus.query(combined(built.promql, shape.age(matchers))))
        if not shape.selectors:
            return from_pair(await self._prometheus.query(built.promql), None)
        value, age = await asyncio.gather(
            self._prometheus.query(built.promql), self._prometheus.query(shape.age(matchers))
        )
        return from_pair(value, age)

    def _render(
        self,
        definition: MetricDefinition,
        built: BuiltQuery,
        answer: Answer,
        namespace: str,
        selector: str,
    ) -> bytes:
        raw = _single_value(definition, answer, namespace=namespace, selector=selector)
        try:
            value = format_quantity(raw)
        except NonFiniteValueError:
            raise NonFiniteValue(
                f"external metric {definition.name!r} evaluated to {raw} in namespace "
                f"{namespace!r}; only finite values can be reported"
            ) from None
        data_time = answer.evaluated_at if answer.data_time is None else answer.data_time
        item = {
            "metricName": definition.name,
            "metricLabels": dict(sorted(built.metric_labels.items())),
            "timestamp": metav1_time(data_time),
            "value": value,
        }
        body = {"kind": LIST_KIND, "apiVersion": GROUP_VERSION, "metadata": {}, "items": [item]}
        return encode_json(body)


def _single_value(definition: MetricDefinition, answer: Answer, *, namespace: str, selector: str) -> str:
    if answer.result_type not in ("vector", "scalar"):
        raise UnexpectedResult(
            f"the query of external metric {definition.name!r} returned a {answer.result_type}; "
            "it must return one instant sample"
        )
    if not answer.values:
        if definition.on_empty == "zero":
            return "0"
        raise EmptyResult(definition.name, namespace, selector)
    if len(answer.values) > 1:
        raise UnexpectedResult(
            f"the query of external metric {definition.name!r} returned {len(answer.values)} series; "
            "it must aggregate them into one (for example with sum(...))"
        )
    return answer.values[0]


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
