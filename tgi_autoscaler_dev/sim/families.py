"""The metric families vLLM 0.11.0 and SGLang 0.5.9 export, recorded from the replica model's requests.

A dashboard panel or alert on a series the simulator does not export can only be checked for
syntax, which is how a panel on a name SGLang never exported went unnoticed. So a replica that
impersonates vLLM or SGLang exports that engine's own families: the names, types, label sets and,
where the engine fixes them, the histogram buckets of its source at the pinned version:

- vLLM 0.11.0 ``vllm/v1/metrics/loggers.py`` (``PrometheusStatLogger``): every series labelled
  ``model_name`` and ``engine`` (the engine core's index, ``"0"`` for one core), every child created
  at start-up (``make_per_engine``), so the families exist before the first request;
  ``vllm:request_success_total`` has one child per ``finished_reason`` (``stop``, ``length``,
  ``abort``). The API server's prometheus-fastapi-instrumentator adds
  ``http_requests_total{handler, method, status}`` with status codes grouped (``2xx``).
- SGLang 0.5.9 ``python/sglang/srt/metrics/collector.py``: the scheduler's gauges and queue-time
  histogram labelled ``model_name``, ``engine_type``, ``tp_rank``, ``pp_rank``, ``moe_ep_rank``
  (``scheduler_metrics_mixin.py``); the tokenizer manager's counters and latency histograms
  labelled ``model_name`` only, each appearing with its first observation. ``num_requests_total``
  counts every finished request, aborted ones included.

Not reproduced: families the simulated server has no counterpart for (LoRA, speculative decoding,
grammar, disaggregation, the ``*_info`` gauges). The model calls the ``Recorder`` hooks as its
requests move (queued, first token, every later token, finished, aborted, refused); what each
engine makes of them is its recorder's business. The same model drives the TGI families
(``sim.stats``), so the three engines' series describe the same requests.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from tgi_autoscaler_dev.sim.stats import Histogram, LabelSet, MetricKind

__all__ = [
    "SGLANG_FAMILIES",
    "VLLM_FAMILIES",
    "Family",
    "Recorder",
    "SglangRecorder",
    "VllmRecorder",
    "build_1_2_5_buckets",
    "recorders",
]

Scope = Literal["engine", "scheduler", "tokenizer", "http"]


@dataclass(frozen=True, slots=True)
class Family:
    """One exported family: ``name`` as it appears in PromQL (counters with ``_total``)."""

    name: str
    kind: MetricKind
    help: str
    scope: Scope  # which constant label set the engine puts on it
    labels: tuple[str, ...] = ()  # per-sample labels beyond the constant ones
    buckets: tuple[float, ...] = ()  # fixed by the engine (empty: derived from the limits, or none)
    lazy: bool = False  # no series until the first observation


def build_1_2_5_buckets(max_value: int) -> tuple[float, ...]:
    """vLLM's ``build_1_2_5_buckets``: 1, 2, 5, 10, 20, 50, ... up to ``max_value``."""
    buckets: list[float] = []
    exponent = 0
    while True:
        for mantissa in (1, 2, 5):
            value = mantissa * 10**exponent
            if value > max_value:
                return tuple(buckets)
            buckets.append(float(value))
        exponent += 1


_V_TTFT: Final = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0)
_V_TTFT_ALL: Final = (*_V_TTFT, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
_V_TPOT: Final = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
_V_TPOT_ALL: Final = (*_V_TPOT, 20.0, 40.0, 80.0)
_V_LATENCY: Final = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0)
_V_LATENCY_ALL: Final = (*_V_LATENCY, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)
_V_ITERATION: Final = (
    1.0,
    8.0,
    16.0,
    32.0,
    64.0,
    128.0,
    256.0,
    512.0,
    1024.0,
    2048.0,
    4096.0,
    8192.0,
    16384.0,
)


def _v(name: str, kind: MetricKind, help_text: str, **extra: object) -> Family:
    return Family(name, kind, help_text, "engine", **extra)  # type: ignore[arg-type]


