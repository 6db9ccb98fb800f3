"""Lease-based leader election (coordination.k8s.io/v1), with the same rules as client-go.

Two controller replicas run; only the holder of the Lease reconciles, the other keeps its caches
warm and takes over when the holder stops renewing. The rules that make this safe:

- A candidate judges expiry by its *own* monotonic clock: a lease counts as expired when its record
  has not changed for ``leaseDurationSeconds`` since this process first observed that record. Clock
  skew between nodes therefore cannot make two processes leaders at once.
- The leader gives up when it has failed to renew for ``renew_deadline_s``, which is shorter than
  the lease duration, so it stops reconciling before anyone else may take over.
- Every write carries the resourceVersion it read: two candidates racing for an expired lease cannot
  both win; the loser gets 409 Conflict.
- On clean shutdown the leader releases the lease (empty holder, 1 s duration) so the standby takes
  over within one retry period instead of a whole lease duration.

After a crash the standby takes over one lease duration after it first saw the leader's last
renewal (it polls every retry period, and also exactly at the predicted expiry): at most
``lease_duration_s + retry_period_s`` (plus request latency) after the leader's death, about one
lease duration on average.

The decision itself (``decide``) is a pure function so it can be tested exhaustively.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Protocol

import structlog

from tgi_autoscaler.kube.client import KubeClient, KubeObject
from tgi_autoscaler.kube.errors import ApiError, TransportError
from tgi_autoscaler.kube.resources import LEASE

__all__ = [
    "Action",
    "Clock",
    "LeaderElectionConfig",
    "LeaderElector",
    "LeaseRecord",
    "SystemClock",
    "decide",
]

log = structlog.get_logger(__name__)


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def utcnow(self) -> datetime: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def utcnow(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


@dataclass(frozen=True)
class LeaderElectionConfig:
    lease_namespace: str
    identity: str
    lease_name: str = "tgi-autoscaler-controller"
    lease_duration_s: float = 10.0
    renew_deadline_s: float = 7.0
    retry_period_s: float = 2.0

    def __post_init__(self) -> None:
        if not self.identity:
            raise ValueError("leader election identity must not be empty")
        if not self.lease_duration_s > self.renew_deadline_s:
            raise ValueError(
                f"lease duration ({self.lease_duration_s}s) must be greater than the renew deadline "
                f"({self.renew_deadline_s}s), or a slow leader could overlap its successor"
            )
        if not self.renew_deadline_s > 1.2 * self.retry_period_s:
            raise ValueError(
                f"renew deadline ({self.renew_deadline_s}s) must exceed 1.2 x retry period "
                f"({self.retry_period_s}s) so at least one renewal attempt fits"
            )


@dataclass(frozen=True)
class LeaseRecord:
    holder: str  # "" once released
    lease_duration_s: int
    acquire_time: str | None
    renew_time: str | None
    transitions: int


class Action(Enum):
    CREATE = "create"  # no Lease yet
    RENEW = "renew"  # we hold it
    TAKE_OVER = "take-over"  # released or expired
    WAIT = "wait"  # someone else holds a live lease


def decide(identity: str, record: LeaseRecord | None, observed_at: float, now: float) -> Action:
    """What a candidate should do, given the lease record and when it first saw that record."""
    if record is None:
        return Action.CREATE
    if record.holder == identity:
        return Action.RENEW
    if record.holder and observed_at + record.lease_duration_s > now:
        return Action.WAIT
    return Action.TAKE_OVER


def _micro_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def record_from_lease(obj: KubeObject) -> LeaseRecord:
    spec = obj.get("spec") or {}
    return LeaseRecord(
        holder=str(spec.get("holderIdentity") or ""),
        lease_duration_s=int(spec.get("leaseDurationSeconds") or 0),
        acquire_time=spec.get("acquireTime"),
        renew_time=spec.get("renewTime"),
        transitions=int(spec.get("leaseTransitions") or 0),
    )


class LeaderElector:
    """Acquires, renews and releases one Lease; calls back when leadership starts and stops."""

    def __init__(
        self,
        client: KubeClient,
        config: LeaderElectionConfig,
        *,
        on_started_leading: Callable[[], None],
        on_stopped_leading: Callable[[], None],
        clock: Clock | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._client = client
        self.config = config
        self._on_started = on_started_leading
        self._on_stopped = on_stopped_leading
        self._clock: Clock = clock or SystemClock()
        self._rand = rand
        self._observed: LeaseRecord | None = None
        self._observed_at = 0.0
        self._resource_version: str | None = None
        self._expires_at: float | None = None  # when the lease we wait for expires, if unrenewed
        self.is_leader = False
        self._log = log.bind(lease=f"{config.lease_namespace}/{config.lease_name}", identity=config.identity)

    async def run(self) -> None:
        """Campaign, lead, and campaign again after losing the lease; runs until cancelled.

        Cancelling does not release the lease; call ``release`` for that (on clean shutdown).
        """
        try:
            while True:
                while not await self._attempt():
                    await self._clock.sleep(self._next_attempt_in())
                self._set_leader(True)
                await self._renew_until_lost()
                self._set_leader(False)
        finally:
            if self.is_leader:
                self._set_leader(False)

    def _next_attempt_in(self) -> float:
        """Poll every retry period (jittered), but also exactly when the awaited lease would expire,
        so a crashed leader is replaced about one lease duration after its last renewal was seen."""
        interval = self.config.retry_period_s * (1 + 0.2 * self._rand())
        expires_at, self._expires_at = self._expires_at, None
        if expires_at is None:
            return interval
        return max(0.01, min(interval, expires_at - self._clock.monotonic() + 0.01))

    async def _renew_until_lost(self) -> None:
        last_renewal = self._clock.monotonic()
        while True:
            await self._clock.sleep(self.config.retry_period_s)
            started = self._clock.monotonic()
            remaining = last_renewal + self.config.renew_deadline_s - started
            if remaining > 0 and await self._attempt(timeout_s=remaining):
                last_renewal = started
            elif self._clock.monotonic() - last_renewal >= self.config.renew_deadline_s:
                self._log.warning(
                    "leader.lost", since_last_renewal_s=round(self._clock.monotonic() - last_renewal, 2)
                )
                return

    def _set_leader(self, leading: bool) -> None:
        if leading == self.is_leader:
            return
        self.is_leader = leading
        self._log.info("leader.started" if leading else "leader.stopped")
        (self._on_started if leading else self._on_stopped)()

    async def _attempt(self, timeout_s: float | None = None) -> bool:
        try:
            async with asyncio.timeout(timeout_s):
                return await self._try_acquire_or_renew()
        except (ApiError, TransportError, TimeoutError) as exc:
            self._log.info("leader.attempt_failed", error=str(exc) or type(exc).__name__)
            return False
        except Exception:
            # Anything else (a malformed Lease, a bug) counts as a failed attempt: a leader that
            # cannot renew must lose leadership on schedule, not keep reconciling with a dead elector.
            self._log.exception("leader.attempt_crashed")
            return False

    async def _try_acquire_or_renew(self) -> bool:
        cfg = self.config
        obj = await self._client.get(LEASE, cfg.lease_namespace, cfg.lease_name)
        now_mono = self._clock.monotonic()
        now = _micro_time(self._clock.utcnow())
        record = record_from_lease(obj) if obj is not None else None
        if record != self._observed:
            self._observed, self._observed_at = record, now_mono
        action = decide(cfg.identity, record, self._observed_at, now_mono)
        if action is Action.WAIT:
            assert record is not None
            self._expires_at = self._observed_at + record.lease_duration_s
            return False
        fresh = LeaseRecord(
            holder=cfg.identity,
            lease_duration_s=max(1, round(cfg.lease_duration_s)),
            acquire_time=now,
            renew_time=now,
            transitions=0,
        )
        if action is Action.CREATE:
            created = await self._client.create(LEASE, cfg.lease_namespace, self._body(fresh, None))
            self._remember(created)
            return True
        assert obj is not None
        assert record is not None
        if action is Action.RENEW:
            fresh = replace(fresh, acquire_time=record.acquire_time, transitions=record.transitions)
        else:
            fresh = replace(fresh, transitions=record.transitions + 1)
        updated = await self._client.replace(
            LEASE, cfg.lease_namespace, cfg.lease_name, self._body(fresh, obj["metadata"]["resourceVersion"])
        )
        self._remember(updated)
        if action is Action.TAKE_OVER:
            self._log.info("leader.took_over", previous=record.holder or "(released)")
        return True

    def _remember(self, obj: KubeObject) -> None:
        self._observed = record_from_lease(obj)
        self._observed_at = self._clock.monotonic()

    def _body(self, record: LeaseRecord, resource_version: str | None) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": self.config.lease_name, "namespace": self.config.lease_namespace}
        if resource_version is not None:
            meta["resourceVersion"] = resource_version
        return {
            "apiVersion": LEASE.api_version,
            "kind": LEASE.kind,
            "metadata": meta,
            "spec": {
                "holderIdentity": record.holder,
                "leaseDurationSeconds": record.lease_duration_s,
                "acquireTime": record.acquire_time,
                "renewTime": record.renew_time,
                "leaseTransitions": record.transitions,
            },
        }

    async def release(self) -> None:
        """Give the lease up if we hold it, so a standby can take over at once (best effort).

        Call it after cancelling ``run`` (so no renewal races the release); it checks the Lease
        itself, because ``run`` already reported leadership as stopped when it was cancelled.
        """
        self._set_leader(False)
        cfg = self.config
        try:
            async with asyncio.timeout(cfg.retry_period_s * 2):
                obj = await self._client.get(LEASE, cfg.lease_namespace, cfg.lease_name)
                if obj is None or record_from_lease(obj).holder != cfg.identity:
                    return
                current = record_from_lease(obj)
                now = _micro_time(self._clock.utcnow())
                released = LeaseRecord(
                    holder="",
                    lease_duration_s=1,
                    acquire_time=now,
                    renew_time=now,
                    transitions=current.transitions,
                )
                await self._client.replace(
                    LEASE,
                    cfg.lease_namespace,
                    cfg.lease_name,
                    self._body(released, obj["metadata"]["resourceVersion"]),
                )
                self._log.info("leader.released")
        except (ApiError, TransportError, TimeoutError) as exc:
            self._log.warning("leader.release_failed", error=str(exc) or type(exc).__name__)
