"""The inference servers the project runs and scales: one entry per engine, every fact about it there.

TGI, vLLM and SGLang differ in their image, port, command line, the environment they read, which
quantizations and spec fields they support, and the names of the Prometheus series they export
(``tgi_queue_size`` vs ``vllm:num_requests_waiting`` vs ``sglang:num_queue_reqs``). The service spec's
defaults and checks, the reserved environment variables, the rendered container, the alert rules and
dashboards, the adapter's built-in metric definitions and the configuration reference all read this
table, so an engine is added by adding its entry (and its ``EngineKind`` member) and nowhere else.

Every name was read from the engine's own metric definitions at the pinned image's version, and the
source is named next to it: TGI v3.3.5 ``router/src/server.rs`` and ``docs/source/reference/metrics.md``,
vLLM 0.11.0 ``vllm/v1/metrics/loggers.py`` (the V1 engine's loggers; ``vllm/engine/metrics.py`` is the
unused V0 engine there), SGLang 0.5.9 ``python/sglang/srt/metrics/collector.py``. ``exported`` lists
every series the project may query for that version, so a test can refuse a name the engine never
exports; an engine that renamed a series across the versions users run records the older name
(``Renamed``) and ``Engine.metrics_for`` picks it from the spec's image tag.

"Success" and "failure" mean what each engine counts: vLLM's ``vllm:request_success_total`` and
SGLang's ``sglang:num_requests_total`` count every finished request, aborted ones included, so their
successes exclude the aborts (``finished_reason="abort"``, ``sglang:num_aborted_requests_total``)
and their error ratio is aborts over finished requests. A signal an engine lacks is ``None`` and the
alert or panel that needs it is left out (and listed as such in docs/alerts-and-dashboards.md)
instead of querying a series that never exists.

Pure data and pure functions: the renderer turns a ``Command`` into the container, nothing here
knows about Kubernetes objects or the spec's models.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from tgi_autoscaler.signals import DEFAULT_DEMAND, EngineCounters

__all__ = [
    "ENGINES",
    "TOKEN_ENV",
    "Command",
    "Counted",
    "Engine",
    "EngineKind",
    "EngineMetrics",
    "Launch",
    "Quantization",
    "Renamed",
    "ServedMetric",
    "engine_metrics",
    "external_metric_name",
    "image_version",
]


class EngineKind(StrEnum):
    """Which inference server runs the model."""

    TGI = "tgi"
    VLLM = "vllm"
    SGLANG = "sglang"


class Quantization(StrEnum):
    """Quantization methods, spelled as TGI's launcher ``--quantize`` accepts them (plus ``none``)."""

    NONE = "none"
    AWQ = "awq"
    EETQ = "eetq"
    EXL2 = "exl2"
    GPTQ = "gptq"
    MARLIN = "marlin"
    BITSANDBYTES = "bitsandbytes"
    BITSANDBYTES_NF4 = "bitsandbytes-nf4"
    BITSANDBYTES_FP4 = "bitsandbytes-fp4"
    FP8 = "fp8"


# Every engine (through huggingface_hub) reads the Hugging Face token from this variable.
TOKEN_ENV: Final = "HF_TOKEN"  # noqa: S105 - the variable's name; the value comes from a Secret


@dataclass(frozen=True)
class Counted:
    """A counter restricted to some of its label values, optionally less another counter.

    ``matchers`` are extra PromQL label matchers (``finished_reason!="abort"``); ``minus`` is a
    counter whose increments ``name`` also counts but that are not wanted here (SGLang counts
    aborted requests among its finished ones).
    """

    name: str
    matchers: str = ""
    minus: Counted | None = None

    @property
    def names(self) -> tuple[str, ...]:
        """Every series name the counter reads."""
        return (self.name, *(self.minus.names if self.minus is not None else ()))


_HISTOGRAM_SUFFIXES: Final = ("_bucket", "_sum", "_count")


