"""Prometheus exposition of one simulated replica, with the real servers' metric names.

Each replica owns a ``prometheus_client.CollectorRegistry`` (never the global one: a fleet runs many
replicas in one process) holding a custom collector that reads the queueing model at scrape time.

The text is rendered here rather than by ``prometheus_client.generate_latest`` because that function
appends ``_total`` to every counter, while TGI (Rust ``metrics-exporter-prometheus``) exports
``tgi_request_success`` etc. without it; dashboards, alerts and the adapter must be tested against
the names the real server emits.

``engine`` picks which server the replica impersonates on ``/metrics``: ``tgi`` (TGI's families), or
vLLM or SGLang with their own families at the pinned versions (``sim.families``: names, types,
label sets, buckets), recorded from the same model's requests. The HTTP API stays TGI's in every
case.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import GaugeMetricFamily, HistogramMetricFamily, Metric

from tgi_autoscaler.engines import ENGINES as ENGINE_TABLE
from tgi_autoscaler.engines import EngineKind
from tgi_autoscaler_dev.sim.families import Gauges, Recorder
from tgi_autoscaler_dev.sim.model import ReplicaModel
from tgi_autoscaler_dev.sim.stats import TGI_METRICS, Histogram

__all__ = [
    "CONTENT_TYPE",
    "ENGINES",
    "Engine",
    "ReplicaCollector",
    "build_registry",
    "format_value",
    "render_text",
]

Engine = str  # the name of an engine of the engine table
ENGINES: tuple[Engine, ...] = tuple(kind.value for kind in ENGINE_TABLE)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Counters a fresh TGI has not touched yet are still exported as 0, so queries over a just-started
# replica return a value instead of nothing.
_ALWAYS_PRESENT_COUNTERS = ("tgi_request_count", "tgi_request_success")


class ReplicaCollector:
    """Collector producing the families of one replica from its model's stats and snapshot."""

    def __init__(self, model: ReplicaModel, *, engine: Engine = "tgi", model_name: str = "sim") -> None:
        if engine not in ENGINES:
            raise ValueError(f"engine: must be one of {', '.join(ENGINES)}, got {engine!r}")
        if engine != EngineKind.TGI and engine not in model.engines:
            raise ValueError(f"engine: the replica model records no {engine} families (record_for)")
        self._model = model
        self._engine = engine
        self._model_name = model_name

    def collect(self) -> Iterator[Metric]:
        if self._engine == EngineKind.TGI:
            yield from self._tgi()
        else:
            yield from self._engine_gauges()

    def _engine_gauges(self) -> Iterator[Metric]:
        recorder = self._model.engines[self._engine]
        snap = self._model.snapshot()
        config = self._model.config
        gauges = Gauges(
            queue_size=snap.queue_size,
            batch_size=snap.batch_size,
            used_tokens=snap.batch_max_tokens,
            token_capacity=config.max_batch_size * config.max_total_tokens,
        )
        levels = recorder.gauge_values(gauges)
        for family in recorder.families:
            constant = self._constant(recorder, family.scope)
            if family.kind == "gauge":
                names = [k for k, _ in constant]
                gauge = GaugeMetricFamily(family.name, family.help, labels=names)
                gauge.add_metric([v for _, v in constant], levels[family.name])
                yield gauge
                continue
            children = list(recorder.series(family.name))
            if not children and family.lazy:
                continue  # the engine creates this family's series with its first observation
            if family.kind == "counter":
                counter = Metric(family.name, family.help, "counter")
                for labels, value in children:
                    assert isinstance(value, float)
                    counter.add_sample(family.name, dict(constant + labels), value)
                yield counter
            else:
                names = [k for k, _ in constant]
                histogram = HistogramMetricFamily(family.name, family.help, labels=names)
                for _, hist in children:
                    assert isinstance(hist, Histogram)
                    histogram.add_metric(
                        [v for _, v in constant],
                        [(format_value(bound), float(n)) for bound, n in hist.cumulative()],
                        hist.sum,
                    )
                yield histogram

    def _constant(self, recorder: Recorder, scope: str) -> tuple[tuple[str, str], ...]:
        labels = dict(recorder.constant.get(scope, ()))  # type: ignore[call-overload]
        if scope != "http":
            labels["model_name"] = self._model_name
        return tuple(sorted(labels.items()))

    def _tgi(self) -> Iterator[Metric]:
        snap = self._model.snapshot()
        stats = self._model.stats
        for name, level in (
            ("tgi_queue_size", snap.queue_size),
            ("tgi_batch_current_size", snap.batch_size),
            ("tgi_batch_current_max_tokens", snap.batch_max_tokens),
        ):
            yield GaugeMetricFamily(name, TGI_METRICS[name].help, value=float(level))

        counters: dict[str, Metric] = {}
        for name in _ALWAYS_PRESENT_COUNTERS:
            counters[name] = Metric(name, TGI_METRICS[name].help, "counter")
        for name, labels, value in stats.iter_counters():
            counter = counters.setdefault(name, Metric(name, TGI_METRICS[name].help, "counter"))
            # The sample carries the family name itself: no ``_total``.
            counter.add_sample(name, dict(labels), value)
        for name in _ALWAYS_PRESENT_COUNTERS:
            if not counters[name].samples:
                counters[name].add_sample(name, {}, 0.0)
        yield from counters.values()

        histograms: dict[str, HistogramMetricFamily] = {}
        for name, labels, hist in stats.iter_histograms():
            label_names = [k for k, _ in labels]
            histogram = histograms.get(name)
            if histogram is None:
                histogram = histograms[name] = HistogramMetricFamily(
                    name, TGI_METRICS[name].help, labels=label_names
                )
            histogram.add_metric(
                [v for _, v in labels],
                [(format_value(bound), float(n)) for bound, n in hist.cumulative()],
                hist.sum,
            )
        yield from histograms.values()


def format_value(value: float) -> str:
    """A sample value or ``le`` bound the way Prometheus' text format spells it."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def build_registry(collector: ReplicaCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def _escape_label_value(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _render_family(metric: Metric) -> Iterable[str]:
    kind = {"unknown": "untyped", "gaugehistogram": "histogram"}.get(metric.type, metric.type)
    doc = metric.documentation.replace("\\", r"\\").replace("\n", r"\n")
    yield f"# HELP {metric.name} {doc}\n"
    yield f"# TYPE {metric.name} {kind}\n"
    for sample in metric.samples:
        if sample.name.endswith("_created"):
            continue  # OpenMetrics-only series; TGI has none
        labels = ",".join(f'{k}="{_escape_label_value(v)}"' for k, v in sorted(sample.labels.items()))
        selector = f"{{{labels}}}" if labels else ""
        yield f"{sample.name}{selector} {format_value(sample.value)}\n"


def render_text(registry: CollectorRegistry) -> bytes:
    """Prometheus text format 0.0.4, counters named exactly as their family (no ``_total``)."""
    return "".join(line for metric in registry.collect() for line in _render_family(metric)).encode()
