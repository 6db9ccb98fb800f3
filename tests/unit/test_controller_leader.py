"""Leader election on a virtual clock: one leader at a time, takeover after expiry or release."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.unit.controller_fakes import FakeClock, FakeKube
from tgi_autoscaler.controller.leader import (
    Action,
    LeaderElectionConfig,
    LeaderElector,
    LeaseRecord,
    decide,
)
from tgi_autoscaler.kube.client import KubeObject
from tgi_autoscaler.kube.errors import TransportError
from tgi_autoscaler.kube.resources import LEASE, ResourceType

pytestmark = pytest.mark.unit

LEASE_S, RENEW_S, RETRY_S = 15.0, 10.0, 2.0


def _record(holder: str, duration: int = 15) -> LeaseRecord:
    return LeaseRecord(
        holder=holder, lease_duration_s=duration, acquire_time=None, renew_time=None, transitions=0
    )


@pytest.mark.parametrize(
    ("record", "observed_at", "now", "expected"),
    [
        (None, 0.0, 0.0, Action.CREATE),
        (_record("me"), 0.0, 100.0, Action.RENEW),  # ours, even if we were slow
        (_record("other"), 10.0, 24.9, Action.WAIT),  # observed 14.9 s ago: still live
        (_record("other"), 10.0, 25.0, Action.TAKE_OVER),  # unchanged for a whole lease duration
        (_record(""), 10.0, 10.0, Action.TAKE_OVER),  # released
    ],
)
def test_decide(record: LeaseRecord | None, observed_at: float, now: float, expected: Action) -> None:
    assert decide("me", record, observed_at, now) is expected


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"lease_duration_s": 10.0, "renew_deadline_s": 10.0}, "greater than the renew deadline"),
        ({"renew_deadline_s": 2.0, "retry_period_s": 2.0}, "1.2 x retry period"),
        ({"identity": ""}, "identity"),
    ],
)
def test_unsafe_timings_are_rejected(kwargs: dict[str, Any], fragment: str) -> None:
    base: dict[str, Any] = {"lease_namespace": "ns", "identity": "a"}
    with pytest.raises(ValueError, match=fragment):
        LeaderElectionConfig(**{**base, **kwargs})


class Partitionable:
    """A client that can be cut off from the API server, as a network partition would."""

    def __init__(self, inner: FakeKube) -> None:
        self.inner = inner
        self.partitioned = False

    def _check(self) -> None:
        if self.partitioned:
            raise TransportError("partitioned")

    async def get(self, rt: ResourceType, namespace: str | None, name: str) -> KubeObject | None:
        self._check()
        return await self.inner.get(rt, namespace, name)

    async def create(self, rt: ResourceType, namespace: str | None, obj: Any) -> KubeObject:
        self._check()
        return await self.inner.create(rt, namespace, obj)

    async def replace(self, rt: ResourceType, namespace: str | None, name: str, obj: Any) -> KubeObject:
        self._check()
        return await self.inner.replace(rt, namespace, name, obj)


@dataclass
class Candidate:
    name: str
    elector: LeaderElector
    client: Partitionable
    history: list[tuple[float, str]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    @property
    def leading(self) -> bool:
        return self.elector.is_leader


@pytest.fixture
async def cluster() -> AsyncIterator[tuple[FakeKube, FakeClock, list[Candidate]]]:
    api, clock = FakeKube(), FakeClock()
    candidates: list[Candidate] = []
    yield api, clock, candidates
    for c in candidates:
        if c.task is not None:
            c.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await c.task


def _candidate(api: FakeKube, clock: FakeClock, name: str, candidates: list[Candidate]) -> Candidate:
    client = Partitionable(api)
    history: list[tuple[float, str]] = []
    config = LeaderElectionConfig(
        lease_namespace="ns",
        identity=name,
        lease_duration_s=LEASE_S,
        renew_deadline_s=RENEW_S,
        retry_period_s=RETRY_S,
    )
    elector = LeaderElector(
        client,  # type: ignore[arg-type]  # only the lease verbs are used
        config,
        on_started_leading=lambda: history.append((clock.now, "started")),
        on_stopped_leading=lambda: history.append((clock.now, "stopped")),
        clock=clock,
        rand=lambda: 0.0,
    )
    candidate = Candidate(name, elector, client, history)
    candidate.task = asyncio.create_task(elector.run())
    candidates.append(candidate)
    return candidate


async def test_first_candidate_creates_the_lease_and_leads(cluster: Any) -> None:
    api, clock, candidates = cluster
    a = _candidate(api, clock, "a", candidates)
    await clock.advance(0.1)
    assert a.leading
    lease = api.find("Lease", "ns", "tgi-autoscaler-controller")
    assert lease["spec"]["holderIdentity"] == "a"
    assert lease["spec"]["leaseDurationSeconds"] == 15


async def test_standby_never_leads_while_the_leader_renews(cluster: Any) -> None:
    api, clock, candidates = cluster
    a = _candidate(api, clock, "a", candidates)
    await clock.advance(0.1)
    b = _candidate(api, clock, "b", candidates)
    await clock.advance(120)
    assert a.leading
    assert not b.leading
    assert b.history == []
    assert [event for _, event in a.history] == ["started"]


async def test_standby_takes_over_a_crashed_leader_after_the_lease_expires_not_before(cluster: Any) -> None:
    api, clock, candidates = cluster
    a = _candidate(api, clock, "a", candidates)
    await clock.advance(0.1)
    b = _candidate(api, clock, "b", candidates)
    await clock.advance(5)
    assert a.task is not None
    a.task.cancel()  # a crash: no release
    with contextlib.suppress(asyncio.CancelledError):
        await a.task
    crashed_at = clock.now
    renewed = api.find("Lease", "ns", "tgi-autoscaler-controller")["spec"]["renewTime"]
    await clock.advance(LEASE_S - 2 * RETRY_S)
    assert not b.leading, "took over a lease that could still be live"
    await clock.advance(3 * RETRY_S)
    assert b.leading
    (took_over, event) = b.history[0]
    assert event == "started"
    # Observed up to one (jittered) retry period late, then taken over at the predicted expiry.
    assert took_over - crashed_at <= LEASE_S + 1.2 * RETRY_S + 0.1
    last_renewal = datetime.strptime(renewed, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC) - clock.utcnow()
    assert took_over >= clock.now + last_renewal.total_seconds() + LEASE_S, (
        "taken before a full lease duration"
    )
    lease = api.find("Lease", "ns", "tgi-autoscaler-controller")
    assert lease["spec"]["holderIdentity"] == "b"
    assert lease["spec"]["leaseTransitions"] == 1
    assert lease["spec"]["renewTime"] != renewed


async def test_partitioned_leader_stops_before_anyone_else_may_start(cluster: Any) -> None:
    api, clock, candidates = cluster
    a = _candidate(api, clock, "a", candidates)
    await clock.advance(0.1)
    b = _candidate(api, clock, "b", candidates)
    await clock.advance(4)
    a.client.partitioned = True
    await clock.advance(40)
    assert not a.leading
    assert b.leading
    a_stopped = next(t for t, e in a.history if e == "stopped")
    b_started = next(t for t, e in b.history if e == "started")
    assert a_stopped < b_started, "two leaders at once"
    # Healed, the old leader sees the new holder and stays a standby.
    a.client.partitioned = False
    await clock.advance(40)
    assert not a.leading
    assert b.leading


async def test_released_lease_is_taken_over_within_one_retry_period(cluster: Any) -> None:
    api, clock, candidates = cluster
    a = _candidate(api, clock, "a", candidates)
    await clock.advance(0.1)
    b = _candidate(api, clock, "b", candidates)
    await clock.advance(3)
    assert a.task is not None
    a.task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await a.task
    await a.elector.release()
    released_at = clock.now
    assert api.find("Lease", "ns", "tgi-autoscaler-controller")["spec"]["holderIdentity"] == ""
    await clock.advance(RETRY_S * 1.3)
    assert b.leading
    assert b.history[0][0] - released_at <= RETRY_S * 1.3


async def test_racing_standbys_produce_exactly_one_leader(cluster: Any) -> None:
    api, clock, candidates = cluster
    api.put(
        {
            "apiVersion": LEASE.api_version,
            "kind": "Lease",
            "metadata": {"name": "tgi-autoscaler-controller", "namespace": "ns"},
            "spec": {"holderIdentity": "", "leaseDurationSeconds": 1},
        }
    )
    contenders = [_candidate(api, clock, name, candidates) for name in ("b", "c", "d")]
    await clock.advance(30)
    assert sum(c.leading for c in contenders) == 1


async def test_release_by_a_non_holder_leaves_the_lease_alone(cluster: Any) -> None:
    api, clock, candidates = cluster
    a = _candidate(api, clock, "a", candidates)
    await clock.advance(0.1)
    b = _candidate(api, clock, "b", candidates)
    await clock.advance(1)
    await b.elector.release()
    assert api.find("Lease", "ns", "tgi-autoscaler-controller")["spec"]["holderIdentity"] == "a"
    assert a.leading


async def test_a_malformed_lease_is_a_failed_attempt_not_a_dead_elector(cluster: Any) -> None:
    api, clock, candidates = cluster
    api.put(
        {
            "apiVersion": LEASE.api_version,
            "kind": "Lease",
            "metadata": {"name": "tgi-autoscaler-controller", "namespace": "ns"},
            "spec": {"holderIdentity": "x", "leaseDurationSeconds": "fifteen"},
        }
    )
    a = _candidate(api, clock, "a", candidates)
    await clock.advance(5)
    assert a.task is not None
    assert not a.task.done(), "the elector died on a malformed lease"
    assert not a.leading
    del api.objects[("Lease", "ns", "tgi-autoscaler-controller")]
    await clock.advance(3)
    assert a.leading