@dataclass(frozen=True)
class EngineMetrics:
    """Series names of one engine at one version. Histograms are given by base name (no ``_bucket``)."""

    engine: str
    queue_size: str  # gauge: requests waiting for a batch slot; the HPA's scaling signal
    running: str | None  # gauge: requests in the current batch
    request_duration: str | None  # histogram, seconds: end-to-end time of a request
    queue_duration: str | None  # histogram, seconds: time a request waited in the queue
    decode_latency: str | None  # histogram, seconds: time per generated token (inter-token latency)
    requests: str | None  # counter: every request started (an arrival counter)
    finished: str | None  # counter: every request that finished, whatever its outcome
    successes: Counted | None  # requests that finished successfully
    failures: Counted | None  # requests that failed (the error ratio's numerator)
    generated_tokens: str | None  # counter of generated tokens (a histogram's _sum for TGI)
    # Every series (histograms by base name) the engine exports at this version that the project reads
    # or that the simulator reproduces: a query naming anything else reads nothing.
    exported: frozenset[str] = frozenset()
    # The label the failure counter breaks failures down by (TGI's ``err``), if any.
    failure_label: str | None = None
    # Per-request token counts, for importing a service's history: histograms by base name, or (for
    # an engine that exports only totals) counters.
    prompt_tokens: str | None = None
    output_tokens: str | None = None
    tokens_are_histograms: bool = True
    # Whether ``decode_latency`` averages the first token (the prefill) in with the others.
    decode_latency_includes_first: bool = False
    version: str = ""  # the engine release these names were read from

    @property
    def error_base(self) -> str | None:
        """The error ratio's denominator: arrivals where the engine counts them, else finished requests."""
        return self.requests or self.finished

    def exports(self, series: str) -> bool:
        """Whether ``series`` (a histogram's ``_bucket``/``_sum``/``_count`` included) is exported."""
        if series in self.exported:
            return True
        return any(series.endswith(s) and series[: -len(s)] in self.exported for s in _HISTOGRAM_SUFFIXES)


@dataclass(frozen=True)
class Renamed:
    """Series an engine spelled differently before release ``before`` (a ``(major, minor, patch)``).

    ``names`` maps ``EngineMetrics`` fields to the older name; ``source`` says where it was read.
    """

    before: tuple[int, int, int]
    names: Mapping[str, str]
    source: str


_TAG_VERSION: Final = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+))?(?:[.+-].*)?$")


def image_version(image: str) -> tuple[int, int, int] | None:
    """The release an image tag names (``vllm/vllm-openai:v0.10.2`` -> ``(0, 10, 2)``), if it names one.

    A digest-pinned, ``latest`` or otherwise unversioned image gives ``None``.
    """
    reference = image.split("@", 1)[0]
    name_tag = reference.rsplit("/", 1)[-1]
    if ":" not in name_tag:
        return None
    match = _TAG_VERSION.match(name_tag.split(":", 1)[1])
    if match is None:
        return None
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch or 0)


@dataclass(frozen=True)
class Launch:
    """What the server process is told, taken from the spec (``None``: leave it to the engine)."""

    model_id: str
    revision: str | None
    port: int
    cache_path: str
    num_shard: int
    quantize: Quantization
    dtype: str | None
    trust_remote_code: bool
    max_concurrent_requests: int | None = None
    max_input_tokens: int | None = None
    max_total_tokens: int | None = None
    max_batch_prefill_tokens: int | None = None
    max_batch_total_tokens: int | None = None
    extra_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class Command:
    """The server container's command (``None``: the image's entrypoint), args and literal env."""

    command: tuple[str, ...] | None
    args: tuple[str, ...]
    env: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class ServedMetric:
    """One of the adapter's built-in external metrics: its API name and the series it sums (or,
    with ``query``, the whole query template)."""

    name: str
    series: str
    description: str
    query: str | None = None


def external_metric_name(series: str) -> str:
    """The external metric name of a series: ``:`` is not allowed in the API path segment's style."""
    return series.replace(":", "_")


