"""The scaling signals as data: what each one measures, in PromQL for the adapter and as a function
of scraped samples for the backtest, from one definition.

- ``queue``: requests waiting, summed over the pods (``sum(tgi_queue_size)``). It reads zero below
  capacity and keeps growing while asked-for replicas load the model, so ``ceil(queue / target)``
  overshoots on every burst.
- ``concurrency``: requests in flight (waiting plus running); sees load below capacity, but still
  grows with the backlog.
- ``demand``: requests per second the service must serve: the arrival rate over a window, plus the
  backlog spread over a drain horizon (``rate(arrivals[w]) + queue / drain``). The arrival rate does
  not depend on how many replicas exist, so the signal stops growing once enough capacity is asked
  for, even while it is still loading; and it sees load below capacity. With an ``AverageValue``
  target equal to the requests/s one replica carries at the SLO, the HPA's ``ceil(demand / target)``
  is the number of replicas the load needs. No sample is an error, never a zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from tgi_autoscaler.backtest.scrape import Scrapes

__all__ = ["DEFAULT_DEMAND", "DemandSignal", "SignalKind", "evaluate"]


class SignalKind(StrEnum):
    QUEUE = "queue"
    CONCURRENCY = "concurrency"
    DEMAND = "demand"


@dataclass(frozen=True, slots=True)
class DemandSignal:
    """The demand signal's two time constants (seconds)."""

    rate_window_s: int = 60
    drain_s: int = 60

    def __post_init__(self) -> None:
        if self.rate_window_s < 1:
            raise ValueError(f"demand.rateWindowSeconds: must be >= 1 (got {self.rate_window_s})")
        if self.drain_s < 1:
            raise ValueError(f"demand.drainSeconds: must be >= 1 (got {self.drain_s})")

    def promql(self, *, arrivals: str, queue: str) -> str:
        """The adapter's query template for an engine's arrival counter and queue gauge."""
        return (
            f"sum(rate({arrivals}{{$matchers}}[{self.rate_window_s}s]))"
            f" + sum({queue}{{$matchers}}) / {self.drain_s}"
        )


DEFAULT_DEMAND: Final = DemandSignal()


def evaluate(kind: SignalKind, scrapes: Scrapes, time: float, demand: DemandSignal) -> float | None:
    """The signal's value at ``time`` as the adapter would serve it (``None``: no data)."""
    if kind is SignalKind.QUEUE:
        return scrapes.gauge_sum(lambda c: c.queue, time)
    if kind is SignalKind.CONCURRENCY:
        return scrapes.gauge_sum(lambda c: c.queue + c.running, time)
    rate = scrapes.rate_sum(lambda c: c.arrivals, demand.rate_window_s, time)
    queue = scrapes.gauge_sum(lambda c: c.queue, time)
    if rate is None or queue is None:
        return None
    return rate + queue / demand.drain_s
