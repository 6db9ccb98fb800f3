"""Grouped prefetch: one query per definition and label set, bounded staleness, outages never a value."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry

from tgi_autoscaler.adapter.cache import CacheOutcome, SingleFlightCache
from tgi_autoscaler.adapter.definitions import DefinitionStore
from tgi_autoscaler.adapter.errors import EmptyResult, PrometheusQueryError, PrometheusUnavailable
from tgi_autoscaler.adapter.handlers import MetricReader
from tgi_autoscaler.adapter.own_metrics import AdapterMetrics
from tgi_autoscaler.adapter.prefetch import Prefetcher
from tgi_autoscaler.adapter.prometheus import InstantResult, Sample
from tgi_autoscaler.config.metrics import MetricsConfig, PrefetchSettings
from tgi_autoscaler.promql.shape import PART_LABEL, PART_TIMESTAMP, PART_VALUE

pytestmark = pytest.mark.unit

APP = "app_kubernetes_io_instance"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class GroupedPrometheus:
    """Answers grouped queries from a table of (namespace, app) -> value; others from ``direct``."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.values = {("team-a", f"svc-{i}"): str(i) for i in range(50)}
        self.queries: list[str] = []
        self.failure: Exception | None = None

    async def query(self, promql: str) -> InstantResult:
        self.queries.append(promql)
        if self.failure is not None:
            raise self.failure
        now = self.clock()
        samples: list[Sample] = []
        if " by (" in promql:
            wanted = re.search(APP + r'=~?"([^"]*)"', promql)
            for (namespace, app), value in self.values.items():
                if wanted is not None and not re.fullmatch(wanted.group(1), app):
                    continue  # the grouped query asks for the values being read only
                labels = {"namespace": namespace, APP: app}
                samples.append(Sample({**labels, PART_LABEL: PART_VALUE}, now, value))
                samples.append(Sample({**labels, PART_LABEL: PART_TIMESTAMP}, now, repr(now - 1)))
        else:
            samples.append(Sample({PART_LABEL: PART_VALUE}, now, "-1"))
            samples.append(Sample({PART_LABEL: PART_TIMESTAMP}, now, repr(now - 1)))
        return InstantResult(result_type="vector", samples=tuple(samples), evaluated_at=now)


@contextlib.asynccontextmanager
async def running(
    settings: PrefetchSettings | None = None,
) -> AsyncIterator[tuple[MetricReader, GroupedPrometheus, Clock, Prefetcher]]:
    clock = Clock()
    prometheus = GroupedPrometheus(clock)
    metrics = AdapterMetrics(CollectorRegistry())
    definitions = DefinitionStore(MetricsConfig(), metrics=metrics)
    prefetcher = Prefetcher(
        settings or PrefetchSettings(),
        prometheus=prometheus,
        definitions=definitions,
        metrics=metrics,
        clock=clock,
    )
    reader = MetricReader(
        prometheus=prometheus,
        definitions=definitions,
        cache=SingleFlightCache(0.0),
        metrics=metrics,
        max_data_age_s=45.0,
        prefetcher=prefetcher,
        clock=clock,
    )
    task = asyncio.create_task(prefetcher.run())
    try:
        yield reader, prometheus, clock, prefetcher
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_fifty_selectors_cost_one_grouped_query() -> None:
    async with running() as (reader, prometheus, _, _):
        bodies = await asyncio.gather(
            *(
                reader.read("tgi_queue_size", "team-a", f"app.kubernetes.io/instance=svc-{i}")
                for i in range(50)
            )
        )
    assert [body["items"][0]["value"] for body, _ in bodies] == [str(i) for i in range(50)]
    assert {outcome for _, outcome in bodies} == {CacheOutcome.PREFETCH}
    assert len(prometheus.queries) == 1
    apps = "|".join(sorted(f"svc-{i}" for i in range(50)))
    assert (
        f'sum by ({APP}, namespace) (tgi_queue_size{{{APP}=~"{apps}",namespace="team-a"}})'
        in (prometheus.queries[0])
    )


