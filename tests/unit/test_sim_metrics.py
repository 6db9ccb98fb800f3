"""The simulator's /metrics exposition: TGI's names and types, per-replica registries."""

from __future__ import annotations

import re

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tgi_autoscaler.engines import engine_metrics
from tgi_autoscaler_dev.sim.metrics import ReplicaCollector, build_registry, render_text
from tgi_autoscaler_dev.sim.model import GenerationRequest, InvalidRequest, ReplicaConfig, ReplicaModel
from tgi_autoscaler_dev.sim.stats import DURATION_BUCKETS, Histogram, linear_buckets

pytestmark = pytest.mark.unit


def busy_model() -> ReplicaModel:
    model = ReplicaModel(ReplicaConfig(max_batch_size=2, max_concurrent_requests=6, token_rate=10.0), now=0.0)
    for _ in range(8):
        model.submit(GenerationRequest(4, 3), 0.0)
    model.submit(InvalidRequest("`inputs` cannot be empty"), 0.0)
    model.poll(0.15)  # first requests are decoding, the rest wait
    return model


def exposition(model: ReplicaModel, engine: str = "tgi") -> str:
    collector = ReplicaCollector(model, engine=engine)
    return render_text(build_registry(collector)).decode()


def test_counters_are_exported_without_a_total_suffix() -> None:
    text = exposition(busy_model())
    assert "_total" not in text
    assert "# TYPE tgi_request_success counter" in text
    assert "# TYPE tgi_request_count counter" in text
    assert re.search(r"^tgi_request_count 9\.0$", text, re.MULTILINE)
    assert re.search(r'^tgi_request_failure\{err="overloaded"\} 3\.0$', text, re.MULTILINE)


def test_gauges_report_the_model_state() -> None:
    model = busy_model()
    text = exposition(model)
    snap = model.snapshot()
    assert snap.queue_size > 0
    assert f"tgi_queue_size {float(snap.queue_size)}" in text
    assert f"tgi_batch_current_size {float(snap.batch_size)}" in text
    assert f"tgi_batch_current_max_tokens {float(snap.batch_max_tokens)}" in text


def test_exposition_parses_and_histograms_use_tgi_buckets() -> None:
    model = busy_model()
    model.poll(5.0)  # let every request finish
    text = exposition(model)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["tgi_queue_size"].type == "gauge"
    assert families["tgi_request_duration"].type == "histogram"
    buckets = [s for s in families["tgi_request_duration"].samples if s.name.endswith("_bucket")]
    assert len(buckets) == len(DURATION_BUCKETS) + 1
    assert buckets[-1].labels["le"] == "+Inf"
    assert float(buckets[0].labels["le"]) == pytest.approx(0.00015)
    batch = families["tgi_batch_inference_duration"]
    assert {s.labels.get("method") for s in batch.samples} == {"prefill", "decode"}


def test_a_fresh_replica_already_exports_zero_counters_and_gauges() -> None:
    text = exposition(ReplicaModel(ReplicaConfig(), now=0.0))
    for line in ("tgi_queue_size 0.0", "tgi_request_count 0.0", "tgi_request_success 0.0"):
        assert line in text.splitlines()


@pytest.mark.parametrize(
    ("engine", "waiting", "running", "labels"),
    [
        ("vllm", "vllm:num_requests_waiting", "vllm:num_requests_running", 'engine="0",model_name="sim"'),
        (
            "sglang",
            "sglang:num_queue_reqs",
            "sglang:num_running_reqs",
            'engine_type="unified",model_name="sim",moe_ep_rank="0",pp_rank="0",tp_rank="0"',
        ),
    ],
)
def test_other_engines_export_their_own_queue_gauges(
    engine: str, waiting: str, running: str, labels: str
) -> None:
    model = busy_model()
    text = exposition(model, engine)
    snap = model.snapshot()
    assert f"{waiting}{{{labels}}} {float(snap.queue_size)}" in text
    assert f"{running}{{{labels}}} {float(snap.batch_size)}" in text
    assert "tgi_" not in text


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_other_engines_export_exactly_the_families_the_engine_table_lists(engine: str) -> None:
    model = ReplicaModel(ReplicaConfig(max_batch_size=2, token_rate=10.0), now=0.0)
    for _ in range(4):
        model.submit(GenerationRequest(input_tokens=5, max_new_tokens=3), now=0.0)
    model.submit(InvalidRequest("empty"), now=0.0)
    model.poll(0.25)
    assert model.cancel(4, now=0.25)
    model.poll(10.0)
    families = {family.name: family for family in text_string_to_metric_families(exposition(model, engine))}
    table = engine_metrics(engine)
    exported = {
        name + ("_total" if f.type == "counter" and not name.endswith("_total") else "")
        for name, f in families.items()
    }
    # Every family the simulator exports is one the engine exports; all the table lists but the
    # families of features the simulated server lacks (cached tokens: no prefix cache).
    assert exported <= table.exported
    assert table.exported - exported <= {"sglang:cached_tokens_total"}


