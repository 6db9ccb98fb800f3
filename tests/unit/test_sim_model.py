"""The replica queueing model, driven by a fake clock."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tgi_autoscaler_dev.sim.model import (
    Accepted,
    GenerationRequest,
    InvalidRequest,
    Rejected,
    ReplicaConfig,
    ReplicaModel,
    TokenEvent,
)

pytestmark = pytest.mark.unit

SMALL = ReplicaConfig(max_batch_size=2, token_rate=10.0, prefill_time_s=0.1, max_concurrent_requests=50)


def run_until_idle(model: ReplicaModel) -> list[TokenEvent]:
    events: list[TokenEvent] = []
    while (deadline := model.next_deadline()) is not None:
        events.extend(model.poll(deadline))
    return events


def accounted(model: ReplicaModel) -> float:
    stats = model.stats
    return stats.counter("tgi_request_success") + stats.counter_total("tgi_request_failure")


def test_queue_grows_while_arrivals_exceed_capacity() -> None:
    model = ReplicaModel(SMALL, now=0.0)
    # 10 requests/s of 10 tokens against a capacity of about 2 requests/s.
    assert SMALL.capacity_rps(10) < 2.5
    queue_sizes = []
    for i in range(50):
        t = i * 0.1
        model.poll(t)
        assert isinstance(model.submit(GenerationRequest(4, 10), t), Accepted)
        if i % 10 == 9:
            queue_sizes.append(model.snapshot().queue_size)
    assert queue_sizes == sorted(queue_sizes)
    assert queue_sizes[-1] > queue_sizes[0] > 0
    assert model.snapshot().batch_size == SMALL.max_batch_size


def test_queue_drains_once_arrivals_stop_and_every_request_succeeds() -> None:
    model = ReplicaModel(SMALL, now=0.0)
    for i in range(20):
        model.submit(GenerationRequest(4, 10), i * 0.05)
    assert model.snapshot().queue_size > 0
    run_until_idle(model)
    snap = model.snapshot()
    assert (snap.queue_size, snap.batch_size, snap.in_flight, snap.batch_max_tokens) == (0, 0, 0, 0)
    assert model.stats.counter("tgi_request_success") == 20
    assert model.stats.counter("tgi_request_count") == 20


def test_requests_beyond_max_concurrent_are_rejected_as_overloaded() -> None:
    config = ReplicaConfig(max_batch_size=2, max_concurrent_requests=5)
    model = ReplicaModel(config, now=0.0)
    results = [model.submit(GenerationRequest(4, 10), 0.0) for _ in range(8)]
    assert [type(r) for r in results] == [Accepted] * 5 + [Rejected] * 3
    rejected = results[-1]
    assert isinstance(rejected, Rejected)
    assert (rejected.error, rejected.message) == ("overloaded", "Model is overloaded")
    assert model.stats.counter("tgi_request_failure", {"err": "overloaded"}) == 3
    assert model.snapshot().in_flight == 5


def test_a_finished_request_frees_its_permit() -> None:
    config = ReplicaConfig(max_batch_size=1, max_concurrent_requests=1, token_rate=10.0)
    model = ReplicaModel(config, now=0.0)
    assert isinstance(model.submit(GenerationRequest(4, 2), 0.0), Accepted)
    assert isinstance(model.submit(GenerationRequest(4, 2), 0.0), Rejected)
    run_until_idle(model)
    assert isinstance(model.submit(GenerationRequest(4, 2), model.now), Accepted)


def test_count_equals_success_plus_failure_once_everything_is_answered() -> None:
    config = ReplicaConfig(max_batch_size=2, max_concurrent_requests=4)
    model = ReplicaModel(config, now=0.0)
    model.submit(InvalidRequest("`max_new_tokens` must be strictly positive"), 0.0)
    accepted = []
    for _ in range(6):
        result = model.submit(GenerationRequest(3, 5), 0.0)
        if isinstance(result, Accepted):
            accepted.append(result.request_id)
    assert model.cancel(accepted[-1], 0.01)
    run_until_idle(model)
    stats = model.stats
    assert stats.counter("tgi_request_count") == 7
    assert stats.counter("tgi_request_success") == 3
    assert stats.counter("tgi_request_failure", {"err": "overloaded"}) == 2
    assert stats.counter("tgi_request_failure", {"err": "validation"}) == 1
    assert stats.counter("tgi_request_failure", {"err": "dropped"}) == 1
    assert stats.counter("tgi_request_count") == accounted(model)


def test_the_concurrency_permit_is_checked_before_validation_like_tgi() -> None:
    config = ReplicaConfig(max_concurrent_requests=1)
    model = ReplicaModel(config, now=0.0)
    model.submit(GenerationRequest(3, 5), 0.0)
    result = model.submit(InvalidRequest("`inputs` cannot be empty"), 0.0)
    assert isinstance(result, Rejected)
    assert result.error == "overloaded"


def test_validation_failures_are_reported_with_tgi_wording() -> None:
    model = ReplicaModel(SMALL, now=0.0)
    result = model.submit(InvalidRequest("`inputs` cannot be empty"), 0.0)
    assert result == Rejected("validation", "Input validation error: `inputs` cannot be empty")


def test_tokens_arrive_in_order_and_the_last_one_carries_the_timings() -> None:
    model = ReplicaModel(SMALL, now=0.0)
    first = model.submit(GenerationRequest(8, 4), 0.0)
    second = model.submit(GenerationRequest(8, 4), 0.0)
    third = model.submit(GenerationRequest(8, 4), 0.0)  # waits for a batch slot
    assert isinstance(first, Accepted)
    assert isinstance(third, Accepted)
    events = run_until_idle(model)
    for accepted in (first, second, third):
        assert isinstance(accepted, Accepted)
        mine = [e for e in events if e.request_id == accepted.request_id]
        assert [e.index for e in mine] == [1, 2, 3, 4]
        assert [e.last for e in mine] == [False, False, False, True]
        assert [e.at for e in mine] == sorted(e.at for e in mine)
    done = next(e.completion for e in events if e.request_id == third.request_id and e.completion)
    assert done.queue_duration > 0
    assert done.generated_tokens == 4
    assert done.input_tokens == 8
    assert done.total_duration == pytest.approx(done.queue_duration + done.inference_duration)


def test_prefill_takes_prefill_time_and_decode_takes_the_batch_step_time() -> None:
    config = ReplicaConfig(max_batch_size=4, token_rate=10.0, batch_slowdown=0.5, prefill_time_s=0.3)
    model = ReplicaModel(config, now=0.0)
    model.submit(GenerationRequest(4, 3), 0.0)
    events = run_until_idle(model)
    assert [e.at for e in events] == pytest.approx([0.3, 0.4, 0.5])
    assert config.step_time(3) == pytest.approx(0.1 * (1 + 0.5 * 2))


def test_a_bigger_batch_makes_every_sequence_slower() -> None:
    config = ReplicaConfig(token_rate=50.0, batch_slowdown=0.05)
    assert config.step_time(1) < config.step_time(2) < config.step_time(8)
    assert config.step_time(1) == pytest.approx(1 / 50.0)


def test_request_histograms_count_each_successful_request_once() -> None:
    model = ReplicaModel(SMALL, now=0.0)
    for _ in range(5):
        model.submit(GenerationRequest(4, 3), 0.0)
    run_until_idle(model)
    for name in (
        "tgi_request_duration",
        "tgi_request_queue_duration",
        "tgi_request_inference_duration",
        "tgi_request_mean_time_per_token_duration",
        "tgi_request_generated_tokens",
    ):
        hist = model.stats.histogram(name)
        assert hist is not None, name
        assert hist.count == 5, name
    tokens = model.stats.histogram("tgi_request_generated_tokens")
    assert tokens is not None
    assert tokens.sum == 15


def test_batch_gauges_report_running_sequences_and_their_token_budget() -> None:
    model = ReplicaModel(SMALL, now=0.0)
    for _ in range(3):
        model.submit(GenerationRequest(10, 20), 0.0)
    model.poll(0.5)
    snap = model.snapshot()
    assert snap.batch_size == 2
    assert snap.queue_size == 1
    assert snap.batch_max_tokens == 2 * (10 + 20)


def test_time_never_runs_backwards() -> None:
    model = ReplicaModel(SMALL, now=5.0)
    model.submit(GenerationRequest(4, 2), 4.0)
    assert model.now == 5.0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_batch_size": 0}, "max_batch_size"),
        ({"token_rate": 0.0}, "token_rate"),
        ({"prefill_time_s": -1.0}, "prefill_time_s"),
        ({"max_input_tokens": 4096, "max_total_tokens": 2048}, "max_input_tokens"),
        ({"max_concurrent_requests": 0}, "max_concurrent_requests"),
    ],
)
def test_bad_configuration_names_the_field(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        ReplicaConfig(**kwargs)  # type: ignore[arg-type]


arrivals = st.lists(
    st.tuples(
        st.floats(min_value=0.0, max_value=0.5),  # gap before the request
        st.integers(min_value=1, max_value=12),  # max_new_tokens
        st.booleans(),  # cancel it right away
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(arrivals=arrivals, batch=st.integers(1, 4), limit=st.integers(1, 10))
def test_invariants_hold_for_any_arrival_pattern(
    arrivals: list[tuple[float, int, bool]], batch: int, limit: int
) -> None:
    config = ReplicaConfig(max_batch_size=batch, max_concurrent_requests=limit, token_rate=20.0)
    model = ReplicaModel(config, now=0.0)
    t = 0.0
    delivered: dict[int, list[int]] = {}
    wanted: dict[int, int] = {}
    for gap, tokens, cancel in arrivals:
        t += gap
        for event in model.poll(t):
            delivered.setdefault(event.request_id, []).append(event.index)
        result = model.submit(GenerationRequest(4, tokens), t)
        if isinstance(result, Accepted):
            wanted[result.request_id] = tokens
            if cancel:
                model.cancel(result.request_id, t)
                del wanted[result.request_id]
        snap = model.snapshot()
        assert snap.batch_size <= batch
        assert snap.in_flight <= limit
        assert model.stats.counter("tgi_request_count") == accounted(model) + snap.in_flight
    for event in run_until_idle(model):
        delivered.setdefault(event.request_id, []).append(event.index)
    for request_id, tokens in wanted.items():
        assert delivered[request_id] == list(range(1, tokens + 1))
    assert model.stats.counter("tgi_request_count") == accounted(model)