async def test_only_the_values_being_read_are_fetched_and_a_new_one_waits_for_the_next_refresh() -> None:
    settings = PrefetchSettings(refresh_seconds=1, max_staleness_seconds=3)
    async with running(settings) as (reader, prometheus, clock, prefetcher):
        await asyncio.gather(
            *(reader.read("tgi_queue_size", "team-a", f"app.kubernetes.io/instance=svc-{i}") for i in (1, 2))
        )
        assert prometheus.queries[-1].count("svc-") == 4  # value and data-age parts, two services each
        assert '"svc-1|svc-2"' in prometheus.queries[-1]
        sent = len(prometheus.queries)
        # A third service: no query of its own; the next grouped refresh, brought forward, answers it.
        read = asyncio.create_task(
            reader.read("tgi_queue_size", "team-a", "app.kubernetes.io/instance=svc-3")
        )
        await asyncio.sleep(0.01)
        assert not read.done()
        assert len(prometheus.queries) == sent
        clock.now += 0.3  # past the batching delay (0.25 s), before the regular refresh (1 s)
        prefetcher.wake()
        body, outcome = await asyncio.wait_for(read, 2)
        assert (body["items"][0]["value"], outcome) == ("3", CacheOutcome.PREFETCH)
        assert len(prometheus.queries) == sent + 1
        assert '"svc-1|svc-2|svc-3"' in prometheus.queries[-1]


async def test_past_a_few_hundred_values_the_grouped_query_selects_every_series() -> None:
    async with running() as (reader, prometheus, _, _):
        prometheus.values = {("team-a", f"svc-{i}"): str(i) for i in range(400)}
        bodies = await asyncio.gather(
            *(
                reader.read("tgi_queue_size", "team-a", f"app.kubernetes.io/instance=svc-{i}")
                for i in range(300)
            )
        )
        assert {outcome for _, outcome in bodies} == {CacheOutcome.PREFETCH}
        assert f'{APP}!=""' in prometheus.queries[-1]  # no 300-value regex
        sent = len(prometheus.queries)
        # A value not read before is in the answers already: no wait, no query.
        body, outcome = await reader.read("tgi_queue_size", "team-a", "app.kubernetes.io/instance=svc-350")
        assert (body["items"][0]["value"], outcome) == ("350", CacheOutcome.PREFETCH)
        assert len(prometheus.queries) == sent


async def test_a_reloaded_definition_asks_for_every_value_read_before_in_its_first_refresh() -> None:
    async with running() as (reader, prometheus, _, prefetcher):
        await asyncio.gather(
            *(reader.read("tgi_queue_size", "team-a", f"app.kubernetes.io/instance=svc-{i}") for i in (1, 2))
        )
        definitions = reader._definitions
        definitions.replace(MetricsConfig(), source="test")  # the ConfigMap edited: new definitions
        body, outcome = await reader.read("tgi_queue_size", "team-a", "app.kubernetes.io/instance=svc-2")
        assert (body["items"][0]["value"], outcome) == ("2", CacheOutcome.PREFETCH)
        assert '"svc-1|svc-2"' in prometheus.queries[-1]
        assert len(prefetcher) == 1


async def test_a_selector_matching_no_group_is_empty_not_zero() -> None:
    async with running() as (reader, _, _, _):
        results = await asyncio.gather(
            reader.read("tgi_queue_size", "team-a", "app.kubernetes.io/instance=gone"),
            # The namespace is part of the group: team-a's svc-1 is not team-b's.
            reader.read("tgi_queue_size", "team-b", "app.kubernetes.io/instance=svc-1"),
            return_exceptions=True,
        )
        assert [type(r) for r in results] == [EmptyResult, EmptyResult]


async def test_other_selectors_fall_back_to_one_query_each() -> None:
    async with running() as (reader, prometheus, _, _):
        body, outcome = await reader.read("tgi_queue_size", "team-a", "app.kubernetes.io/instance in (a,b)")
        assert outcome is CacheOutcome.MISS
        assert body["items"][0]["value"] == "-1"
        assert prometheus.queries[-1].startswith("label_replace(sum(tgi_queue_size{")


