"""Which Prometheus series each serving engine exports for the signals alerts and dashboards use.

TGI, vLLM and SGLang measure the same things under different names (``tgi_queue_size`` vs
``vllm:num_requests_waiting`` vs ``sglang:num_queue_reqs``), and not every engine measures every
thing: neither vLLM nor SGLang counts failed requests. Rules and panels are generated from this
table; a signal an engine lacks is ``None`` and the alert or panel that needs it is left out (and
listed as such in docs/alerts-and-dashboards.md) instead of querying a series that never exists.

The names were checked against each engine's own metric definitions (TGI's
``docs/source/reference/metrics.md`` and router source, vLLM's ``vllm/engine/metrics.py``, SGLang's
``python/sglang/srt/metrics/collector.py``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "ENGINE_METRICS",
    "SERVICE_LABEL",
    "Engine",
    "EngineMetrics",
    "engine_metrics",
    "label_matchers",
    "quote",
]

Engine = Literal["tgi", "vllm", "sglang"]

# The pod label app.kubernetes.io/instance as Prometheus' labelmap sanitizes it (see interfaces).
SERVICE_LABEL = "app_kubernetes_io_instance"


@dataclass(frozen=True)
class EngineMetrics:
    """Series names of one engine. Histograms are given by base name (without ``_bucket``)."""

    engine: Engine
    queue_size: str  # gauge: requests waiting for a batch slot; the HPA's scaling signal
    running: str | None  # gauge: requests in the current batch
    request_duration: str | None  # histogram, seconds: end-to-end time of a request
    queue_duration: str | None  # histogram, seconds: time a request waited in the queue
    decode_latency: str | None  # histogram, seconds: time per generated token (inter-token latency)
    requests: str | None  # counter: every request started
    successes: str | None  # counter: requests that finished successfully
    failures: str | None  # counter: requests that failed
    generated_tokens: str | None  # counter of generated tokens (a histogram's _sum for TGI)


ENGINE_METRICS: Mapping[Engine, EngineMetrics] = {
    "tgi": EngineMetrics(
        engine="tgi",
        queue_size="tgi_queue_size",
        running="tgi_batch_current_size",
        request_duration="tgi_request_duration",
        queue_duration="tgi_request_queue_duration",
        decode_latency="tgi_request_mean_time_per_token_duration",
        requests="tgi_request_count",
        successes="tgi_request_success",
        failures="tgi_request_failure",
        generated_tokens="tgi_request_generated_tokens_sum",
    ),
    "vllm": EngineMetrics(
        engine="vllm",
        queue_size="vllm:num_requests_waiting",
        running="vllm:num_requests_running",
        request_duration="vllm:e2e_request_latency_seconds",
        queue_duration="vllm:request_queue_time_seconds",
        decode_latency="vllm:time_per_output_token_seconds",
        requests=None,
        successes="vllm:request_success_total",
        failures=None,
        generated_tokens="vllm:generation_tokens_total",
    ),
    "sglang": EngineMetrics(
        engine="sglang",
        queue_size="sglang:num_queue_reqs",
        running="sglang:num_running_reqs",
        request_duration="sglang:e2e_request_latency_seconds",
        queue_duration="sglang:queue_time_seconds",
        decode_latency="sglang:decode_latency_seconds",
        requests=None,
        successes="sglang:num_requests_total",
        failures=None,
        generated_tokens="sglang:generation_tokens_total",
    ),
}


def engine_metrics(engine: str) -> EngineMetrics:
    """The metric table of ``engine``; raises ``ValueError`` naming the engine if unknown."""
    for known, metrics in ENGINE_METRICS.items():
        if known == engine:
            return metrics
    raise ValueError(f"unknown engine {engine!r}; expected one of {', '.join(ENGINE_METRICS)}")


def quote(value: str) -> str:
    """A PromQL double-quoted string literal for ``value`` (backslashes and quotes escaped)."""
    # PromQL string literals follow Go's escaping, which JSON's is a subset of.
    return json.dumps(value)


def label_matchers(**labels: str) -> str:
    """``{a="x", b="y"}`` with every value quoted; keys in the given order."""
    return "{" + ", ".join(f"{key}={quote(value)}" for key, value in labels.items()) + "}"
