"""Grouped prefetch: one background query per definition and label set answers every HPA reading it.

With one selector per HPA, a per-selector cache rarely hits and every read is a Prometheus query,
so Prometheus' load grows with the number of HPAs. Here a read whose selector pins exactly a set of
labels to non-empty values (``app.kubernetes.io/instance=llama2-tgi`` in namespace ``team-a``)
registers a *group*: the definition's grouped query (``tgi_autoscaler.promql.shape``) by the
namespace label and those labels, evaluated every ``refreshSeconds`` in the background with its data
age, the answers kept in memory by label values. Reads of any selector of the group are then
answered from memory, with the time of the samples behind the value.

Only what is read is fetched: the grouped query selects the label values read within
``idleSeconds`` (``label=~"a|b|c"``), not every series of the metric, so a cluster where 100 of
10,000 services are autoscaled pays for 100 answers per refresh, in Prometheus and here. Past
``_SUBSET_LIMIT`` values the regex would cost more than it saves, and the query selects every series
with the labels set (which also answers any new value at once). A value read
for the first time waits for the refresh that includes it, brought forward to within
``_NEW_VALUES_BATCH_S`` so that new values arriving together share it: a fleet of HPAs starting
together (or an adapter restart) costs one query per definition, not one per HPA. A reloaded
definition keeps the values being read, so its first refresh answers them all at once.

Bounds, so a prefetched answer is never worse than a direct query:

- an answer older than ``maxStalenessSeconds`` (refreshes failing) is not served: the read falls
  back to the single-flight query, which answers 503 if Prometheus is down; never an old value,
  never a zero;
- a group no read has used for ``idleSeconds`` stops being refreshed and is forgotten, as is one
  whose definition was reloaded (its next read starts the new one);
- a grouped query Prometheus rejects as invalid (``bad_data``) disables the group until its
  definition changes; its selectors are read one query each, as before. Other failures (a query
  that timed out in Prometheus) are retried at the next refresh.

"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import structlog
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from tgi_autoscaler.adapter.answers import Answer, by_group
from tgi_autoscaler.adapter.definitions import DefinitionStore
from tgi_autoscaler.adapter.errors import PrometheusQueryError, PrometheusUnavailable
from tgi_autoscaler.adapter.own_metrics import AdapterMetrics
from tgi_autoscaler.adapter.prometheus import PrometheusQuerier
from tgi_autoscaler.config.metrics import MetricDefinition, PrefetchSettings
from tgi_autoscaler.promql import BuiltQuery, MatchOp, format_matchers
from tgi_autoscaler.promql.matchers import Matcher, regex_escape
from tgi_autoscaler.promql.shape import combined

__all__ = ["Prefetcher", "group_key"]

log = structlog.get_logger(__name__)

# New values arriving within this long share one refresh.
_NEW_VALUES_BATCH_S = 0.25
# Up to this many values read, the grouped query asks for them by name.
_SUBSET_LIMIT = 256


def _covers(queried: frozenset[tuple[str, ...]] | None, values: tuple[str, ...]) -> bool:
    return queried is None or values in queried


def group_key(built: BuiltQuery) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """(label names, values) if every matcher pins a distinct label to a non-empty value, else None."""
    return built.exact


@dataclass
class _Group:
    definition: MetricDefinition
    labels: tuple[str, ...]
    last_read: float
    # Label values -> when last read; the next refresh asks for these.
    reading: dict[tuple[str, ...], float] = field(default_factory=dict)
    # What the answers are the answers for; None: every value (the query selected them all).
    queried: frozenset[tuple[str, ...]] | None = frozenset()
    answers: dict[tuple[str, ...], Answer] | None = None
    empty: Answer | None = None
    fetched_at: float = 0.0
    next_due: float = 0.0
    broken: bool = False
    # Set when the next refresh to start has finished: what a read of a value not fetched yet awaits.
    next_fetch: asyncio.Event = field(default_factory=asyncio.Event)


def _grouped_promql(
    definition: MetricDefinition, labels: tuple[str, ...], wanted: frozenset[tuple[str, ...]] | None
) -> str:
    """The grouped query for the label values in ``wanted`` (a superset when several labels vary;
    None: every series with the labels set)."""
    matchers: list[Matcher] = []
    for index, label in enumerate(labels):
        if wanted is None:
            matchers.append(Matcher(label, MatchOp.NOT_EQUAL, ""))
            continue
        values = sorted({key[index] for key in wanted})
        if len(values) == 1:
            matchers.append(Matcher(label, MatchOp.EQUAL, values[0]))
        else:
            pattern = "|".join(regex_escape(value) for value in values)
            matchers.append(Matcher(label, MatchOp.REGEX, pattern))
    selector = format_matchers(matchers)
    shape = definition.shape
    return combined(shape.grouped_value(selector, labels), shape.age(selector, labels))


class Prefetcher:
    """The groups being read, their background refresh, and their answers."""

    def __init__(
        self,
        settings: PrefetchSettings,
        *,
        prometheus: PrometheusQuerier,
        definitions: DefinitionStore,
        metrics: AdapterMetrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._prometheus = prometheus
        self._definitions = definitions
        self._metrics = metrics
        self._clock = clock
        self._groups: dict[tuple[str, tuple[str, ...]], _Group] = {}
        self._wake = asyncio.Event()
        metrics.registry.register(_GroupCollector(self))

    def __len__(self) -> int:
        return len(self._groups)

    async def answer(self, definition: MetricDefinition, built: BuiltQuery) -> Answer | None:
        """The prefetched answer for this read, or None: the caller queries Prometheus itself."""
        if not definition.shape.groupable:
            return None
        key = group_key(built)
        if key is None:
            return None
        labels, values = key
        now = self._clock()
        group = self._groups.get((definition.name, labels))
        if group is None or group.definition is not definition:
            group = _Group(definition, labels, last_read=now, reading=dict(group.reading) if group else {})
            self._groups[(definition.name, labels)] = group
        group.last_read = now
        group.reading[values] = now
        if not group.broken and (group.answers is None or not _covers(group.queried, values)):
            # Not fetched yet: wait for the refresh that asks for it rather than query alone.
            group.next_due = min(
                group.next_due, now + min(_NEW_VALUES_BATCH_S, self._settings.refresh_seconds)
            )
            self._wake.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(group.next_fetch.wait(), self._settings.max_staleness_seconds)
        if group.broken or group.answers is None or not _covers(group.queried, values):
            return None
        if self._clock() - group.fetched_at > self._settings.max_staleness_seconds:
            return None
        return group.answers.get(values, group.empty)

    def wake(self) -> None:
        """Look at the groups now rather than at the next refresh (a clock that jumped, in tests)."""
        self._wake.set()

    async def run(self) -> None:
        """Refresh the groups being read, forever (until cancelled)."""
        while True:
            now = self._clock()
            self._forget(now)
            due = [group for group in self._groups.values() if not group.broken and group.next_due <= now]
            if due:
                await asyncio.gather(*(self._refresh(group) for group in due))
            upcoming = [group.next_due for group in self._groups.values() if not group.broken]
            delay = max(min(upcoming) - self._clock(), 0.0) if upcoming else self._settings.idle_seconds
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    def _forget(self, now: float) -> None:
        for key, group in list(self._groups.items()):
            if now - group.last_read > self._settings.idle_seconds:
                log.info("prefetch_group_idle", metric=group.definition.name, labels=list(group.labels))
                del self._groups[key]
            elif (reloaded := self._definitions.get(group.definition.name)) is not group.definition:
                if reloaded is None or not reloaded.shape.groupable:
                    del self._groups[key]
                else:  # the same reads go on: the new definition's first refresh answers them all
                    self._groups[key] = _Group(
                        reloaded, group.labels, last_read=group.last_read, reading=group.reading
                    )

    async def _refresh(self, group: _Group) -> None:
        now = self._clock()
        group.next_due = now + self._settings.refresh_seconds
        # Reads from now on wait for the refresh after this one (their values are not in it).
        done, group.next_fetch = group.next_fetch, asyncio.Event()
        idle = self._settings.idle_seconds
        group.reading = {key: at for key, at in group.reading.items() if now - at <= idle}
        if not group.reading:  # nothing read lately: the group is forgotten on the next pass
            done.set()
            return
        # Past a few hundred values, asking for each costs Prometheus more (a long regex) than the
        # answers it saves: then the query selects every series, and covers new values at once.
        wanted = frozenset(group.reading) if len(group.reading) <= _SUBSET_LIMIT else None
        try:
            result = await self._prometheus.query(_grouped_promql(group.definition, group.labels, wanted))
        except PrometheusQueryError as exc:
            if exc.reason != "bad_data":  # e.g. "execution: context deadline exceeded": try again
                self._metrics.prefetch_queries.labels(outcome="unavailable").inc()
                return
            group.broken = True
            self._metrics.prefetch_queries.labels(outcome="rejected").inc()
            log.warning(
                "prefetch_group_disabled",
                metric=group.definition.name,
                labels=list(group.labels),
                error=exc.message,
                note="its selectors are read with one query each",
            )
        except PrometheusUnavailable:
            self._metrics.prefetch_queries.labels(outcome="unavailable").inc()
        else:
            group.answers = by_group(result, group.labels)
            group.queried = wanted
            group.empty = Answer(values=(), data_time=None, evaluated_at=result.evaluated_at)
            group.fetched_at = self._clock()
            self._metrics.prefetch_queries.labels(outcome="success").inc()
        finally:
            done.set()

    def ages(self) -> Iterator[tuple[str, tuple[str, ...], float]]:
        """(metric, labels, seconds since the last successful refresh) for every group with one."""
        now = self._clock()
        for group in self._groups.values():
            if group.answers is not None:
                yield group.definition.name, group.labels, now - group.fetched_at


class _GroupCollector(Collector):
    def __init__(self, prefetcher: Prefetcher) -> None:
        self._prefetcher = prefetcher

    def collect(self) -> Iterator[GaugeMetricFamily]:
        settings = self._prefetcher._settings
        age = GaugeMetricFamily(
            "tgi_autoscaler_adapter_prefetch_age_seconds",
            "Seconds since each grouped query (metric, grouping labels) was last evaluated successfully.",
            labels=("metric", "labels"),
        )
        for metric, labels, seconds in self._prefetcher.ages():
            age.add_metric((metric, ",".join(labels)), seconds)
        bound = GaugeMetricFamily(
            "tgi_autoscaler_adapter_prefetch_max_staleness_seconds",
            "Oldest grouped answer served (prefetch.maxStalenessSeconds); older reads query Prometheus.",
            value=settings.max_staleness_seconds,
        )
        groups = GaugeMetricFamily(
            "tgi_autoscaler_adapter_prefetch_groups",
            "Grouped queries being refreshed.",
            value=len(self._prefetcher),
        )
        yield from (age, bound, groups)
