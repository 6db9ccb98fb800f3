"""The engine table: each engine's entry is the only place its facts are written, and all of them are used."""

from __future__ import annotations

import dataclasses
import re
import textwrap
from pathlib import Path

import pytest

from tgi_autoscaler.config.docs import reference_markdown
from tgi_autoscaler.config.metrics import DEFAULT_METRIC_DEFINITIONS
from tgi_autoscaler.config.service import parse_service_yaml
from tgi_autoscaler.engines import (
    ENGINES,
    TOKEN_ENV,
    Counted,
    Engine,
    EngineKind,
    Launch,
    Quantization,
    ServedMetric,
    engine_metrics,
    image_version,
)
from tgi_autoscaler.render import RenderOptions, ServiceSource, render_service
from tgi_autoscaler.render.observability_docs import alerts_and_dashboards_markdown
from tgi_autoscaler.render.workload import container_args, container_env
from tgi_autoscaler_dev.sim.metrics import ENGINES as SIM_ENGINES

pytestmark = pytest.mark.unit

PACKAGE = Path(__file__).resolve().parents[2] / "tgi_autoscaler"

# Everything a launch can set, whether or not one valid spec can set it all at once.
_EVERYTHING = Launch(
    model_id="m",
    revision="r",
    port=8080,
    cache_path="/data",
    num_shard=2,
    quantize=Quantization.AWQ,
    dtype="float16",
    trust_remote_code=True,
    max_concurrent_requests=1,
    max_input_tokens=2,
    max_total_tokens=3,
    max_batch_prefill_tokens=4,
    max_batch_total_tokens=5,
    extra_args=("--extra",),
)
# Names reserved without the renderer setting them: older spellings the engine still reads.
_ALIASES = {EngineKind.TGI: {"MAX_INPUT_LENGTH"}}


def test_every_engine_kind_has_exactly_one_entry_under_its_own_kind() -> None:
    assert list(ENGINES) == list(EngineKind)
    assert all(entry.kind is kind for kind, entry in ENGINES.items())


@pytest.mark.parametrize("kind", list(EngineKind))
def test_reserved_env_is_exactly_what_the_renderer_sets_plus_known_aliases(kind: EngineKind) -> None:
    entry = ENGINES[kind]
    set_by_renderer = {name for name, _ in entry.launch(_EVERYTHING).env} | {TOKEN_ENV}
    assert entry.reserved_env == set_by_renderer | _ALIASES.get(kind, set())
    assert not _ALIASES.get(kind, set()) & set_by_renderer


@pytest.mark.parametrize("kind", list(EngineKind))
def test_a_rendered_spec_sets_only_reserved_env_before_the_users(kind: EngineKind) -> None:
    spec = parse_service_yaml(
        textwrap.dedent(
            f"""
            model: {{id: m, revision: r, trustRemoteCode: true, hfTokenSecret: {{name: s, key: k}}}}
            engine:
              kind: {kind.value}
              maxTotalTokens: 4096
              maxBatchPrefillTokens: 4096
              env: [{{name: USER_VAR, value: x}}]
            """
        ),
        source="test",
    )
    names = [item["name"] for item in container_env(spec)]
    assert names[-1] == "USER_VAR"
    assert set(names[:-1]) <= ENGINES[kind].reserved_env


@pytest.mark.parametrize("kind", list(EngineKind))
def test_an_entry_is_all_the_project_reads_about_its_engine(kind: EngineKind) -> None:
    entry = ENGINES[kind]
    spec = parse_service_yaml(f"model: {{id: m}}\nengine: {{kind: {kind.value}}}", source="test")
    assert spec.engine.effective_image == entry.image
    assert spec.engine.effective_port == entry.port
    assert spec.queue_metric == entry.queue_metric

    objects = render_service(ServiceSource(name="llm", namespace="ns", spec=spec), RenderOptions())
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == entry.image
    assert container["readinessProbe"]["httpGet"]["path"] == entry.health_path
    launch = entry.launch(
        Launch(
            model_id="m",
            revision=None,
            port=entry.port,
            cache_path="/data",
            num_shard=1,
            quantize=Quantization.NONE,
            dtype=None,
            trust_remote_code=False,
        )
    )
    command = None if launch.command is None else list(launch.command)
    assert container_args(spec) == (command, list(launch.args))
    assert (container.get("command"), container.get("args", [])) == (command, list(launch.args))
    assert [(item["name"], item["value"]) for item in container["env"]] == list(launch.env)
    rule = str([o for o in objects if o["kind"] == "PrometheusRule"])
    assert entry.metrics.queue_size in rule

    served = {definition.name: definition for definition in DEFAULT_METRIC_DEFINITIONS}
    for metric in entry.served_metrics:
        assert served[metric.name].query == (metric.query or f"sum({metric.series}{{$matchers}})")
    assert f"| `{kind.value}` | `{entry.image}` | {entry.port} |" in reference_markdown()
    assert kind.value in alerts_and_dashboards_markdown()
    assert kind.value in SIM_ENGINES
    assert engine_metrics(kind.value) is entry.metrics


