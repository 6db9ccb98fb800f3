"""What Prometheus would answer: scraped samples of every pod, and the two query forms the signals
use, evaluated the way Prometheus evaluates them.

- ``gauge_sum``: ``sum(gauge{...})`` at time ``t``: the latest scrape at or before ``t`` (a pod
  that left gets a staleness marker at the next scrape, so only the latest scrape's pods count);
- ``rate_sum``: ``sum(rate(counter{...}[w]))``: per series, Prometheus' extrapolated rate over the
  samples in ``[t - w, t]`` (``extrapolatedRate`` in promql/functions.go: extrapolate to the window
  edges when a sample is within 1.1 average intervals of them, else by half an interval, and never
  below zero for a counter), then the sum. A series with fewer than two samples in the window has
  no rate, which is why a replica's counter counts only a scrape interval after it became Ready.

No query result (nothing scraped yet, or every series too young) is ``None``, never zero: the
adapter answers an error and the HPA holds.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass

from tgi_autoscaler.servicemodel import ServiceCounters

__all__ = ["Scrapes", "extrapolated_rate"]

Field = Callable[[ServiceCounters], float]


def extrapolated_rate(samples: list[tuple[float, float]], start: float, end: float) -> float | None:
    """Prometheus' ``rate()`` of one counter series over the window ``[start, end]``."""
    if len(samples) < 2:
        return None
    first_t, first_v = samples[0]
    last_t = samples[-1][0]
    increase = 0.0
    previous = first_v
    for _, value in samples[1:]:
        increase += value - previous if value >= previous else value  # a reset starts from zero
        previous = value
    sampled = last_t - first_t
    if sampled <= 0:
        return None
    to_start = first_t - start
    to_end = end - last_t
    average = sampled / (len(samples) - 1)
    if increase > 0 and first_v >= 0:
        to_zero = sampled * (first_v / increase)
        to_start = min(to_start, to_zero)
    threshold = average * 1.1
    interval = sampled
    interval += to_start if to_start < threshold else average / 2
    interval += to_end if to_end < threshold else average / 2
    return increase * (interval / sampled) / (end - start)


@dataclass(slots=True)
class _Scrape:
    time: float
    pods: dict[int, ServiceCounters]


class Scrapes:
    """Every scrape of one service, in time order."""

    def __init__(self) -> None:
        self._times: list[float] = []
        self._scrapes: list[_Scrape] = []

    def record(self, time: float, counters: list[ServiceCounters]) -> None:
        if self._times and time < self._times[-1]:
            raise ValueError("scrapes must be recorded in time order")
        self._times.append(time)
        self._scrapes.append(_Scrape(time, {c.uid: c for c in counters}))

    def latest(self, time: float) -> _Scrape | None:
        index = bisect_right(self._times, time) - 1
        return self._scrapes[index] if index >= 0 else None

    def gauge_sum(self, field: Field, time: float) -> float | None:
        scrape = self.latest(time)
        if scrape is None or not scrape.pods:
            return None
        return float(sum(field(c) for c in scrape.pods.values()))

    def rate_sum(self, field: Field, window: float, time: float) -> float | None:
        lo = bisect_right(self._times, time - window - 1e-9)
        hi = bisect_right(self._times, time)
        series: dict[int, list[tuple[float, float]]] = {}
        for scrape in self._scrapes[lo:hi]:
            for uid, counters in scrape.pods.items():
                series.setdefault(uid, []).append((scrape.time, float(field(counters))))
        rates = [r for s in series.values() if (r := extrapolated_rate(s, time - window, time)) is not None]
        return sum(rates) if rates else None
