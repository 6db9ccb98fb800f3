"""One replay: a request trace through the service model, the metrics pipeline and one policy.

The loop keeps the real system's order of things. Prometheus scrapes every pod each
``scrape_interval``; the HPA syncs every ``sync_period`` and reads the signal as the adapter serves
it at that moment (the latest scrape; the adapter's cache is far shorter than a scrape and is left
out); its decision sets ``spec.replicas`` and the Deployment adds pods that are Ready one cold
start later. A KPA-style policy instead samples in-flight requests every second, as Knative's
queue-proxy reports them, and decides every tick. Requests are routed to Ready pods as they arrive.

With ``scale_to_zero`` (``minReplicas: 0``) the activator sits in front: a request that finds no
Ready pod is held (at most ``max_held``, for at most ``max_wait_s``, else refused) and released to
the first pod that becomes Ready, so its TTFT includes the wake-up (the cold start). Each scrape
also reads the activator; the signal becomes the held-demand one of ``tgi_autoscaler.signals``:
the engine's signal (zero while no pod is Ready), plus the held requests (over the drain horizon
for demand), plus 0.001 while a request arrived within ``idle_after_s``.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, replace
from typing import Protocol

from tgi_autoscaler.backtest.policies import HpaPolicy, KpaPolicy, Policy
from tgi_autoscaler.backtest.requests import RequestTrace
from tgi_autoscaler.backtest.scrape import Scrapes
from tgi_autoscaler.backtest.signals import evaluate
from tgi_autoscaler.hpa.controller import HpaState, step
from tgi_autoscaler.hpa.types import FeatureGates, HpaSpec
from tgi_autoscaler.servicemodel import ColdStart, RequestLog, ServerParams, Service
from tgi_autoscaler.signals import KEEP_ALIVE_RPS, SignalKind

__all__ = ["RunConfig", "RunResult", "ScaleToZero", "Tick", "replay"]


@dataclass(frozen=True, slots=True)
class ScaleToZero:
    """The activator's bounds and the idle window (``autoscaling.scaleToZero``)."""

    idle_after_s: float = 900.0
    max_held: int = 256
    max_wait_s: float = 300.0

    def __post_init__(self) -> None:
        if not self.idle_after_s > 0:
            raise ValueError(f"idle window: must be > 0 s (got {self.idle_after_s})")
        if self.max_held < 1:
            raise ValueError(f"max held requests: must be >= 1 (got {self.max_held})")
        if not self.max_wait_s > 0:
            raise ValueError(f"max wait: must be > 0 s (got {self.max_wait_s})")


@dataclass(frozen=True, slots=True)
class RunConfig:
    """The servers, the bounds and the pipeline around the policy."""

    params: ServerParams
    cold_start: ColdStart
    min_replicas: int = 1
    max_replicas: int = 10
    initial_replicas: int | None = None
    scrape_interval_s: float = 10.0
    drain_after_s: float = 300.0
    seed: int = 0
    scale_to_zero: ScaleToZero | None = None

    def __post_init__(self) -> None:
        lowest = 0 if self.scale_to_zero is not None else 1
        if not lowest <= self.min_replicas <= self.max_replicas:
            raise ValueError(
                f"need {lowest} <= minReplicas <= maxReplicas (got {self.min_replicas}, {self.max_replicas})"
                + ("" if lowest == 0 else "; minReplicas 0 needs scale_to_zero")
            )
        if self.scrape_interval_s <= 0:
            raise ValueError(f"scrape interval must be > 0 (got {self.scrape_interval_s})")


@dataclass(frozen=True, slots=True)
class Tick:
    """The system at one controller decision: what it read, what it asked for, what serves."""

    time: float
    signal: float | None
    desired: int
    replicas: int
    ready: int
    queue: int


@dataclass(frozen=True)
class RunResult:
    policy: Policy
    trace: RequestTrace
    config: RunConfig
    log: RequestLog
    ticks: tuple[Tick, ...]
    gpu_seconds: float
    end: float
    rescales: int