def test_vllm_counts_finished_requests_by_reason_and_sglang_counts_aborts_among_finished() -> None:
    model = ReplicaModel(ReplicaConfig(max_batch_size=2, token_rate=10.0), now=0.0)
    for _ in range(3):
        model.submit(GenerationRequest(input_tokens=5, max_new_tokens=3), now=0.0)
    assert model.cancel(3, now=0.0)  # still queued: its client went away
    model.poll(10.0)
    vllm = exposition(model, "vllm")
    assert 'vllm:request_success_total{engine="0",finished_reason="length",model_name="sim"} 2.0' in vllm
    assert 'vllm:request_success_total{engine="0",finished_reason="abort",model_name="sim"} 1.0' in vllm
    assert 'vllm:request_success_total{engine="0",finished_reason="stop",model_name="sim"} 0.0' in vllm
    sglang = exposition(model, "sglang")
    assert 'sglang:num_requests_total{model_name="sim"} 3.0' in sglang
    assert 'sglang:num_aborted_requests_total{model_name="sim"} 1.0' in sglang
    # Two requests of three tokens: one inter-token latency per token after the first.
    assert 'sglang:inter_token_latency_seconds_count{model_name="sim"} 4.0' in sglang
    assert 'vllm:inter_token_latency_seconds_count{engine="0",model_name="sim"} 4.0' in vllm


def test_vllm_histograms_use_the_engines_buckets() -> None:
    text = exposition(ReplicaModel(ReplicaConfig(max_total_tokens=2048), now=0.0), "vllm")
    prompt = [line for line in text.splitlines() if line.startswith("vllm:request_prompt_tokens_bucket")]
    assert [line.split('le="')[1].split('"')[0] for line in prompt] == [
        "1.0",
        "2.0",
        "5.0",
        "10.0",
        "20.0",
        "50.0",
        "100.0",
        "200.0",
        "500.0",
        "1000.0",
        "2000.0",
        "+Inf",
    ]
    itl = [line for line in text.splitlines() if line.startswith("vllm:inter_token_latency_seconds_bucket")]
    assert len(itl) == 20  # 19 bounds from 0.01 to 80 s, and +Inf


def test_each_replica_has_its_own_registry() -> None:
    busy, idle = busy_model(), ReplicaModel(ReplicaConfig(), now=0.0)
    assert "tgi_request_count 9.0" in exposition(busy)
    assert "tgi_request_count 0.0" in exposition(idle)


def test_unknown_engine_is_rejected() -> None:
    with pytest.raises(ValueError, match="engine"):
        ReplicaCollector(busy_model(), engine="triton")


def test_histogram_buckets_are_cumulative_and_inclusive() -> None:
    hist = Histogram((1.0, 2.0, 5.0))
    for value in (0.5, 1.0, 1.5, 7.0):
        hist.observe(value)
    assert hist.cumulative() == [(1.0, 2), (2.0, 3), (5.0, 3), (float("inf"), 4)]
    assert hist.sum == 10.0


def test_token_buckets_follow_the_routers_linear_layout() -> None:
    buckets = linear_buckets(1024)
    assert len(buckets) == 100
    assert buckets[0] == pytest.approx(10.24)
    assert buckets[-1] == pytest.approx(1024.0)
