"""Replay the HPA loop against an arrival-rate trace and a fluid queue model of the servers.

The model is deliberately small so its output can be reasoned about: every Ready replica serves
``capacity_per_replica`` requests per second; arrivals beyond what the Ready replicas serve wait in
one shared queue (the sum of ``tgi_queue_size`` over the pods, which is what the adapter reports);
a new pod becomes Ready ``pod_start_delay`` seconds after the HPA asks for it (image pull, model
download and load). Every ``sync_period`` the HPA runs ``step`` with that queue. On a scale-down the
newest pods go first, as the ReplicaSet controller deletes not-ready and most recently ready pods
first.

What the model leaves out, on purpose: scheduling delays and node provisioning (add them to the
start delay), graceful termination (a removed pod stops serving at once), and queueing below
capacity (the queue is zero while the Ready replicas keep up, which is also how a queue-depth
signal behaves: it only sees demand above capacity).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tgi_autoscaler.hpa.controller import Decision, HpaState, step
from tgi_autoscaler.hpa.trace import Trace
from tgi_autoscaler.hpa.types import HpaSpec, Seconds

__all__ = ["ReplayConfig", "ReplayError", "ReplayResult", "Sample", "replay"]


class ReplayError(ValueError):
    """Replay parameters that do not describe a runnable simulation."""


@dataclass(frozen=True)
class ReplayConfig:
    """The servers and the control loop around the HPA."""

    capacity_per_replica: float = 1.0
    pod_start_delay: float = 300.0
    sync_period: float = 15.0
    tick: float = 1.0
    metric_lag: float = 0.0
    initial_replicas: int | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.capacity_per_replica) and self.capacity_per_replica > 0):
            raise ReplayError(f"capacity_per_replica must be > 0 (got {self.capacity_per_replica})")
        if self.pod_start_delay < 0 or self.metric_lag < 0:
            raise ReplayError("pod_start_delay and metric_lag must be >= 0")
        if not self.tick > 0:
            raise ReplayError(f"tick must be > 0 (got {self.tick})")
        for name in ("sync_period", "metric_lag"):
            value = getattr(self, name)
            ticks = value / self.tick
            if abs(ticks - round(ticks)) > 1e-9 or (name == "sync_period" and round(ticks) < 1):
                raise ReplayError(f"{name} ({value}) must be a positive multiple of tick ({self.tick})")
        if self.initial_replicas is not None and self.initial_replicas < 0:
            raise ReplayError(f"initial_replicas must be >= 0 (got {self.initial_replicas})")


@dataclass(frozen=True)
class Sample:
    """The system at one tick, after that tick's HPA sync (if any).

    ``desired`` is what the metrics asked for at the latest sync (the proposal before windows,
    policies and min/max), ``current`` the replica count the HPA has set on the Deployment (pods
    that exist), ``ready`` the pods serving.
    """

    time: Seconds
    arrival_rate: float
    queue: float
    desired: int
    current: int
    ready: int


@dataclass(frozen=True)
class ReplayResult:
    """Every tick's sample and every HPA decision of one replay."""

    trace: Trace
    spec: HpaSpec
    config: ReplayConfig
    samples: tuple[Sample, ...]
    decisions: tuple[Decision, ...]

    @property
    def rescales(self) -> tuple[Decision, ...]:
        """The decisions that changed the replica count."""
        return tuple(d for d in self.decisions if d.rescale)


def replay(trace: Trace, spec: HpaSpec, config: ReplayConfig | None = None) -> ReplayResult:
    """Run the trace from t=0 to its end, starting with ``initial_replicas`` (default ``minReplicas``)
    Ready pods and an empty queue."""
    config = config or ReplayConfig()
    initial = spec.min_replicas if config.initial_replicas is None else config.initial_replicas
    sync_ticks = round(config.sync_period / config.tick)
    lag_ticks = round(config.metric_lag / config.tick)
    total_ticks = math.floor(trace.end / config.tick + 1e-9)

    # Creation times of the pods, oldest first; the initial pods are Ready from the start.
    pods: list[float] = [-config.pod_start_delay] * initial
    state = HpaState(current_replicas=initial)
    queue = 0.0
    queue_history: list[float] = []
    samples: list[Sample] = []
    decisions: list[Decision] = []
    desired = initial

    for k in range(total_ticks + 1):
        now = k * config.tick
        queue_history.append(queue)
        if k % sync_ticks == 0:
            observed = queue_history[max(0, k - lag_ticks)]
            ready_before = sum(1 for created in pods if created + config.pod_start_delay <= now)
            state, decision = step(
                state,
                now,
                round(observed, 3),
                spec,
                status_replicas=len(pods),
                ready_pods=ready_before,
            )
            decisions.append(decision)
            if decision.metric_replicas is not None:
                desired = decision.metric_replicas
            target = state.current_replicas
            if target > len(pods):
                pods.extend([now] * (target - len(pods)))
            elif target < len(pods):
                del pods[target:]  # newest (and not yet ready) pods go first
        ready = sum(1 for created in pods if created + config.pod_start_delay <= now)
        rate = trace.rate_at(now)
        samples.append(Sample(Seconds(now), rate, queue, desired, len(pods), ready))
        served = ready * config.capacity_per_replica
        queue = max(0.0, queue + (rate - served) * config.tick)

    return ReplayResult(trace, spec, config, tuple(samples), tuple(decisions))