class _Activator:
    """Requests held while no pod is Ready, and what each scrape of the activator read."""

    def __init__(self, settings: ScaleToZero, log: RequestLog) -> None:
        self.settings = settings
        self.log = log
        self.held: deque[int] = deque()
        self.last_arrival = -math.inf
        self.scraped: tuple[int, bool, bool] | None = None  # (held, active, upstream ready)

    def arrive(self, rid: int, now: float, service: Service) -> None:
        self.last_arrival = now
        if service.ready:
            service.arrive(rid, now)
        elif len(self.held) >= self.settings.max_held:
            self.log.rejected[rid] = True  # 503 with Retry-After
        else:
            self.held.append(rid)

    def next_event(self, service: Service) -> float:
        """When held requests next change: a pod becomes Ready, or the oldest one times out."""
        if not self.held:
            return math.inf
        return min(service.next_ready_at(), self.log.arrival[self.held[0]] + self.settings.max_wait_s)

    def settle(self, now: float, service: Service) -> None:
        """After ``service.advance(now)``: refuse what waited too long, release the rest if Ready."""
        while self.held and self.log.arrival[self.held[0]] + self.settings.max_wait_s <= now + 1e-9:
            self.log.rejected[self.held.popleft()] = True
        if service.ready:
            while self.held:
                service.arrive(self.held.popleft(), now)

    def scrape(self, now: float, service: Service) -> None:
        active = now - self.last_arrival < self.settings.idle_after_s
        self.scraped = (len(self.held), active, service.ready > 0)

    def signal(self, kind: SignalKind, engine: float | None, drain_s: int) -> float | None:
        """The held-demand signal from the engine's value and the last activator scrape."""
        if self.scraped is None:
            return None
        held, active, ready = self.scraped
        if engine is None:
            if ready:
                return None  # replicas Ready but no engine series: an error, never a zero
            engine = 0.0
        held_part = held / drain_s if kind is SignalKind.DEMAND else float(held)
        return engine + held_part + (KEEP_ALIVE_RPS if active else 0.0)


class _Controller(Protocol):
    period: float
    samples_every: float  # seconds between ``observe`` calls; infinity: never

    def observe(self, now: float, service: Service) -> None: ...

    def decide(self, now: float, service: Service, scrapes: Scrapes) -> tuple[int, float | None]: ...


class _Hpa:
    """The HPA controller's sync loop for one HPA (``tgi_autoscaler.hpa.step``)."""

    samples_every = math.inf

    def __init__(self, policy: HpaPolicy, config: RunConfig, activator: _Activator | None = None) -> None:
        if policy.target is None:
            raise ValueError(f"policy {policy.name}: resolve the target first")
        self.policy = policy
        self.activator = activator
        self.period = policy.sync_period_s
        self.spec = HpaSpec(
            min_replicas=config.min_replicas,
            max_replicas=config.max_replicas,
            target_average_value=policy.target,
            behavior=policy.behavior,
            tolerance=policy.tolerance,
            metric_name=str(policy.signal),
            downscale_stabilization_seconds=policy.downscale_stabilization_s,
            feature_gates=FeatureGates(scale_to_zero=config.scale_to_zero is not None),
        )
        initial = config.min_replicas if config.initial_replicas is None else config.initial_replicas
        # Starting at zero is starting where the HPA itself left the service (ScaledToZero).
        self.state = HpaState(current_replicas=initial, scaled_to_zero=initial == 0)

    def observe(self, now: float, service: Service) -> None:
        return None

    def decide(self, now: float, service: Service, scrapes: Scrapes) -> tuple[int, float | None]:
        value = evaluate(self.policy.signal, scrapes, now, self.policy.demand)
        if self.activator is not None:
            value = self.activator.signal(self.policy.signal, value, self.policy.demand.drain_s)
        self.state = replace(self.state, current_replicas=service.replicas)
        self.state, _ = step(
            self.state,
            now,
            None if value is None else round(value, 3),
            self.spec,
            status_replicas=service.replicas,
            ready_pods=min(service.ready, service.replicas),
        )
        return self.state.current_replicas, value


