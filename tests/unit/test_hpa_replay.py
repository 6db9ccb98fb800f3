"""The replay driver, its traces and its reports."""

from __future__ import annotations

import csv
import io
import itertools
import math
from dataclasses import replace

import pytest

from tgi_autoscaler.config.service import AutoscalingSpec
from tgi_autoscaler.hpa.replay import ReplayConfig, ReplayError, replay
from tgi_autoscaler.hpa.report import format_csv, format_markdown, format_summary, format_table, summarize
from tgi_autoscaler.hpa.spec_input import hpa_spec_from_autoscaling
from tgi_autoscaler.hpa.trace import RateStep, Trace, TraceError, TraceShape, build_trace, parse_trace_csv
from tgi_autoscaler.hpa.types import Behavior, HpaSpec, PolicyType, Seconds

pytestmark = pytest.mark.unit

SPEC = HpaSpec(min_replicas=1, max_replicas=10, target_average_value=10)
CONFIG = ReplayConfig(capacity_per_replica=1.0, pod_start_delay=300.0, sync_period=15.0)
SPIKE = build_trace("spike", TraceShape(base_rate=0.8, factor=3.0, start=300, duration=900, end=5400))


def test_load_within_capacity_never_forms_a_queue_or_scales() -> None:
    trace = build_trace("steady", TraceShape(base_rate=0.9, end=1800))
    result = replay(trace, SPEC, CONFIG)
    assert {s.queue for s in result.samples} == {0.0}
    assert result.rescales == ()
    assert {s.current for s in result.samples} == {1}


def test_the_queue_follows_the_fluid_model_of_ready_replicas() -> None:
    result = replay(SPIKE, SPEC, CONFIG)
    for before, after in zip(result.samples, result.samples[1:], strict=False):
        served = before.ready * CONFIG.capacity_per_replica
        expected = max(0.0, before.queue + (before.arrival_rate - served) * CONFIG.tick)
        assert after.queue == pytest.approx(expected)


def test_new_pods_serve_only_after_the_start_delay() -> None:
    result = replay(SPIKE, SPEC, CONFIG)
    first_up = result.rescales[0]
    assert first_up.desired_replicas > first_up.current_replicas
    by_time = {s.time: s for s in result.samples}
    ready_at = first_up.time + CONFIG.pod_start_delay
    assert by_time[Seconds(ready_at - 1)].ready == first_up.current_replicas
    assert by_time[Seconds(ready_at)].ready == first_up.desired_replicas


def test_the_hpa_sees_the_queue_of_metric_lag_seconds_ago() -> None:
    lagged = replace(CONFIG, metric_lag=30.0)
    result = replay(SPIKE, SPEC, lagged)
    queue_at = {s.time: s.queue for s in result.samples}
    for decision in result.decisions:
        seen = decision.proposals[0].usage / 1000
        assert seen == pytest.approx(queue_at.get(Seconds(decision.time - 30.0), 0.0), abs=0.001)


def test_project_defaults_scale_down_one_pod_per_policy_period() -> None:
    defaults = AutoscalingSpec()
    spec = replace(hpa_spec_from_autoscaling(defaults), max_replicas=10)
    result = replay(SPIKE, spec, CONFIG)
    (policy,) = defaults.scale_down.policies
    assert policy.type == PolicyType.PODS.value
    downs = [d for d in result.rescales if d.desired_replicas < d.current_replicas]
    assert len(downs) >= 3
    assert all(d.current_replicas - d.desired_replicas <= policy.value for d in downs)
    gaps = [b.time - a.time for a, b in itertools.pairwise(downs)]
    assert min(gaps) >= policy.period_seconds


def test_kubernetes_default_behavior_drops_capacity_during_a_long_burst() -> None:
    # Once the queue is empty its proposal is minReplicas, and the API default scale-down (100%
    # per 15 s after 5 minutes) acts on it while the burst still needs 3 replicas.
    spec = replace(SPEC, behavior=Behavior())
    result = replay(SPIKE, spec, CONFIG)
    burst = [s for s in result.samples if s.arrival_rate > 2]
    assert min(s.current for s in burst[len(burst) // 2 :]) == 1
    project = replay(SPIKE, replace(hpa_spec_from_autoscaling(), max_replicas=10), CONFIG)
    assert summarize(project).rescales < summarize(result).rescales


def test_starting_replicas_default_to_min_and_can_be_set() -> None:
    spec = replace(SPEC, min_replicas=2)
    assert replay(SPIKE, spec, CONFIG).samples[0].current == 2
    result = replay(SPIKE, spec, replace(CONFIG, initial_replicas=5))
    assert (result.samples[0].current, result.samples[0].ready) == (5, 5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"capacity_per_replica": 0}, "capacity_per_replica"),
        ({"sync_period": 15.5}, "sync_period"),
        ({"metric_lag": 0.5}, "metric_lag"),
        ({"tick": 0}, "tick"),
        ({"pod_start_delay": -1}, "pod_start_delay"),
        ({"initial_replicas": -1}, "initial_replicas"),
    ],
)
def test_replay_config_rejects_parameters_it_cannot_simulate(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ReplayError, match=message):
        ReplayConfig(**kwargs)  # type: ignore[arg-type]