async def test_an_outage_past_the_staleness_bound_is_a_503_never_the_old_value() -> None:
    settings = PrefetchSettings(refresh_seconds=1, max_staleness_seconds=3)
    async with running(settings) as (reader, prometheus, clock, prefetcher):
        body, _ = await reader.read("tgi_queue_size", "team-a", "app.kubernetes.io/instance=svc-7")
        assert body["items"][0]["value"] == "7"
        prometheus.failure = PrometheusUnavailable("cannot connect to Prometheus", reason="connect")
        clock.now += 2  # within the bound: the prefetched answer is still served
        body, outcome = await reader.read("tgi_queue_size", "team-a", "app.kubernetes.io/instance=svc-7")
        assert (body["items"][0]["value"], outcome) == ("7", CacheOutcome.PREFETCH)
        clock.now += 2  # past it: the read asks Prometheus itself, which is down
        with pytest.raises(PrometheusUnavailable):
            await reader.read("tgi_queue_size", "team-a", "app.kubernetes.io/instance=svc-7")
        prometheus.failure = None
        prometheus.values[("team-a", "svc-7")] = "70"
        clock.now += 1
        prefetcher.wake()
        for _ in range(20):  # the background refresh catches up
            await asyncio.sleep(0.01)
            body, outcome = await reader.read("tgi_queue_size", "team-a", "app.kubernetes.io/instance=svc-7")
            if outcome is CacheOutcome.PREFETCH:
                break
        assert (body["items"][0]["value"], outcome) == ("70", CacheOutcome.PREFETCH)


async def test_a_group_nobody_reads_stops_being_refreshed() -> None:
    settings = PrefetchSettings(refresh_seconds=1, max_staleness_seconds=2, idle_seconds=5)
    async with running(settings) as (reader, prometheus, clock, prefetcher):
        await reader.read("tgi_queue_size", "team-a", "app.kubernetes.io/instance=svc-1")
        assert len(prefetcher) == 1
        clock.now += 6
        prefetcher.wake()
        for _ in range(50):
            await asyncio.sleep(0.01)
            if not len(prefetcher):
                break
        assert len(prefetcher) == 0
        sent = len(prometheus.queries)
        clock.now += 10
        prefetcher.wake()
        await asyncio.sleep(0.05)
        assert len(prometheus.queries) == sent


async def test_a_grouped_query_prometheus_rejects_disables_the_group() -> None:
    async with running() as (reader, prometheus, _, _):
        prometheus.failure = PrometheusQueryError("many-to-many matching not allowed", reason="bad_data")
        with pytest.raises(PrometheusQueryError):  # then the read's own query, rejected as well
            await reader.read("tgi_queue_size", "team-a", "app.kubernetes.io/instance=svc-1")
        prometheus.failure = None
        body, outcome = await reader.read("tgi_queue_size", "team-a", "app.kubernetes.io/instance=svc-1")
        assert (body["items"][0]["value"], outcome) == ("-1", CacheOutcome.MISS)


def test_the_staleness_bound_must_cover_the_refresh() -> None:
    with pytest.raises(ValueError, match=r"maxStalenessSeconds \(1\) must be at least refreshSeconds \(2\)"):
        PrefetchSettings(refresh_seconds=2, max_staleness_seconds=1)


async def test_a_grouped_query_that_timed_out_in_prometheus_is_tried_again() -> None:
    settings = PrefetchSettings(refresh_seconds=1, max_staleness_seconds=2)
    async with running(settings) as (reader, prometheus, clock, prefetcher):
        prometheus.failure = PrometheusQueryError(
            "expanding series: context deadline exceeded", reason="execution"
        )
        with pytest.raises(PrometheusQueryError):
            await reader.read("tgi_queue_size", "team-a", "app.kubernetes.io/instance=svc-1")
        prometheus.failure = None
        clock.now += 1.5
        prefetcher.wake()
        for _ in range(20):
            await asyncio.sleep(0.01)
            body, outcome = await reader.read("tgi_queue_size", "team-a", "app.kubernetes.io/instance=svc-1")
            if outcome is CacheOutcome.PREFETCH:
                break
        assert (body["items"][0]["value"], outcome) == ("1", CacheOutcome.PREFETCH)
