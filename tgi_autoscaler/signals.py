"""The scaling signals as data: what each one measures, and the PromQL the adapter serves for it,
from one definition used by the adapter's defaults, the renderer and the backtest.

- ``queue``: requests waiting, summed over the pods (``sum(tgi_queue_size)``). It reads zero below
  capacity and keeps growing while asked-for replicas load the model, so ``ceil(queue / target)``
  overshoots on every burst.
- ``concurrency``: requests in flight (waiting plus running); sees load below capacity, but still
  grows with the backlog.
- ``demand``: requests per second the service must serve: the arrival rate over a window plus the
  backlog spread over a drain horizon (``rate(arrivals[w]) + queue / drain``). The arrival rate does
  not depend on how many replicas exist, so the signal stops growing once enough capacity is asked
  for, even while it is still loading, and it sees load below capacity. With an ``AverageValue``
  target equal to the requests/s one replica carries at the SLO, the HPA's ``ceil(demand / target)``
  is the number of replicas the load needs. No sample is an error, never a zero.

TGI counts arrivals (``tgi_request_count`` is incremented when a request comes in). vLLM and SGLang
count requests when they finish, so for them arrivals are finished requests plus the change in
requests in flight over the same window: equal on average, a little noisier.

A service that scales to zero has no pods, hence no engine series, while it is idle; its requests
wait in the activator (``tgi_autoscaler.activator``) instead. ``DemandSignal.promql_with_held``
serves that service's signal: the engine's demand, read as zero only while the activator reports no
ready replica (never because Prometheus lost the pods' series), plus the held requests drained over
the same horizon as a queue, plus a keep-alive of 0.001 requests/s while a request arrived within
the idle window, so that ``ceil(signal / target)`` keeps one replica until the window has passed
and asks for one on the first held request. No activator series is an error, as ever.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

__all__ = [
    "ACTIVATOR_ACTIVE",
    "ACTIVATOR_HELD",
    "ACTIVATOR_UPSTREAM_READY",
    "DEFAULT_DEMAND",
    "KEEP_ALIVE_RPS",
    "DemandSignal",
    "EngineCounters",
    "SignalKind",
]

# The activator's gauges the held-demand signal reads (one series per activator pod).
ACTIVATOR_HELD: Final = "tgi_autoscaler_activator_held_requests"
ACTIVATOR_UPSTREAM_READY: Final = "tgi_autoscaler_activator_upstream_ready"
ACTIVATOR_ACTIVE: Final = "tgi_autoscaler_activator_active"
# The smallest demand the HPA can tell from zero (one milli-unit): one replica at any target.
KEEP_ALIVE_RPS: Final = 0.001


class SignalKind(StrEnum):
    QUEUE = "queue"
    CONCURRENCY = "concurrency"
    DEMAND = "demand"


@dataclass(frozen=True, slots=True)
class EngineCounters:
    """An engine's Prometheus series the demand signal is computed from."""

    queue: str
    arrivals: str | None = None  # counter incremented on arrival
    finished: str | None = None  # counter incremented on completion (when there is no arrival counter)
    running: str | None = None  # gauge of running requests (with ``finished``)

    def __post_init__(self) -> None:
        if self.arrivals is None and (self.finished is None or self.running is None):
            raise ValueError(
                f"{self.queue}: need an arrival counter, or a finished counter and a running gauge"
            )


@dataclass(frozen=True, slots=True)
class DemandSignal:
    """The demand signal's two time constants, in seconds."""

    rate_window_s: int = 60
    drain_s: int = 60

    def __post_init__(self) -> None:
        if self.rate_window_s < 1:
            raise ValueError(f"rate window: must be >= 1 s (got {self.rate_window_s})")
        if self.drain_s < 1:
            raise ValueError(f"drain horizon: must be >= 1 s (got {self.drain_s})")

    def promql(self, series: EngineCounters) -> str:
        """The adapter's query template (with the ``$matchers`` placeholder) for an engine."""
        w = f"[{self.rate_window_s}s]"
        backlog = f"sum({series.queue}{{$matchers}}) / {self.drain_s}"
        if series.arrivals is not None:
            return f"sum(rate({series.arrivals}{{$matchers}}{w})) + {backlog}"
        inflight_change = (
            f"(sum(delta({series.queue}{{$matchers}}{w})) + sum(delta({series.running}{{$matchers}}{w})))"
            f" / {self.rate_window_s}"
        )
        return f"sum(rate({series.finished}{{$matchers}}{w})) + {inflight_change} + {backlog}"

    def promql_with_held(self, series: EngineCounters) -> str:
        """The query of a service behind the activator: demand plus held requests plus keep-alive.

        The engine's part falls back to zero only through ``max(ready) == 0``: with replicas
        Ready, missing engine series stay missing and the query has no sample (an error).
        """
        engine = f"({self.promql(series)}) or (max({ACTIVATOR_UPSTREAM_READY}{{$matchers}}) == 0)"
        held = f"sum({ACTIVATOR_HELD}{{$matchers}}) / {self.drain_s}"
        keep_alive = f"max({ACTIVATOR_ACTIVE}{{$matchers}}) * {KEEP_ALIVE_RPS}"
        return f"({engine}) + {held} + {keep_alive}"


DEFAULT_DEMAND: Final = DemandSignal()