@dataclass(frozen=True)
class Engine:
    """Everything that differs between inference servers."""

    kind: EngineKind
    image: str  # pinned to a tag so a node pulling later gets the server the spec was tested with
    port: int
    health_path: str
    metrics_path: str
    quantizations: frozenset[Quantization]
    metrics: EngineMetrics
    queue_description: str  # the adapter's built-in queue definition
    batch_description: str | None  # None: no built-in batch-size definition, the spec must name one
    # Spec fields (snake_case) the engine has no setting for.
    unsupported_fields: tuple[str, ...]
    # Environment variables the renderer sets itself (or that alias them); user-supplied env may not
    # shadow them, because a silently overridden MODEL_ID or NUM_SHARD would make the pod disagree
    # with the spec.
    reserved_env: frozenset[str]
    launch: Callable[[Launch], Command]
    # Older spellings, newest first: the names of releases before each ``Renamed.before``.
    renamed: tuple[Renamed, ...] = ()

    def metrics_for(self, image: str | None) -> EngineMetrics:
        """The series names of the release ``image`` runs (the pinned one when its tag names none)."""
        version = None if image is None else image_version(image)
        metrics = self.metrics
        if version is None:
            return metrics
        for rename in self.renamed:
            if version < rename.before:
                current = {field: getattr(metrics, field) for field in rename.names}
                exported = (metrics.exported - set(current.values())) | set(rename.names.values())
                names: dict[str, object] = dict(rename.names)
                metrics = dataclasses.replace(metrics, **names, exported=frozenset(exported))  # type: ignore[arg-type]
        return metrics

    @property
    def queue_metric(self) -> str:
        """External metric name the HPA scales on by default."""
        return external_metric_name(self.metrics.queue_size)

    @property
    def batch_metric(self) -> str | None:
        """Default external metric name of the batch-size signal (None: the spec must name one)."""
        if self.batch_description is None or self.metrics.running is None:
            return None
        return external_metric_name(self.metrics.running)

    @property
    def demand_metric(self) -> str:
        """External metric name of the demand signal (the default scaling signal)."""
        return f"{self.kind.value}_request_demand"

    @property
    def held_demand_metric(self) -> str:
        """External metric name of the demand signal of a service behind the activator (scale to
        zero): demand plus the requests the activator holds."""
        return f"{self.kind.value}_request_demand_with_held"

    @property
    def counters(self) -> EngineCounters:
        """The series the demand signal is computed from: an arrival counter where the engine has
        one (TGI), else finished requests plus the change of requests in flight."""
        if self.metrics.requests is not None:
            return EngineCounters(queue=self.metrics.queue_size, arrivals=self.metrics.requests)
        return EngineCounters(
            queue=self.metrics.queue_size, finished=self.metrics.finished, running=self.metrics.running
        )

    @property
    def served_metrics(self) -> tuple[ServedMetric, ...]:
        """The adapter's built-in definitions for this engine: queue, batch size if any, demand."""
        served = [ServedMetric(self.queue_metric, self.metrics.queue_size, self.queue_description)]
        running = self.metrics.running
        if self.batch_description is not None and running is not None:
            served.append(ServedMetric(external_metric_name(running), running, self.batch_description))
        demand = DEFAULT_DEMAND
        served.append(
            ServedMetric(
                self.demand_metric,
                self.metrics.queue_size,
                f"Requests/s the service must serve: arrival rate over {demand.rate_window_s} s plus "
                f"the queue drained over {demand.drain_s} s.",
                query=demand.promql(self.counters),
            )
        )
        served.append(
            ServedMetric(
                self.held_demand_metric,
                self.metrics.queue_size,
                "The demand signal of a service that scales to zero: demand (zero while the activator "
                f"sees no ready replica), plus the requests the activator holds drained over "
                f"{demand.drain_s} s, plus a keep-alive of 0.001 requests/s while the idle window runs.",
                query=demand.promql_with_held(self.counters),
            )
        )
        return tuple(served)


def _quantize_arg(launch: Launch) -> str | None:
    return None if launch.quantize is Quantization.NONE else launch.quantize.value


def _tgi(launch: Launch) -> Command:
    # TGI's launcher is configured through the environment; its args are only the spec's extras.
    env: list[tuple[str, object]] = [("MODEL_ID", launch.model_id)]
    if launch.revision is not None:
        env.append(("REVISION", launch.revision))
    # The container runtime sets HOSTNAME to the pod name and TGI's launcher reads HOSTNAME as its
    # listen address, which would bind the pod IP only (breaking `kubectl port-forward`).
    env.append(("HOSTNAME", "0.0.0.0"))  # noqa: S104 - the server must accept pod traffic
    env.append(("PORT", launch.port))
    env.append(("HUGGINGFACE_HUB_CACHE", launch.cache_path))
    env.append(("NUM_SHARD", launch.num_shard))
    optional: tuple[tuple[str, object | None], ...] = (
        ("QUANTIZE", _quantize_arg(launch)),
        ("DTYPE", launch.dtype),
        ("TRUST_REMOTE_CODE", "true" if launch.trust_remote_code else None),
        ("MAX_CONCURRENT_REQUESTS", launch.max_concurrent_requests),
        ("MAX_INPUT_TOKENS", launch.max_input_tokens),
        ("MAX_TOTAL_TOKENS", launch.max_total_tokens),
        ("MAX_BATCH_PREFILL_TOKENS", launch.max_batch_prefill_tokens),
        ("MAX_BATCH_TOTAL_TOKENS", launch.max_batch_total_tokens),
    )
    env.extend((name, value) for name, value in optional if value is not None)
    env.append(("JSON_OUTPUT", "true"))  # one JSON object per log line for log pipelines
    return Command(None, launch.extra_args, tuple((name, str(value)) for name, value in env))


