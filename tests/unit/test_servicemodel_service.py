"""A Deployment of replicas: cold starts, the ReplicaSet's deletion order, draining, routing and the
GPU-seconds integral, on hand-computed cases."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tgi_autoscaler.servicemodel import ColdStart, RequestLog, ServerParams, Service
from tgi_autoscaler.servicemodel.params import ParamsError
from tgi_autoscaler.servicemodel.service import Routing

pytestmark = pytest.mark.unit

PARAMS = ServerParams(decode_step_s=0.25, batch_slowdown=0.0, prefill_s_per_token=0.0, prefill_overhead_s=0.5)
COLD = ColdStart(median_s=30.0, sigma=0.0)  # every pod is Ready exactly 30 s after it is asked for


def service(
    initial: int, n_requests: int = 20, *, output: int = 5, routing: Routing = "round_robin"
) -> Service:
    log = RequestLog([0.0] * n_requests, [1] * n_requests, [output] * n_requests)
    return Service(PARAMS, COLD, log, initial_replicas=initial, routing=routing)


def uids(svc: Service) -> list[int]:
    """Pods that run a server (Ready or draining), as a scrape sees them."""
    return [c.uid for c in svc.counters()]


def test_a_new_pod_serves_only_after_its_cold_start() -> None:
    svc = service(1)
    svc.advance(10.0)
    svc.scale_to(3, 10.0)
    assert (svc.replicas, svc.ready, svc.existing) == (3, 1, 3)
    assert svc.next_ready_at() == 40.0
    svc.advance(39.9)
    assert svc.ready == 1
    assert uids(svc) == [0]  # Starting pods run no server yet
    svc.advance(40.0)
    assert (svc.replicas, svc.ready) == (3, 3)
    assert uids(svc) == [0, 1, 2]


def test_scale_down_removes_starting_pods_newest_first_then_the_most_recently_ready() -> None:
    svc = service(1)  # pod 0, Ready at 0
    svc.scale_to(2, 0.0)  # pod 1, Ready at 30
    svc.advance(30.0)
    svc.scale_to(3, 40.0)  # pod 2, Ready at 70
    svc.advance(50.0)
    svc.scale_to(4, 50.0)  # pod 3, Ready at 80
    assert (svc.replicas, svc.ready, svc.next_ready_at()) == (4, 2, 70.0)
    svc.advance(55.0)
    svc.scale_to(3, 55.0)
    assert svc.next_ready_at() == 70.0  # pod 3 (the newest Starting one) went first
    svc.scale_to(2, 55.0)
    assert svc.next_ready_at() == float("inf")  # then pod 2
    assert uids(svc) == [0, 1]
    svc.scale_to(1, 55.0)
    assert uids(svc) == [0]  # pod 1 was Ready more recently than pod 0
    assert (svc.replicas, svc.ready, svc.existing) == (1, 1, 1)


def test_a_removed_ready_pod_drains_what_it_accepted_and_its_gpu_time_stops_when_drained() -> None:
    svc = service(1)
    svc.scale_to(2, 0.0)  # pod 1, Ready at 30
    svc.advance(30.0)
    assert svc.arrive(0, 30.0)  # round-robin: pod 1; prefill [30, 30.5], 4 steps: done at 31.5
    svc.advance(30.2)
    svc.scale_to(1, 30.2)  # pod 1 is the most recently Ready: it leaves the Service and drains
    assert (svc.replicas, svc.ready, svc.existing) == (1, 1, 2)
    svc.advance(30.3)
    assert svc.arrive(1, 30.3)  # goes to pod 0: a draining pod takes no new requests
    svc.advance(31.0)
    assert svc.existing == 2
    svc.advance(40.0)
    assert svc.existing == 1
    assert uids(svc) == [0]
    assert svc.log.finished[0] == 31.5
    assert svc.log.admitted[1] == 30.3
    # Pod 0 for 40 s, pod 1 from when it was asked for (0) until its last request finished.
    assert svc.gpu_seconds == pytest.approx(40.0 + 31.5)
    assert svc.ready_seconds == pytest.approx(40.0 + 0.2)


def test_gpu_seconds_count_every_pod_from_being_asked_for_until_it_is_gone() -> None:
    svc = service(2)  # pods 0 and 1 from 0
    svc.advance(10.0)
    svc.scale_to(3, 10.0)  # pod 2 asked for at 10, Ready at 40
    svc.advance(50.0)
    svc.scale_to(1, 50.0)  # idle pods 2 (most recently Ready) and 0 are gone at once
    svc.advance(60.0)
    svc.scale_to(2, 60.0)  # pod 3 asked for at 60 ...
    svc.advance(70.0)
    svc.scale_to(1, 70.0)  # ... and removed while Starting, at 70
    svc.advance(100.0)
    assert uids(svc) == [1]
    assert svc.gpu_seconds == pytest.approx(50 + 100 + 40 + 10)
    assert svc.ready_seconds == pytest.approx(50 + 100 + 10)


def test_add_ready_charges_the_loading_time_at_once() -> None:
    svc = service(0)
    svc.add_ready(2, 100.0, created=10.0)
    assert (svc.replicas, svc.ready) == (2, 2)
    assert svc.gpu_seconds == pytest.approx(2 * 90.0)
    svc.advance(110.0)
    assert svc.gpu_seconds == pytest.approx(2 * 100.0)


def test_requests_go_round_robin_to_ready_pods_and_never_to_starting_ones() -> None:
    svc = service(1, n_requests=16, output=1)
    svc.scale_to(3, 0.0)
    for rid in range(10):
        svc.advance(1.0 + rid)
        assert svc.arrive(rid, 1.0 + rid)
    assert {c.uid: c.arrivals for c in svc.counters()} == {0: 10}
    for rid in range(10, 16):
        svc.advance(31.0 + rid)
        assert svc.arrive(rid, 31.0 + rid)
    assert {c.uid: c.arrivals for c in svc.counters()} == {0: 12, 1: 2, 2: 2}


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 1000), extra=st.integers(1, 4))
def test_random_routing_never_sends_to_a_starting_pod(seed: int, extra: int) -> None:
    n = 120
    log = RequestLog([float(i) for i in range(n)], [1] * n, [1] * n)
    cold = ColdStart(median_s=30.0, sigma=0.3)  # each new pod is Ready after its own draw
    svc = Service(PARAMS, cold, log, initial_replicas=1, seed=seed, routing="random")
    svc.scale_to(1 + extra, 0.0)
    seen: set[int] = set()
    for rid in range(n):
        svc.advance(float(rid))
        ready = set(uids(svc))  # nothing drains here: the pods with a server are the Ready ones
        assert len(ready) == svc.ready
        before = {c.uid: c.arrivals for c in svc.counters()}
        assert svc.arrive(rid, float(rid))
        after = {c.uid: c.arrivals for c in svc.counters()}
        (target,) = [uid for uid in after if after[uid] != before.get(uid, 0)]
        assert target in ready
        seen.add(target)
    assert svc.ready == 1 + extra  # every pod was Ready before the end (draws are far below 120 s)
    assert 0 in seen


def test_with_no_ready_pod_a_request_is_refused() -> None:
    svc = service(0)
    svc.scale_to(1, 0.0)
    svc.advance(5.0)
    assert not svc.arrive(0, 5.0)
    assert svc.log.rejected[0]
    assert svc.log.ttft(0) == float("inf")
    svc.advance(30.0)
    assert svc.arrive(1, 30.0)


def test_a_seeded_cold_start_is_deterministic_and_clipped() -> None:
    import random

    cold = ColdStart(median_s=90.0, sigma=0.5, min_s=60.0, max_s=120.0)
    draws = [cold.sample(random.Random(7)) for _ in range(3)]
    assert draws[0] == draws[1] == draws[2]
    samples = [cold.sample(random.Random(seed)) for seed in range(200)]
    assert min(samples) == 60.0
    assert max(samples) == 120.0
    assert ColdStart(median_s=0.0, min_s=5.0).sample(random.Random(0)) == 5.0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_batch_size": 0}, "max_batch_size"),
        ({"max_concurrent_requests": True}, "max_concurrent_requests"),
        ({"decode_step_s": 0.0}, "decode_step_s"),
        ({"decode_step_s": float("nan")}, "decode_step_s"),
        ({"batch_slowdown": -0.1}, "batch_slowdown"),
        ({"prefill_s_per_token": float("inf")}, "prefill_s_per_token"),
        ({"prefill_overhead_s": -1.0}, "prefill_overhead_s"),
    ],
)
def test_server_params_errors_name_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ParamsError, match=field):
        ServerParams(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"median_s": -1.0}, "coldStart.median"),
        ({"sigma": float("nan")}, "coldStart.sigma"),
        ({"min_s": 10.0, "max_s": 5.0}, "coldStart.max"),
    ],
)
def test_cold_start_errors_name_the_field(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ParamsError, match=field):
        ColdStart(**kwargs)


def test_time_never_goes_backwards_and_replica_counts_are_not_negative() -> None:
    svc = service(1)
    svc.advance(10.0)
    with pytest.raises(ValueError, match="backwards"):
        svc.advance(5.0)
    with pytest.raises(ValueError, match="replicas"):
        svc.scale_to(-1, 10.0)
    with pytest.raises(ValueError, match="initial_replicas"):
        service(-1)
