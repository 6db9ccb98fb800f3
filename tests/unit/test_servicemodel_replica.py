"""One replica's continuous batching: hand-computed timings, and equivalence of the event-skipping
replica with a step-by-step reference and with the live simulator's per-token model."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tgi_autoscaler.servicemodel import Replica, RequestLog, ServerParams
from tgi_autoscaler_dev.sim.model import Accepted, GenerationRequest, ReplicaConfig, ReplicaModel

pytestmark = pytest.mark.unit

# Quarter-second decode steps and a half-second prefill: every time below is exact in binary.
SIMPLE = ServerParams(
    max_batch_size=4,
    max_concurrent_requests=16,
    decode_step_s=0.25,
    batch_slowdown=0.0,
    prefill_s_per_token=0.0,
    prefill_overhead_s=0.5,
)


@dataclass(frozen=True)
class Outcome:
    admitted: list[float]
    first_token: list[float]
    finished: list[float]
    rejected: list[bool]


def replay(params: ServerParams, arrival: list[float], prompt: list[int], output: list[int]) -> Outcome:
    """Submit every request at its arrival, then run the replica until it is idle."""
    log = RequestLog(list(arrival), list(prompt), list(output))
    replica = Replica(params, log)
    for rid, t in enumerate(arrival):
        replica.advance(t)
        replica.submit(rid, t)
    while not replica.idle:
        replica.advance(replica.next_event)
    return Outcome(log.admitted, log.first_token, log.finished, log.rejected)


def reference(
    params: ServerParams, arrival: list[float], prompt: list[int], output: list[int], *, eps: float = 0.0
) -> Outcome:
    """TGI's batcher one step at a time, with no event skipping.

    A step that ends at or before an arrival (within ``eps``) is run first, so the next step begins
    without the new request; an idle engine starts a step when a request arrives.
    """
    n = len(arrival)
    out = Outcome([math.nan] * n, [math.nan] * n, [math.nan] * n, [False] * n)
    queue: deque[int] = deque()
    remaining: dict[int, int] = {}  # running sequences: tokens still to produce
    step: tuple[bool, float, list[int]] | None = None  # (is prefill, end, members)

    def start(now: float) -> tuple[bool, float, list[int]] | None:
        admitted: list[int] = []
        while len(remaining) + len(admitted) < params.max_batch_size and queue:
            admitted.append(queue.popleft())
        if admitted:
            for rid in admitted:
                out.admitted[rid] = now
                remaining[rid] = output[rid]
            return True, now + params.prefill_time(sum(prompt[r] for r in admitted)), admitted
        if remaining:
            return False, now + params.step_time(len(remaining)), list(remaining)
        return None

    index = 0
    while index < n or step is not None:
        if step is not None and (index >= n or step[1] <= arrival[index] + eps):
            is_prefill, end, members = step
            for rid in members:
                remaining[rid] -= 1
                if is_prefill:
                    out.first_token[rid] = end
                if remaining[rid] == 0:
                    out.finished[rid] = end
                    del remaining[rid]
            step = start(end)
            continue
        now = arrival[index]
        if len(queue) + len(remaining) >= params.max_concurrent_requests:
            out.rejected[index] = True
        else:
            queue.append(index)
            if step is None:
                step = start(now)
        index += 1
    return out


# -- hand-computed timings ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "output", "ttft", "finish"),
    [
        (8, 1, 0.5, 1.5),  # one token: the prefill's
        (8, 2, 0.5, 1.75),
        (8, 5, 0.5, 2.5),  # prefill, then 4 decode steps of 0.25 s
    ],
)
def test_a_lone_request_gets_its_first_token_after_the_prefill_and_finishes_n_minus_1_steps_later(
    prompt: int, output: int, ttft: float, finish: float
) -> None:
    out = replay(SIMPLE, [1.0], [prompt], [output])
    assert out.admitted == [1.0]
    assert out.first_token[0] - 1.0 == ttft
    assert out.finished == [finish]


def test_prefill_time_grows_with_the_prompt_and_decode_with_the_batch() -> None:
    params = ServerParams(
        decode_step_s=0.25, batch_slowdown=0.5, prefill_s_per_token=0.0625, prefill_overhead_s=0.5
    )
    # prefill 0.5 + 16 * 0.0625 = 1.5 s; then 3 decode steps of 0.25 s at batch 1.
    assert replay(params, [0.0], [16], [4]).finished == [1.5 + 3 * 0.25]
    # Two prompts arriving together: the first is prefilled alone, the second queues behind it; the
    # first sequence then waits during the second's prefill, and they decode as a batch of 2
    # (0.25 * (1 + 0.5) = 0.375 s per step).
    out = replay(params, [0.0, 0.0], [16, 16], [3, 3])
    assert out.first_token == [1.5, 3.0]
    assert out.finished == [3.0 + 2 * 0.375, 3.0 + 2 * 0.375]


def test_the_batch_limit_queues_the_rest_until_a_slot_frees() -> None:
    params = ServerParams(
        max_batch_size=2,
        decode_step_s=0.25,
        batch_slowdown=0.0,
        prefill_s_per_token=0.0,
        prefill_overhead_s=0.5,
    )
    log = RequestLog([0.0, 0.0, 0.0], [1, 1, 1], [3, 3, 2])
    replica = Replica(params, log)
    for rid in range(3):
        replica.submit(rid, 0.0)
    replica.advance(0.75)  # req 0 prefilled [0, 0.5], req 1 prefilling [0.5, 1.0]; req 2 waits
    assert (replica.queue_size, replica.batch_size, replica.in_flight) == (1, 2, 3)
    while not replica.idle:
        replica.advance(replica.next_event)
    # Both slots are busy until 1.5 (two decode steps after req 1's prefill), then req 2 gets one.
    assert log.first_token == [0.5, 1.0, 2.0]
    assert log.admitted == [0.0, 0.5, 1.5]
    assert log.finished == [1.5, 1.5, 2.25]
    assert (replica.arrivals, replica.successes, replica.in_flight) == (3, 3, 0)


@pytest.mark.parametrize(
    ("arrival", "admitted"),
    [
        (1.1, 1.25),  # during a step: seen at its end
        (1.25, 1.5),  # exactly at a boundary inside the run: that step has begun, seen at the next
        (0.5, 0.75),  # exactly when the run began (the first request's prefill ended)
        (2.4, 2.5),  # during the run's last step: the run is not cut
    ],
)
def test_an_arrival_during_a_decode_run_is_admitted_at_the_next_step_boundary(
    arrival: float, admitted: float
) -> None:
    # Request 0: prefill [0, 0.5], then a run of 8 decode steps ending at 2.5.
    out = replay(SIMPLE, [0.0, arrival], [1, 1], [9, 2])
    assert out.admitted == [0.0, admitted]
    assert out.first_token[1] == admitted + 0.5
    # Request 0 lost exactly one prefill's time to the newcomer.
    assert out.finished[0] == (2.5 + 0.5 if admitted < 2.5 else 2.5)
    assert out == reference(SIMPLE, [0.0, arrival], [1, 1], [9, 2])


def test_the_concurrency_limit_rejects_at_once_and_a_finished_request_frees_its_permit() -> None:
    params = ServerParams(
        max_batch_size=1, max_concurrent_requests=2, decode_step_s=0.25, prefill_overhead_s=0.5
    )
    log = RequestLog([0.0, 0.0, 0.0, 5.0], [1] * 4, [2] * 4)
    replica = Replica(params, log)
    accepted = []
    for rid, t in enumerate(log.arrival):
        replica.advance(t)
        accepted.append(replica.submit(rid, t))
    assert accepted == [True, True, False, True]
    assert log.rejected == [False, False, True, False]
    assert log.ttft(2) == math.inf
    assert math.isnan(log.first_token[2])
    assert replica.arrivals == 4  # tgi_request_count counts rejected requests too


def test_take_queue_returns_the_waiting_requests_only() -> None:
    params = ServerParams(max_batch_size=1, decode_step_s=0.25, prefill_overhead_s=0.5)
    log = RequestLog([0.0] * 3, [1] * 3, [4] * 3)
    replica = Replica(params, log)
    for rid in range(3):
        replica.submit(rid, 0.0)
    assert replica.take_queue() == [1, 2]
    assert (replica.queue_size, replica.batch_size) == (0, 1)


def test_request_log_rejects_columns_of_different_lengths() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        RequestLog([0.0, 1.0], [1], [1, 2])


# -- equivalence with stepping --------------------------------------------------------------------

# Dyadic step times and arrivals on a 1/1024 s grid: every sum is exact, so equality is exact and
# arrivals land exactly on step boundaries often (the cases where an off-by-one-step shows).
GRID = 1 / 1024


@st.composite
def dyadic_params(draw: st.DrawFn, *, per_token: bool = True) -> ServerParams:
    return ServerParams(
        max_batch_size=draw(st.integers(1, 4)),
        max_concurrent_requests=draw(st.integers(1, 10)),
        decode_step_s=draw(st.sampled_from([1 / 64, 1 / 32, 3 / 128])),
        batch_slowdown=draw(st.sampled_from([0.0, 1 / 16, 1 / 4])),
        prefill_s_per_token=draw(st.sampled_from([0.0, GRID])) if per_token else 0.0,
        prefill_overhead_s=draw(st.sampled_from([0.0, 1 / 256, 1 / 64])),
    )


@st.composite
def requests(draw: st.DrawFn, *, grid: float | None = GRID) -> tuple[list[float], list[int], list[int]]:
    n = draw(st.integers(1, 14))
    if grid is None:
        times = draw(st.lists(st.floats(0.0, 0.6, allow_nan=False), min_size=n, max_size=n))
    else:
        times = [k * grid for k in draw(st.lists(st.integers(0, 600), min_size=n, max_size=n))]
    prompt = draw(st.lists(st.integers(1, 40), min_size=n, max_size=n))
    output = draw(st.lists(st.integers(1, 20), min_size=n, max_size=n))
    return sorted(times), prompt, output


@settings(max_examples=150, deadline=None)
@given(params=dyadic_params(), reqs=requests())
def test_event_skipping_gives_exactly_the_times_of_stepping(
    params: ServerParams, reqs: tuple[list[float], list[int], list[int]]
) -> None:
    arrival, prompt, output = reqs
    assert replay(params, arrival, prompt, output) == reference(params, arrival, prompt, output)


@settings(max_examples=80, deadline=None)
@given(
    batch=st.integers(1, 4),
    limit=st.integers(1, 10),
    reqs=requests(grid=None),
)
def test_event_skipping_matches_stepping_with_realistic_step_times(
    batch: int, limit: int, reqs: tuple[list[float], list[int], list[int]]
) -> None:
    params = ServerParams(max_batch_size=batch, max_concurrent_requests=limit, prefill_s_per_token=0.001)
    arrival, prompt, output = reqs
    fast = replay(params, arrival, prompt, output)
    slow = reference(params, arrival, prompt, output, eps=1e-9)
    assert fast.rejected == slow.rejected
    for name in ("admitted", "first_token", "finished"):
        got, want = getattr(fast, name), getattr(slow, name)
        assert all(
            (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, abs=1e-9)
            for a, b in zip(got, want, strict=True)
        ), name


def _simulator(params: ServerParams) -> ReplicaModel:
    # The live simulator's prefill takes a fixed time per step, its decode 1 / token_rate per token.
    config = ReplicaConfig(
        max_batch_size=params.max_batch_size,
        token_rate=1 / params.decode_step_s,
        batch_slowdown=params.batch_slowdown,
        prefill_time_s=params.prefill_overhead_s,
        max_concurrent_requests=params.max_concurrent_requests,
    )
    return ReplicaModel(config, now=0.0)


@settings(max_examples=100, deadline=None)
@given(params=dyadic_params(per_token=False), reqs=requests())
def test_the_replica_matches_the_live_simulators_per_token_model(
    params: ServerParams, reqs: tuple[list[float], list[int], list[int]]
) -> None:
    arrival, prompt, output = reqs
    log = RequestLog(list(arrival), list(prompt), list(output))
    replica = Replica(params, log)
    model = _simulator(params)
    ids: dict[int, int] = {}
    first, finished = [math.nan] * len(arrival), [math.nan] * len(arrival)
    events = []
    for rid, t in enumerate(arrival):
        replica.advance(t)
        events += model.poll(t)
        snapshot = model.snapshot()
        # What a scrape would read at this instant: tgi_queue_size and tgi_batch_current_size.
        assert (replica.queue_size, replica.batch_size) == (snapshot.queue_size, snapshot.batch_size)
        if replica.submit(rid, t):
            submission = model.submit(GenerationRequest(prompt[rid], output[rid]), t)
            assert isinstance(submission, Accepted)
            ids[submission.request_id] = rid
        else:
            assert not isinstance(model.submit(GenerationRequest(prompt[rid], output[rid]), t), Accepted)
    while (deadline := model.next_deadline()) is not None:
        events += model.poll(deadline)
    while not replica.idle:
        replica.advance(replica.next_event)
    for event in events:
        rid = ids[event.request_id]
        if event.index == 1:
            first[rid] = event.at
        if event.last:
            finished[rid] = event.at
    assert log.first_token == first
    assert log.finished == finished
    assert replica.successes == model.stats.counter("tgi_request_success")