def _python_server(
    module: str, flags: Callable[[Launch], tuple[tuple[str, object | None], ...]], *trailing: str
) -> Callable[[Launch], Command]:
    """A server started as ``python3 -m module`` with flags, reading the cache path from HF_HUB_CACHE."""

    def launch(settings: Launch) -> Command:
        args: list[str] = []
        for name, value in flags(settings):
            if value is not None:
                args.extend([name, str(value)])
        args.extend(trailing)
        if settings.trust_remote_code:
            args.append("--trust-remote-code")
        args.extend(settings.extra_args)
        return Command(("python3", "-m", module), tuple(args), (("HF_HUB_CACHE", settings.cache_path),))

    return launch


def _vllm_flags(launch: Launch) -> tuple[tuple[str, object | None], ...]:
    return (
        ("--model", launch.model_id),
        ("--revision", launch.revision),
        ("--host", "0.0.0.0"),  # noqa: S104 - the server must accept pod traffic
        ("--port", launch.port),
        ("--tensor-parallel-size", launch.num_shard),
        ("--quantization", _quantize_arg(launch)),
        ("--dtype", launch.dtype),
        ("--max-model-len", launch.max_total_tokens),
        ("--max-num-batched-tokens", launch.max_batch_prefill_tokens),
    )


def _sglang_flags(launch: Launch) -> tuple[tuple[str, object | None], ...]:
    return (
        ("--model-path", launch.model_id),
        ("--revision", launch.revision),
        ("--host", "0.0.0.0"),  # noqa: S104 - the server must accept pod traffic
        ("--port", launch.port),
        ("--tp", launch.num_shard),
        ("--quantization", _quantize_arg(launch)),
        ("--dtype", launch.dtype),
        ("--context-length", launch.max_total_tokens),
        ("--max-prefill-tokens", launch.max_batch_prefill_tokens),
        ("--max-total-tokens", launch.max_batch_total_tokens),
    )


_COMMON_QUANT: Final = frozenset(
    {Quantization.NONE, Quantization.AWQ, Quantization.GPTQ, Quantization.FP8, Quantization.BITSANDBYTES}
)
_TGI_ONLY: Final = ("max_concurrent_requests", "max_input_tokens", "max_input_length")