def test_summary_of_the_spike_matches_its_samples() -> None:
    result = replay(SPIKE, SPEC, CONFIG)
    summary = summarize(result)
    assert (summary.load_rise_at, summary.load_fall_at) == (300.0, 1200.0)
    assert summary.needed_replicas == 3  # ceil(2.4 / 1.0)
    assert summary.peak_replicas == max(s.current for s in result.samples) == SPEC.max_replicas
    assert summary.peak_queue == max(s.queue for s in result.samples)
    assert summary.peak_ready_at is not None
    assert summary.peak_ready_at - summary.peak_replicas_at == CONFIG.pod_start_delay
    assert summary.back_to_min_at is not None
    assert result.samples[-1].current == SPEC.min_replicas
    arrivals = sum(s.arrival_rate for s in result.samples[:-1])
    assert summary.mean_wait_seconds == pytest.approx(sum(s.queue for s in result.samples[:-1]) / arrivals)
    lines = format_summary(summary, result)
    assert any("peak at 10 (maxReplicas)" in line for line in lines)


def test_table_lists_every_rescale_and_periodic_rows() -> None:
    result = replay(SPIKE, SPEC, CONFIG)
    table = format_table(result, every=600)
    lines = table.splitlines()
    assert lines[0].split() == ["time", "rate", "queue", "desired", "current", "ready", "rescale"]
    changes = [line for line in lines if "->" in line]
    assert len(changes) == len(result.rescales)
    assert any(line.lstrip().startswith("10:00") for line in lines)
    markdown = format_markdown(result, every=600, until=1200)
    assert markdown.splitlines()[1].startswith("|---:")
    assert "| 20:00 |" in markdown
    assert "| 30:00 |" not in markdown


def test_csv_has_one_row_per_tick_or_interval() -> None:
    result = replay(SPIKE, SPEC, CONFIG)
    rows = list(csv.reader(io.StringIO(format_csv(result))))
    assert rows[0] == ["time_s", "arrival_rate", "queue", "desired", "current", "ready"]
    assert len(rows) - 1 == len(result.samples)
    sparse = list(csv.reader(io.StringIO(format_csv(result, every=60))))
    assert len(sparse) - 1 == math.ceil(len(result.samples) / 60)


@pytest.mark.parametrize("name", ["spike", "ramp", "steady", "bursts"])
def test_built_in_traces_start_at_the_base_rate(name: str) -> None:
    shape = TraceShape(base_rate=2.0, factor=4.0, start=120, duration=600, end=1800)
    trace = build_trace(name, shape)
    assert trace.rate_at(0) == 2.0
    assert max(step.rate for step in trace.steps) == pytest.approx(2.0 if name == "steady" else 8.0)
    assert trace.rate_at(1799) == 2.0


def test_unknown_trace_names_list_the_known_ones() -> None:
    with pytest.raises(TraceError, match="spike, ramp, steady, bursts"):
        build_trace("sawtooth", TraceShape())


def test_trace_csv_with_header_and_comments() -> None:
    trace = parse_trace_csv("time_s,rate\n# warm-up\n0,1.5\n60,3\n\n120,0.5\n", name="t.csv")
    assert [(float(s.start), s.rate) for s in trace.steps] == [(0, 1.5), (60, 3), (120, 0.5)]
    assert float(trace.end) == 180
    assert trace.rate_at(90) == 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0,1\n60,x\n", "line 2"),
        ("0,1,2\n", "line 1"),
        ("10,1\n", "must start at 0"),
        ("0,1\n0,2\n", "increase strictly"),
        ("0,-1\n", ">= 0"),
        ("time,rate\n", "no rate rows"),
    ],
)
def test_bad_trace_csv_names_the_problem(text: str, message: str) -> None:
    with pytest.raises(TraceError, match=message):
        parse_trace_csv(text, name="t.csv")


def test_trace_end_must_follow_the_last_step() -> None:
    with pytest.raises(TraceError, match="end"):
        Trace("x", (RateStep(Seconds(0.0), 1.0), RateStep(Seconds(10.0), 2.0)), Seconds(10.0))