# Token-count histograms (empty buckets) use build_1_2_5_buckets(max_model_len).
VLLM_FAMILIES: Final[tuple[Family, ...]] = (
    _v("vllm:num_requests_running", "gauge", "Number of requests in model execution batches."),
    _v("vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed."),
    _v("vllm:kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage."),
    _v(
        "vllm:prefix_cache_queries_total",
        "counter",
        "Prefix cache queries, in terms of number of queried tokens.",
    ),
    _v("vllm:prefix_cache_hits_total", "counter", "Prefix cache hits, in terms of number of cached tokens."),
    _v("vllm:num_preemptions_total", "counter", "Cumulative number of preemption from the engine."),
    _v("vllm:prompt_tokens_total", "counter", "Number of prefill tokens processed."),
    _v("vllm:generation_tokens_total", "counter", "Number of generation tokens processed."),
    _v(
        "vllm:request_success_total",
        "counter",
        "Count of successfully processed requests.",
        labels=("finished_reason",),
    ),
    _v("vllm:request_prompt_tokens", "histogram", "Number of prefill tokens processed."),
    _v("vllm:request_generation_tokens", "histogram", "Number of generation tokens processed."),
    _v(
        "vllm:iteration_tokens_total",
        "histogram",
        "Histogram of number of tokens per engine_step.",
        buckets=_V_ITERATION,
    ),
    _v(
        "vllm:request_max_num_generation_tokens",
        "histogram",
        "Histogram of maximum number of requested generation tokens.",
    ),
    _v(
        "vllm:request_params_n",
        "histogram",
        "Histogram of the n request parameter.",
        buckets=(1.0, 2.0, 5.0, 10.0, 20.0),
    ),
    _v("vllm:request_params_max_tokens", "histogram", "Histogram of the max_tokens request parameter."),
    _v(
        "vllm:time_to_first_token_seconds",
        "histogram",
        "Histogram of time to first token in seconds.",
        buckets=_V_TTFT_ALL,
    ),
    _v(
        "vllm:time_per_output_token_seconds",
        "histogram",
        "Histogram of time per output token in seconds."
        "DEPRECATED: Use vllm:inter_token_latency_seconds instead.",
        buckets=_V_TPOT_ALL,
    ),
    _v(
        "vllm:inter_token_latency_seconds",
        "histogram",
        "Histogram of inter-token latency in seconds.",
        buckets=_V_TPOT_ALL,
    ),
    _v(
        "vllm:request_time_per_output_token_seconds",
        "histogram",
        "Histogram of time_per_output_token_seconds per request.",
        buckets=_V_TPOT_ALL,
    ),
    _v(
        "vllm:e2e_request_latency_seconds",
        "histogram",
        "Histogram of e2e request latency in seconds.",
        buckets=_V_LATENCY_ALL,
    ),
    _v(
        "vllm:request_queue_time_seconds",
        "histogram",
        "Histogram of time spent in WAITING phase for request.",
        buckets=_V_LATENCY_ALL,
    ),
    _v(
        "vllm:request_inference_time_seconds",
        "histogram",
        "Histogram of time spent in RUNNING phase for request.",
        buckets=_V_LATENCY_ALL,
    ),
    _v(
        "vllm:request_prefill_time_seconds",
        "histogram",
        "Histogram of time spent in PREFILL phase for request.",
        buckets=_V_LATENCY_ALL,
    ),
    _v(
        "vllm:request_decode_time_seconds",
        "histogram",
        "Histogram of time spent in DECODE phase for request.",
        buckets=_V_LATENCY_ALL,
    ),
    Family(
        "http_requests_total",
        "counter",
        "Total number of requests by method, status and handler.",
        "http",
        labels=("handler", "method", "status"),
        lazy=True,
    ),
)

_S_QUEUE: Final = (0.0, 0.1, 0.2, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0)
_S_QUEUE_ALL: Final = (
    *_S_QUEUE,
    *(70.0, 80.0, 90.0, 100.0, 200.0, 300.0, 400.0, 500.0, 600.0, 700.0, 800.0, 900.0, 1000.0),
    *(1200.0, 1400.0, 1600.0, 1800.0, 2000.0, 2500.0, 3000.0),
)
_S_TTFT: Final = (0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 2.0, 4.0, 6.0, 8.0, 10.0, 20.0, 40.0, 60.0, 80.0, 100.0)
_S_TTFT_ALL: Final = (*_S_TTFT, 200.0, 400.0)
_S_E2E_ALL: Final = (*_S_TTFT_ALL, 600.0, 1200.0, 1800.0, 2400.0)
_S_ITL: Final = (0.002, 0.004, 0.006, 0.008, 0.010, 0.015, 0.020, 0.025, 0.030, 0.035, 0.040, 0.060)
_S_ITL_ALL: Final = (*_S_ITL, 0.080, 0.100, 0.200, 0.400, 0.600, 0.800, 1.0, 2.0, 4.0, 6.0, 8.0)
_S_RETRACTIONS: Final = (
    *(0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0),
    *(15.0, 20.0, 25.0, 30.0, 40.0, 50.0, 75.0, 100.0),
)