def test_metric_names_and_built_in_definitions_derive_from_the_entry() -> None:
    vllm = ENGINES[EngineKind.VLLM]
    assert vllm.queue_metric == "vllm_num_requests_waiting"
    assert vllm.batch_metric is None
    assert ENGINES[EngineKind.TGI].batch_metric == "tgi_batch_current_size"
    # An engine whose entry offers a batch-size definition gets one, named after its series.
    with_batch = dataclasses.replace(vllm, batch_description="Running requests.")
    assert with_batch.batch_metric == "vllm_num_requests_running"
    assert with_batch.served_metrics[1] == ServedMetric(
        "vllm_num_requests_running", "vllm:num_requests_running", "Running requests."
    )
    assert [d.name for d in DEFAULT_METRIC_DEFINITIONS] == [
        metric.name for entry in ENGINES.values() for metric in entry.served_metrics
    ]


def test_unknown_engine_names_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="unknown engine 'llamacpp'; expected one of tgi, vllm, sglang"):
        engine_metrics("llamacpp")


def _facts(entry: Engine) -> list[str]:
    fields = [getattr(entry.metrics, f.name) for f in dataclasses.fields(entry.metrics)][1:]
    series = [value for value in fields if isinstance(value, str)]
    series += [name for value in fields if isinstance(value, Counted) for name in value.names]
    names = [entry.image, *series]
    return [name for name in names if ":" in name or "/" in name]


def test_no_module_but_the_engine_table_spells_an_engines_image_or_series() -> None:
    facts = [fact for entry in ENGINES.values() for fact in _facts(entry)]
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "engines.py":
            continue
        # String literals only: prose in docstrings and comments may name a series.
        literals = re.findall(r"\"([^\"\n]*)\"", path.read_text(encoding="utf-8"))
        offenders += [f"{path.relative_to(PACKAGE)}: {fact}" for fact in facts if fact in literals]
    assert offenders == []


@pytest.mark.parametrize(
    ("image", "version"),
    [
        ("vllm/vllm-openai:v0.11.0", (0, 11, 0)),
        ("vllm/vllm-openai:v0.10.2", (0, 10, 2)),
        ("lmsysorg/sglang:v0.4.3.post2-cu124", (0, 4, 3)),
        ("registry.local:5000/mirror/sglang:0.5", (0, 5, 0)),
        ("ghcr.io/huggingface/text-generation-inference:3.3.5", (3, 3, 5)),
        ("vllm/vllm-openai:latest", None),
        ("vllm/vllm-openai", None),
        ("registry.local:5000/vllm", None),
        ("vllm/vllm-openai@sha256:" + "a" * 64, None),
    ],
)
def test_the_release_an_image_runs_is_read_from_its_tag(
    image: str, version: tuple[int, int, int] | None
) -> None:
    assert image_version(image) == version


def test_a_renamed_series_follows_the_image_tag_and_the_pinned_names_are_the_default() -> None:
    vllm, sglang = ENGINES[EngineKind.VLLM], ENGINES[EngineKind.SGLANG]
    assert vllm.metrics_for(vllm.image) is vllm.metrics
    assert vllm.metrics_for("vllm/vllm-openai:latest") is vllm.metrics
    older = vllm.metrics_for("vllm/vllm-openai:v0.10.2")
    assert older.decode_latency == "vllm:time_per_output_token_seconds"
    assert not older.exports("vllm:inter_token_latency_seconds_bucket")
    assert older.exports("vllm:time_per_output_token_seconds_bucket")
    assert (
        sglang.metrics_for("lmsysorg/sglang:v0.4.3").decode_latency == "sglang:time_per_output_token_seconds"
    )
    assert sglang.metrics_for("lmsysorg/sglang:v0.4.4").decode_latency == "sglang:inter_token_latency_seconds"
    assert engine_metrics("vllm", "vllm/vllm-openai:v0.9.0").decode_latency == older.decode_latency


@pytest.mark.parametrize("kind", list(EngineKind))
def test_every_series_an_entry_names_is_in_its_exported_list(kind: EngineKind) -> None:
    m = ENGINES[kind].metrics
    fields = [getattr(m, f.name) for f in dataclasses.fields(m)]
    names = [v for v in fields if isinstance(v, str) and v != m.engine and v != m.version]
    names += [name for v in fields if isinstance(v, Counted) for name in v.names]
    names = [n for n in names if n != m.failure_label]
    assert [n for n in names if not m.exports(n)] == []
