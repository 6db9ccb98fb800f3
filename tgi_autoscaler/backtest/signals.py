"""The signals of ``tgi_autoscaler.signals`` evaluated on scraped samples, the way the adapter's
PromQL evaluates them on Prometheus (``scrape.Scrapes``)."""

from __future__ import annotations

from tgi_autoscaler.backtest.scrape import Scrapes
from tgi_autoscaler.signals import DemandSignal, SignalKind

__all__ = ["evaluate"]


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