def _sched(name: str, kind: MetricKind, help_text: str, **extra: object) -> Family:
    return Family(name, kind, help_text, "scheduler", **extra)  # type: ignore[arg-type]


def _tok(name: str, kind: MetricKind, help_text: str, **extra: object) -> Family:
    return Family(name, kind, help_text, "tokenizer", lazy=True, **extra)  # type: ignore[arg-type]


SGLANG_FAMILIES: Final[tuple[Family, ...]] = (
    _sched("sglang:num_running_reqs", "gauge", "The number of running requests."),
    _sched("sglang:num_used_tokens", "gauge", "The number of used tokens."),
    _sched("sglang:token_usage", "gauge", "The token usage."),
    _sched("sglang:gen_throughput", "gauge", "The generation throughput (token/s)."),
    _sched("sglang:num_queue_reqs", "gauge", "The number of requests in the waiting queue."),
    _sched("sglang:num_grammar_queue_reqs", "gauge", "The number of requests in the grammar waiting queue."),
    _sched("sglang:cache_hit_rate", "gauge", "The prefix cache hit rate."),
    _sched("sglang:max_total_num_tokens", "gauge", "Maximum total number of tokens in the KV cache pool."),
    _sched(
        "sglang:queue_time_seconds",
        "histogram",
        "Histogram of queueing time in seconds.",
        buckets=_S_QUEUE_ALL,
        lazy=True,
    ),
    _tok("sglang:prompt_tokens_total", "counter", "Number of prefill tokens processed."),
    _tok("sglang:generation_tokens_total", "counter", "Number of generation tokens processed."),
    _tok(
        "sglang:cached_tokens_total",
        "counter",
        "Number of cached prompt tokens by source (device/host/storage).",
        labels=("cache_source",),
    ),
    _tok("sglang:num_requests_total", "counter", "Number of requests processed."),
    _tok("sglang:num_aborted_requests_total", "counter", "Number of requests aborted."),
    _tok(
        "sglang:time_to_first_token_seconds",
        "histogram",
        "Histogram of time to first token in seconds.",
        buckets=_S_TTFT_ALL,
    ),
    _tok(
        "sglang:inter_token_latency_seconds",
        "histogram",
        "Histogram of inter-token latency in seconds.",
        buckets=_S_ITL_ALL,
    ),
    _tok(
        "sglang:e2e_request_latency_seconds",
        "histogram",
        "Histogram of End-to-end request latency in seconds",
        buckets=_S_E2E_ALL,
    ),
    _tok(
        "sglang:num_retractions",
        "histogram",
        "Histogram of retraction counts per request.",
        buckets=_S_RETRACTIONS,
    ),
)


@dataclass(frozen=True, slots=True)
class Gauges:
    """What a scrape reads from the model besides the recorded counters and histograms."""

    queue_size: int
    batch_size: int
    used_tokens: int
    token_capacity: int