class _Kpa:
    """Knative's KPA decision (stable and panic windows over sampled concurrency), every tick."""

    samples_every = 1.0

    def __init__(self, policy: KpaPolicy, config: RunConfig, activator: _Activator | None = None) -> None:
        if policy.target_concurrency is None or policy.target_concurrency <= 0:
            raise ValueError(f"policy {policy.name}: resolve the target concurrency first")
        self.policy = policy
        self.activator = activator
        self.config = config
        self.target = policy.target_concurrency
        self.period = policy.tick_s
        self.panic_window = policy.stable_window_s * policy.panic_window_pct / 100
        self.samples: deque[tuple[float, int]] = deque()
        self.panic_since: float | None = None
        self.max_panic = 0

    def observe(self, now: float, service: Service) -> None:
        held = 0 if self.activator is None else len(self.activator.held)
        self.samples.append((now, held + sum(c.queue + c.running for c in service.counters())))

    def decide(self, now: float, service: Service, scrapes: Scrapes) -> tuple[int, float | None]:
        policy = self.policy
        samples = self.samples
        while samples and samples[0][0] <= now - policy.stable_window_s:
            samples.popleft()
        if not samples:
            return service.replicas, None
        stable = sum(v for _, v in samples) / len(samples)
        recent = [v for t, v in samples if t > now - self.panic_window] or [samples[-1][1]]
        panic = sum(recent) / len(recent)
        ready = max(service.ready, 1)
        want_stable = math.ceil(stable / self.target)
        want_panic = math.ceil(panic / self.target)
        if want_panic / ready >= policy.panic_threshold:
            self.panic_since = now
        elif self.panic_since is not None and now - self.panic_since >= policy.stable_window_s:
            self.panic_since, self.max_panic = None, 0
        if self.panic_since is not None:
            desired = max(want_panic, self.max_panic, service.replicas)  # panic never scales down
            self.max_panic = desired
        else:
            desired = want_stable
        up_limit = math.ceil(policy.max_scale_up_rate * ready)
        down_limit = math.floor(ready / policy.max_scale_down_rate)
        desired = max(min(desired, up_limit), down_limit)
        return max(self.config.min_replicas, min(self.config.max_replicas, desired)), stable


def replay(trace: RequestTrace, policy: Policy, config: RunConfig) -> RunResult:
    """Replay ``trace`` under ``policy``; GPU time is counted over the trace's duration, and the
    replay goes on (without new arrivals) until the last request has its answer."""
    log = RequestLog(list(trace.arrival), list(trace.prompt_tokens), list(trace.output_tokens))
    initial = config.min_replicas if config.initial_replicas is None else config.initial_replicas
    service = Service(config.params, config.cold_start, log, initial_replicas=initial, seed=config.seed)
    scrapes = Scrapes()
    activator = None if config.scale_to_zero is None else _Activator(config.scale_to_zero, log)
    controller: _Controller = (
        _Hpa(policy, config, activator) if isinstance(policy, HpaPolicy) else _Kpa(policy, config, activator)
    )
    end = trace.duration + config.drain_after_s
    ticks: list[Tick] = []
    rescales = 0
    gpu_seconds: float | None = None
    next_scrape, next_sync, next_sample = 0.0, controller.period, 0.0
    arrivals = trace.arrival
    index, n = 0, len(arrivals)
    while True:
        upcoming = arrivals[index] if index < n else math.inf
        control = min(
            next_scrape, next_sync, next_sample, trace.duration if gpu_seconds is None else math.inf
        )
        held_event = math.inf if activator is None else activator.next_event(service)
        if held_event < min(upcoming, control) and held_event <= end:
            assert activator is not None
            service.advance(held_event)
            activator.settle(held_event, service)
            continue
        if upcoming <= control:
            service.advance(upcoming)
            if activator is None:
                service.arrive(index, upcoming)
            else:
                activator.settle(upcoming, service)
                activator.arrive(index, upcoming, service)
            index += 1
            continue
        idle = _idle(service) and (activator is None or not activator.held)
        if control > end or (index >= n and gpu_seconds is not None and idle):
            break
        service.advance(control)
        if activator is not None:
            activator.settle(control, service)
        if gpu_seconds is None and control >= trace.duration:
            gpu_seconds = service.gpu_seconds
        if control == next_scrape:
            scrapes.record(control, service.counters())
            if activator is not None:
                activator.scrape(control, service)
            next_scrape += config.scrape_interval_s
        if control == next_sample:
            controller.observe(control, service)
            next_sample += controller.samples_every
        if control == next_sync:
            before = service.replicas
            desired, value = controller.decide(control, service, scrapes)
            if desired != before:
                service.scale_to(desired, control)
                rescales += 1
            ticks.append(Tick(control, value, desired, service.replicas, service.ready, _queue(service)))
            next_sync += controller.period
    return RunResult(
        policy, trace, config, log, tuple(ticks), gpu_seconds or service.gpu_seconds, service.now, rescales
    )


def _queue(service: Service) -> int:
    return sum(c.queue for c in service.counters())


def _idle(service: Service) -> bool:
    return all(c.queue == 0 and c.running == 0 for c in service.counters())
