"""Reading a metric: one aggregate item, Kubernetes quantities, and errors instead of made-up values."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry

from tgi_autoscaler.adapter import status
from tgi_autoscaler.adapter.cache import CacheOutcome, SingleFlightCache
from tgi_autoscaler.adapter.definitions import DefinitionStore
from tgi_autoscaler.adapter.errors import (
    DataTooOld,
    EmptyResult,
    InvalidRequest,
    InvalidSelector,
    NonFiniteValue,
    PrometheusUnavailable,
    UnexpectedResult,
    UnknownMetric,
)
from tgi_autoscaler.adapter.handlers import MetricReader, metav1_time
from tgi_autoscaler.adapter.own_metrics import AdapterMetrics
from tgi_autoscaler.adapter.prometheus import InstantResult, Sample
from tgi_autoscaler.config.metrics import MetricsConfig, parse_metrics_yaml
from tgi_autoscaler.promql.shape import PART_LABEL, PART_TIMESTAMP, PART_VALUE

pytestmark = pytest.mark.unit

T = 1_700_000_000.75


DATA_T = T - 1.5  # the scrape behind the value, before the evaluation


def vector(*values: str, data_time: float | None = DATA_T) -> InstantResult:
    """As Prometheus answers the combined value-and-timestamp query (the timestamp when any data)."""
    samples = [Sample(labels={PART_LABEL: PART_VALUE}, timestamp=T, value=v) for v in values]
    if values and data_time is not None:
        samples.append(Sample(labels={PART_LABEL: PART_TIMESTAMP}, timestamp=T, value=repr(data_time)))
    return InstantResult(result_type="vector", samples=tuple(samples), evaluated_at=T)


class Scripted:
    def __init__(self, result: InstantResult | Exception) -> None:
        self.result = result
        self.queries: list[str] = []
        self.gate: asyncio.Event | None = None

    async def query(self, promql: str) -> InstantResult:
        self.queries.append(promql)
        if self.gate is not None:
            await self.gate.wait()
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


def reader(
    prometheus: Scripted, config: MetricsConfig | None = None, ttl: float = 0.5, max_age: float = 45.0
) -> tuple[MetricReader, AdapterMetrics]:
    metrics = AdapterMetrics(CollectorRegistry())
    return (
        MetricReader(
            prometheus=prometheus,
            definitions=DefinitionStore(config or MetricsConfig(), metrics=metrics),
            cache=SingleFlightCache(ttl),
            metrics=metrics,
            max_data_age_s=max_age,
            clock=lambda: T + 2,
        ),
        metrics,
    )


async def test_one_aggregate_item_with_the_selectors_exact_labels() -> None:
    prometheus = Scripted(vector("2.5"))
    metric_reader, _ = reader(prometheus)
    body, outcome = await metric_reader.read(
        "tgi_queue_size", "team-a", "app.kubernetes.io/instance=llama,tier in (gpu),zone notin (x,y)"
    )
    assert outcome is CacheOutcome.MISS
    assert body == {
        "kind": "ExternalMetricValueList",
        "apiVersion": "external.metrics.k8s.io/v1beta1",
        "metadata": {},
        "items": [
            {
                "metricName": "tgi_queue_size",
                "metricLabels": {"app.kubernetes.io/instance": "llama", "tier": "gpu"},
                "timestamp": "2023-11-14T22:13:19Z",  # the data's, 1.5 s before evaluation
                "value": "2500m",
            }
        ],
    }
    matchers = 'namespace="team-a",app_kubernetes_io_instance="llama",tier="gpu",zone!~"^(?:x|y)$"'
    assert prometheus.queries == [
        f'label_replace(sum(tgi_queue_size{{{matchers}}}), "tgi_autoscaler_part", "value", "", "") or '
        f'label_replace(min(timestamp(tgi_queue_size{{{matchers}}})), "tgi_autoscaler_part", '
        '"timestamp", "", "")'
    ]


async def test_empty_result_is_an_error_not_zero() -> None:
    metric_reader, _ = reader(Scripted(vector()))
    with pytest.raises(EmptyResult, match="no value is reported rather than a made-up zero"):
        await metric_reader.read("tgi_queue_size", "ns", "app.kubernetes.io/instance=gone")


async def test_empty_result_is_zero_only_where_the_definition_says_so() -> None:
    config = parse_metrics_yaml(
        "metrics:\n  - {name: idle_ok, onEmpty: zero, query: 'sum(x{$matchers})'}\n", source="t"
    )
    metric_reader, _ = reader(Scripted(vector()), config)
    body, _ = await metric_reader.read("idle_ok", "ns", "")
    assert body["items"][0]["value"] == "0"
    assert body["items"][0]["timestamp"] == metav1_time(T)  # no data: the evaluation time


@pytest.mark.parametrize("value", ["NaN", "+Inf", "-Inf"])
async def test_non_finite_values_are_unavailable_not_numbers(value: str) -> None:
    metric_reader, _ = reader(Scripted(vector(value)))
    with pytest.raises(NonFiniteValue, match=value.replace("+", r"\+")):
        await metric_reader.read("tgi_queue_size", "ns", "")


async def test_several_series_mean_the_definition_must_aggregate() -> None:
    metric_reader, _ = reader(Scripted(vector("1", "2")))
    with pytest.raises(UnexpectedResult, match="returned 2 series"):
        await metric_reader.read("tgi_queue_size", "ns", "")


async def test_unknown_metric_and_bad_input_never_reach_prometheus() -> None:
    prometheus = Scripted(vector("1"))
    metric_reader, _ = reader(prometheus)
    with pytest.raises(UnknownMetric):
        await metric_reader.read("no_such_metric", "ns", "")
    with pytest.raises(InvalidRequest, match="not a valid namespace name"):
        await metric_reader.read("tgi_queue_size", "Bad_NS", "")
    with pytest.raises(InvalidSelector) as caught:
        await metric_reader.read("tgi_queue_size", "ns", "a in (x")
    assert str(caught.value) == "unable to parse requirement: found '', expected: ',' or ')'"
    with pytest.raises(InvalidSelector, match="namespace label"):
        await metric_reader.read("tgi_queue_size", "ns", "namespace=kube-system")
    assert prometheus.queries == []


async def test_prometheus_failures_propagate_and_are_not_cached() -> None:
    prometheus = Scripted(PrometheusUnavailable("down", reason="connect"))
    metric_reader, _ = reader(prometheus)
    for _ in range(2):
        with pytest.raises(PrometheusUnavailable):
            await metric_reader.read("tgi_queue_size", "ns", "")
    assert len(prometheus.queries) == 2


async def test_concurrent_identical_reads_share_one_query() -> None:
    prometheus = Scripted(vector("7"))
    prometheus.gate = asyncio.Event()
    metric_reader, metrics = reader(prometheus)
    reads = [
        asyncio.ensure_future(metric_reader.read("tgi_queue_size", "ns", "a=b, c in (d)")) for _ in range(20)
    ]
    await asyncio.sleep(0)
    prometheus.gate.set()
    results = await asyncio.gather(*reads)
    assert len(prometheus.queries) == 1
    assert {body["items"][0]["value"] for body, _ in results} == {"7"}
    outcomes = sorted(outcome.value for _, outcome in results)
    assert outcomes == ["coalesced"] * 19 + ["miss"]
    assert metrics.cache_requests.labels(result="coalesced")._value.get() == 19
    _, outcome = await metric_reader.read("tgi_queue_size", "ns", "c=d,a=b")
    assert outcome is CacheOutcome.HIT
    assert len(prometheus.queries) == 1


async def test_the_age_of_the_data_is_recorded_per_selector_not_the_evaluation_time() -> None:
    metric_reader, metrics = reader(Scripted(vector("1", data_time=T - 8)))
    await metric_reader.read("tgi_queue_size", "ns", "app=a")
    assert metrics.sample_age._sum.get() == pytest.approx(10.0)
    exported = {
        tuple(sorted(sample.labels.items())): sample.value
        for family in metrics.data_ages.collect()
        for sample in family.samples
    }
    assert exported == {
        (("metric", "tgi_queue_size"), ("metric_namespace", "ns"), ("selector", "app=a")): 10.0
    }


async def test_data_older_than_the_bound_is_a_503_naming_its_age() -> None:
    metric_reader, metrics = reader(Scripted(vector("1", data_time=T - 98)), max_age=45.0)
    with pytest.raises(DataTooOld, match=r"is 100\.0s old, more than the 45s allowed") as caught:
        await metric_reader.read("tgi_queue_size", "ns", "app=a")
    assert status.from_error(caught.value).status == 503
    (family,) = metrics.data_ages.collect()
    assert [sample.value for sample in family.samples] == [100.0]


async def test_templates_other_than_aggregations_ask_for_the_age_separately() -> None:
    config = parse_metrics_yaml(
        "metrics:\n  - {name: q, query: 'scalar(sum(x{$matchers})) * 2'}\n", source="t"
    )
    answers = {
        "value": InstantResult(result_type="scalar", samples=(Sample({}, T, "4"),), evaluated_at=T),
        "age": InstantResult(result_type="vector", samples=(Sample({}, T, repr(T - 5)),), evaluated_at=T),
    }

    class ByQuery(Scripted):
        async def query(self, promql: str) -> InstantResult:
            self.queries.append(promql)
            return answers["age" if promql.startswith("min(timestamp(") else "value"]

    prometheus = ByQuery(answers["value"])
    metric_reader, _ = reader(prometheus, config)
    body, _ = await metric_reader.read("q", "ns", "")
    assert body["items"][0]["value"] == "4"  # what Prometheus said, not recomputed
    assert body["items"][0]["timestamp"] == metav1_time(T - 5)
    assert sorted(prometheus.queries) == [
        'min(timestamp(x{namespace="ns"}))',
        'scalar(sum(x{namespace="ns"})) * 2',
    ]


@pytest.mark.parametrize(
    ("timestamp", "text"),
    [(0, "1970-01-01T00:00:00Z"), (1_700_000_000.999, "2023-11-14T22:13:20Z"), (T, "2023-11-14T22:13:20Z")],
)
def test_timestamps_are_rfc3339_whole_seconds_in_utc(timestamp: float, text: str) -> None:
    assert metav1_time(timestamp) == text