@dataclass(slots=True)
class Recorder:
    """Counters and histograms of one engine's families, fed by the replica model's hooks."""

    families: tuple[Family, ...]
    constant: Mapping[Scope, LabelSet]
    max_model_len: int
    counters: dict[tuple[str, LabelSet], float] = field(default_factory=dict)
    histograms: dict[tuple[str, LabelSet], Histogram] = field(default_factory=dict)
    _by_name: dict[str, Family] = field(default_factory=dict)
    _generated: int = 0  # tokens generated, for the generation-throughput gauge

    def __post_init__(self) -> None:
        self._by_name = {family.name: family for family in self.families}

    def family(self, name: str) -> Family:
        return self._by_name[name]

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        key = (name, tuple(sorted(labels.items())) if labels else ())
        self.counters[key] = self.counters.get(key, 0.0) + amount

    def observe(self, name: str, value: float, count: int = 1) -> None:
        key = (name, ())
        hist = self.histograms.get(key)
        if hist is None:
            family = self._by_name[name]
            hist = self.histograms[key] = Histogram(family.buckets or build_1_2_5_buckets(self.max_model_len))
        for _ in range(count):
            hist.observe(value)

    def touch(self, name: str, **labels: str) -> None:
        """Create a counter child at 0, as an engine does for the label values it knows up front."""
        self.inc(name, 0.0, **labels)

    def series(self, name: str) -> Iterator[tuple[LabelSet, float | Histogram]]:
        """Every child of one family: its per-sample labels and value."""
        for (key, labels), value in sorted(self.counters.items()):
            if key == name:
                yield labels, value
        for (key, labels), hist in sorted(self.histograms.items(), key=lambda kv: kv[0]):
            if key == name:
                yield labels, hist

    def gauge_values(self, gauges: Gauges) -> Mapping[str, float]:
        return {}

    # -- hooks called by the replica model -------------------------------------------------------

    def refused(self) -> None:
        """A request refused before it reached the engine (overloaded, invalid)."""

    def admitted(self, *, prompt_tokens: int, max_new_tokens: int) -> None:
        """A request accepted into the queue."""

    def scheduled(self, *, queued_at: float, at: float) -> None:
        """A request left the queue for the running batch."""

    def first_token(self, *, queued_at: float, at: float, prompt_tokens: int) -> None:
        """The prefill of a request produced its first token."""

    def token(self, *, interval: float) -> None:
        """A decode step produced one more token of a request, ``interval`` after its previous one."""

    def step(self, *, tokens: int) -> None:
        """An engine step (prefill or decode) over ``tokens`` tokens finished."""

    def finished(
        self, *, times: RequestTimes, prompt_tokens: int, generated: int, max_new_tokens: int
    ) -> None:
        """A request generated its last token (finish reason ``length``)."""

    def aborted(self, *, prompt_tokens: int, generated: int) -> None:
        """A request whose client went away was dropped from the queue or the batch."""


@dataclass(frozen=True, slots=True)
class RequestTimes:
    """When a finished request was queued, scheduled, got its first token, and finished."""

    queued_at: float
    started_at: float
    first_token_at: float
    finished_at: float


class VllmRecorder(Recorder):
    """vLLM 0.11.0's ``PrometheusStatLogger.record`` and the API server's HTTP counter."""

    def _http(self, status: str) -> None:
        self.inc("http_requests_total", handler="/v1/completions", method="POST", status=status)

    def __post_init__(self) -> None:
        Recorder.__post_init__(self)
        for family in self.families:
            if family.kind == "counter" and not family.lazy and not family.labels:
                self.touch(family.name)
        for reason in ("stop", "length", "abort"):  # vllm.v1.engine.FINISH_REASON_STRINGS
            self.touch("vllm:request_success_total", finished_reason=reason)
        for family in self.families:
            if family.kind == "histogram":
                key = (family.name, ())
                self.histograms[key] = Histogram(family.buckets or build_1_2_5_buckets(self.max_model_len))

    def gauge_values(self, gauges: Gauges) -> Mapping[str, float]:
        usage = gauges.used_tokens / gauges.token_capacity if gauges.token_capacity else 0.0
        return {
            "vllm:num_requests_running": float(gauges.batch_size),
            "vllm:num_requests_waiting": float(gauges.queue_size),
            "vllm:kv_cache_usage_perc": min(1.0, usage),
        }

    def refused(self) -> None:
        self._http("4xx")

    def admitted(self, *, prompt_tokens: int, max_new_tokens: int) -> None:
        self.inc("vllm:prefix_cache_queries_total", float(prompt_tokens))

    def first_token(self, *, queued_at: float, at: float, prompt_tokens: int) -> None:
        self.inc("vllm:prompt_tokens_total", float(prompt_tokens))
        self.inc("vllm:generation_tokens_total")
        self.observe("vllm:time_to_first_token_seconds", at - queued_at)

    def token(self, *, interval: float) -> None:
        self.inc("vllm:generation_tokens_total")
        # 0.11.0 observes every inter-token latency in both histograms.
        self.observe("vllm:inter_token_latency_seconds", interval)
        self.observe("vllm:time_per_output_token_seconds", interval)

    def step(self, *, tokens: int) -> None:
        self.observe("vllm:iteration_tokens_total", float(tokens))

    def finished(
        self, *, times: RequestTimes, prompt_tokens: int, generated: int, max_new_tokens: int
    ) -> None:
        self.inc("vllm:request_success_total", finished_reason="length")
        self._http("2xx")
        decode = times.finished_at - times.first_token_at
        self.observe("vllm:e2e_request_latency_seconds", times.finished_at - times.queued_at)
        self.observe("vllm:request_queue_time_seconds", times.started_at - times.queued_at)
        self.observe("vllm:request_prefill_time_seconds", times.first_token_at - times.started_at)
        self.observe("vllm:request_inference_time_seconds", times.finished_at - times.started_at)
        self.observe("vllm:request_decode_time_seconds", decode)
        self.observe("vllm:request_prompt_tokens", float(prompt_tokens))
        self.observe("vllm:request_generation_tokens", float(generated))
        self.observe("vllm:request_max_num_generation_tokens", float(max_new_tokens))
        self.observe("vllm:request_params_max_tokens", float(max_new_tokens))
        self.observe("vllm:request_params_n", 1.0)
        mean_tpot = decode / (generated - 1) if generated > 1 else 0.0
        self.observe("vllm:request_time_per_output_token_seconds", mean_tpot)

    def aborted(self, *, prompt_tokens: int, generated: int) -> None:
        self.inc("vllm:request_success_total", finished_reason="abort")
        # The stream had answered 200 before the client went away.
        self._http("2xx")