ENGINES: Final[Mapping[EngineKind, Engine]] = {
    EngineKind.TGI: Engine(
        kind=EngineKind.TGI,
        image="ghcr.io/huggingface/text-generation-inference:3.3.5",
        port=8080,
        health_path="/health",
        metrics_path="/metrics",
        quantizations=frozenset(Quantization),
        # TGI v3.3.5 router/src/server.rs (docs/source/reference/metrics.md): the Rust exporter adds
        # neither ``_total`` nor ``_seconds``.
        metrics=EngineMetrics(
            engine="tgi",
            version="3.3.5",
            queue_size="tgi_queue_size",
            running="tgi_batch_current_size",
            request_duration="tgi_request_duration",
            queue_duration="tgi_request_queue_duration",
            decode_latency="tgi_request_mean_time_per_token_duration",
            requests="tgi_request_count",
            finished=None,
            successes=Counted("tgi_request_success"),
            failures=Counted("tgi_request_failure"),
            failure_label="err",
            generated_tokens="tgi_request_generated_tokens_sum",
            prompt_tokens="tgi_request_input_length",
            output_tokens="tgi_request_generated_tokens",
            decode_latency_includes_first=True,
            exported=frozenset(
                {
                    "tgi_request_count",
                    "tgi_request_success",
                    "tgi_request_failure",
                    "tgi_request_duration",
                    "tgi_request_validation_duration",
                    "tgi_request_queue_duration",
                    "tgi_request_inference_duration",
                    "tgi_request_mean_time_per_token_duration",
                    "tgi_request_generated_tokens",
                    "tgi_request_input_length",
                    "tgi_request_max_new_tokens",
                    "tgi_batch_inference_count",
                    "tgi_batch_inference_success",
                    "tgi_batch_inference_duration",
                    "tgi_batch_forward_duration",
                    "tgi_batch_next_size",
                    "tgi_queue_size",
                    "tgi_batch_current_size",
                    "tgi_batch_current_max_tokens",
                }
            ),
        ),
        queue_description=(
            "Requests waiting in Text Generation Inference queues, summed over the selected pods."
        ),
        batch_description="Requests in the current TGI batches, summed over the selected pods.",
        unsupported_fields=(),
        reserved_env=frozenset(
            {
                "MODEL_ID",
                "REVISION",
                "PORT",
                "HOSTNAME",
                TOKEN_ENV,
                "HUGGINGFACE_HUB_CACHE",
                "NUM_SHARD",
                "QUANTIZE",
                "DTYPE",
                "TRUST_REMOTE_CODE",
                "MAX_CONCURRENT_REQUESTS",
                "MAX_INPUT_TOKENS",
                "MAX_INPUT_LENGTH",  # TGI's older name of MAX_INPUT_TOKENS
                "MAX_TOTAL_TOKENS",
                "MAX_BATCH_PREFILL_TOKENS",
                "MAX_BATCH_TOTAL_TOKENS",
                "JSON_OUTPUT",
            }
        ),
        launch=_tgi,
    ),
    EngineKind.VLLM: Engine(
        kind=EngineKind.VLLM,
        image="vllm/vllm-openai:v0.11.0",
        port=8000,
        health_path="/health",
        metrics_path="/metrics",
        quantizations=_COMMON_QUANT,
        # vLLM 0.11.0 vllm/v1/metrics/loggers.py (PrometheusStatLogger), every series labelled
        # model_name and engine (the engine core's index); prometheus_client adds ``_total``.
        metrics=EngineMetrics(
            engine="vllm",
            version="0.11.0",
            queue_size="vllm:num_requests_waiting",
            running="vllm:num_requests_running",
            request_duration="vllm:e2e_request_latency_seconds",
            queue_duration="vllm:request_queue_time_seconds",
            # 0.11.0 also exports vllm:time_per_output_token_seconds, deprecated there and hidden from
            # 0.12 on; vllm:inter_token_latency_seconds records the same values in the same buckets.
            decode_latency="vllm:inter_token_latency_seconds",
            requests=None,
            # One child per finished_reason (stop, length, abort), all created at start-up.
            finished="vllm:request_success_total",
            successes=Counted("vllm:request_success_total", 'finished_reason!="abort"'),
            failures=Counted("vllm:request_success_total", 'finished_reason="abort"'),
            generated_tokens="vllm:generation_tokens_total",
            prompt_tokens="vllm:request_prompt_tokens",
            output_tokens="vllm:request_generation_tokens",
            exported=frozenset(
                {
                    "vllm:num_requests_running",
                    "vllm:num_requests_waiting",
                    "vllm:kv_cache_usage_perc",
                    "vllm:prefix_cache_queries_total",
                    "vllm:prefix_cache_hits_total",
                    "vllm:num_preemptions_total",
                    "vllm:prompt_tokens_total",
                    "vllm:generation_tokens_total",
                    "vllm:request_success_total",
                    "vllm:request_prompt_tokens",
                    "vllm:request_generation_tokens",
                    "vllm:iteration_tokens_total",
                    "vllm:request_max_num_generation_tokens",
                    "vllm:request_params_n",
                    "vllm:request_params_max_tokens",
                    "vllm:time_to_first_token_seconds",
                    "vllm:time_per_output_token_seconds",
                    "vllm:inter_token_latency_seconds",
                    "vllm:request_time_per_output_token_seconds",
                    "vllm:e2e_request_latency_seconds",
                    "vllm:request_queue_time_seconds",
                    "vllm:request_inference_time_seconds",
                    "vllm:request_prefill_time_seconds",
                    "vllm:request_decode_time_seconds",
                    # The API server's prometheus-fastapi-instrumentator
                    # (vllm/entrypoints/openai/api_server.py mount_metrics): handler, method, status.
                    "http_requests_total",
                }
            ),
        ),
        queue_description="Requests waiting in vLLM schedulers, summed over the selected pods.",
        batch_description=None,
        unsupported_fields=(*_TGI_ONLY, "max_batch_total_tokens"),
        reserved_env=frozenset({TOKEN_ENV, "HF_HUB_CACHE"}),
        launch=_python_server("vllm.entrypoints.openai.api_server", _vllm_flags),
        renamed=(
            # vLLM 0.11.0 vllm/v1/metrics/loggers.py: "Deprecated in 0.11 - Renamed as
            # vllm:inter_token_latency_seconds"; earlier releases export only the old name.
            Renamed(
                (0, 11, 0),
                {"decode_latency": "vllm:time_per_output_token_seconds"},
                "vllm 0.11.0 vllm/v1/metrics/loggers.py",
            ),
        ),
    ),
    EngineKind.SGLANG: Engine(
        kind=EngineKind.SGLANG,
        image="lmsysorg/sglang:v0.5.9",
        port=30000,
        health_path="/health",
        metrics_path="/metrics",
        quantizations=_COMMON_QUANT,
        # SGLang 0.5.9 python/sglang/srt/metrics/collector.py. The scheduler's series are labelled
        # model_name, engine_type, tp_rank, pp_rank and moe_ep_rank; the tokenizer manager's
        # (tokens, requests, latencies) model_name only, and appear with their first observation.
        metrics=EngineMetrics(
            engine="sglang",
            version="0.5.9",
            queue_size="sglang:num_queue_reqs",
            running="sglang:num_running_reqs",
            request_duration="sglang:e2e_request_latency_seconds",
            queue_duration="sglang:queue_time_seconds",
            decode_latency="sglang:inter_token_latency_seconds",
            requests=None,
            # Incremented for every finished request, aborted ones included (tokenizer_manager.py
            # collect_metrics -> observe_one_finished_request).
            finished="sglang:num_requests_total",
            successes=Counted(
                "sglang:num_requests_total", minus=Counted("sglang:num_aborted_requests_total")
            ),
            failures=Counted("sglang:num_aborted_requests_total"),
            generated_tokens="sglang:generation_tokens_total",
            prompt_tokens="sglang:prompt_tokens_total",
            output_tokens="sglang:generation_tokens_total",
            tokens_are_histograms=False,
            exported=frozenset(
                {
                    "sglang:num_running_reqs",
                    "sglang:num_used_tokens",
                    "sglang:token_usage",
                    "sglang:gen_throughput",
                    "sglang:num_queue_reqs",
                    "sglang:num_grammar_queue_reqs",
                    "sglang:cache_hit_rate",
                    "sglang:max_total_num_tokens",
                    "sglang:queue_time_seconds",
                    "sglang:prompt_tokens_total",
                    "sglang:generation_tokens_total",
                    "sglang:cached_tokens_total",
                    "sglang:num_requests_total",
                    "sglang:num_aborted_requests_total",
                    "sglang:time_to_first_token_seconds",
                    "sglang:inter_token_latency_seconds",
                    "sglang:e2e_request_latency_seconds",
                    "sglang:num_retractions",
                }
            ),
        ),
        queue_description="Requests waiting in SGLang queues, summed over the selected pods.",
        batch_description=None,
        unsupported_fields=_TGI_ONLY,
        reserved_env=frozenset({TOKEN_ENV, "HF_HUB_CACHE"}),
        # SGLang exports no Prometheus metrics without --enable-metrics.
        launch=_python_server("sglang.launch_server", _sglang_flags, "--enable-metrics"),
        renamed=(
            # sglang 0.4.3 exports only sglang:time_per_output_token_seconds, 0.4.4 both names,
            # 0.4.5 on only sglang:inter_token_latency_seconds (collector.py of each wheel).
            Renamed(
                (0, 4, 4),
                {"decode_latency": "sglang:time_per_output_token_seconds"},
                "sglang 0.4.3-0.4.5 python/sglang/srt/metrics/collector.py",
            ),
        ),
    ),
}


def engine_metrics(engine: str, image: str | None = None) -> EngineMetrics:
    """The metric table of ``engine`` (of the release ``image`` runs, if given); raises
    ``ValueError`` naming the engine if unknown."""
    for known, entry in ENGINES.items():
        if known.value == engine:
            return entry.metrics if image is None else entry.metrics_for(image)
    raise ValueError(f"unknown engine {engine!r}; expected one of {', '.join(ENGINES)}")