class SglangRecorder(Recorder):
    """SGLang 0.5.9's ``SchedulerMetricsCollector`` and ``TokenizerMetricsCollector``."""

    def gauge_values(self, gauges: Gauges) -> Mapping[str, float]:
        usage = gauges.used_tokens / gauges.token_capacity if gauges.token_capacity else 0.0
        return {
            "sglang:num_running_reqs": float(gauges.batch_size),
            "sglang:num_used_tokens": float(gauges.used_tokens),
            "sglang:token_usage": min(1.0, usage),
            "sglang:gen_throughput": 0.0,
            "sglang:num_queue_reqs": float(gauges.queue_size),
            "sglang:num_grammar_queue_reqs": 0.0,
            "sglang:cache_hit_rate": 0.0,
            "sglang:max_total_num_tokens": float(gauges.token_capacity),
        }

    def scheduled(self, *, queued_at: float, at: float) -> None:
        self.observe("sglang:queue_time_seconds", at - queued_at)

    def first_token(self, *, queued_at: float, at: float, prompt_tokens: int) -> None:
        self.observe("sglang:time_to_first_token_seconds", at - queued_at)

    def token(self, *, interval: float) -> None:
        self.observe("sglang:inter_token_latency_seconds", interval)

    def finished(
        self, *, times: RequestTimes, prompt_tokens: int, generated: int, max_new_tokens: int
    ) -> None:
        self.inc("sglang:prompt_tokens_total", float(prompt_tokens))
        self.inc("sglang:generation_tokens_total", float(generated))
        self.inc("sglang:num_requests_total")
        self.observe("sglang:e2e_request_latency_seconds", times.finished_at - times.queued_at)
        self.observe("sglang:num_retractions", 0.0)

    def aborted(self, *, prompt_tokens: int, generated: int) -> None:
        # tokenizer_manager.abort_request counts the abort; the scheduler then finishes the request
        # with an abort reason, and collect_metrics counts it as finished like any other.
        self.inc("sglang:num_aborted_requests_total")
        self.inc("sglang:prompt_tokens_total", float(prompt_tokens))
        self.inc("sglang:generation_tokens_total", float(generated))
        self.inc("sglang:num_requests_total")


def recorders(*, max_model_len: int) -> dict[str, Recorder]:
    """One recorder per impersonated engine (besides TGI, whose families live in ``sim.stats``).

    The constant labels are those besides ``model_name``, which the collector adds to every scope
    but ``http`` (the served model's name belongs to the server, not to the queueing model).
    """
    vllm_labels: dict[Scope, LabelSet] = {"engine": (("engine", "0"),), "http": ()}
    scheduler = (("engine_type", "unified"), ("moe_ep_rank", "0"), ("pp_rank", "0"), ("tp_rank", "0"))
    sglang_labels: dict[Scope, LabelSet] = {"scheduler": scheduler, "tokenizer": ()}
    return {
        "vllm": VllmRecorder(VLLM_FAMILIES, vllm_labels, max_model_len),
        "sglang": SglangRecorder(SGLANG_FAMILIES, sglang_labels, max_model_len),
    }
