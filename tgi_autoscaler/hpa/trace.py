"""Arrival-rate traces for what-if replays: piecewise-constant request rates over time.

A trace is a sorted list of (start time, requests per second) steps; the rate holds until the next
step. Built-in shapes cover the questions SREs ask of a scaling configuration (how fast do we follow
a burst, how slowly do we let go of it); ``parse_trace_csv`` reads a recorded rate series.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
from bisect import bisect_right
from dataclasses import dataclass
from typing import Final

from tgi_autoscaler.hpa.types import Seconds

__all__ = [
    "TRACE_NAMES",
    "RateStep",
    "Trace",
    "TraceError",
    "TraceShape",
    "build_trace",
    "parse_trace_csv",
]


class TraceError(ValueError):
    """A trace that cannot be replayed; the message names the row or parameter."""


@dataclass(frozen=True)
class RateStep:
    """From ``start`` on, requests arrive at ``rate`` per second."""

    start: Seconds
    rate: float


@dataclass(frozen=True)
class Trace:
    """A named, piecewise-constant arrival rate ending at ``end``."""

    name: str
    steps: tuple[RateStep, ...]
    end: Seconds

    def __post_init__(self) -> None:
        if not self.steps:
            raise TraceError(f"trace {self.name}: needs at least one rate step")
        starts = [float(s.start) for s in self.steps]
        if starts[0] != 0.0:
            raise TraceError(f"trace {self.name}: the first step must start at 0 (got {starts[0]})")
        if any(b <= a for a, b in itertools.pairwise(starts)):
            raise TraceError(f"trace {self.name}: step start times must increase strictly")
        for s in self.steps:
            if not (math.isfinite(s.rate) and s.rate >= 0):
                raise TraceError(f"trace {self.name}: rate at t={s.start} must be >= 0 (got {s.rate})")
        if not self.end > starts[-1]:
            raise TraceError(
                f"trace {self.name}: end ({self.end}) must be after the last step ({starts[-1]})"
            )

    def rate_at(self, time: float) -> float:
        """Requests per second arriving at ``time``."""
        index = bisect_right([s.start for s in self.steps], time) - 1
        return self.steps[max(index, 0)].rate


@dataclass(frozen=True)
class TraceShape:
    """Parameters of the built-in traces (all times in seconds, rates in requests per second)."""

    base_rate: float = 0.8
    factor: float = 3.0
    start: float = 300.0
    duration: float = 900.0
    end: float = 5400.0

    def __post_init__(self) -> None:
        if self.base_rate < 0 or self.factor < 0:
            raise TraceError("base rate and spike factor must be >= 0")
        if self.start <= 0 or self.duration <= 0 or self.end <= self.start + self.duration:
            raise TraceError(
                f"need 0 < start and start + duration < end (start={self.start}, "
                f"duration={self.duration}, end={self.end})"
            )


def _spike(shape: TraceShape) -> Trace:
    """Base load, a step to ``factor`` x base for ``duration``, then base again."""
    return Trace(
        "spike",
        (
            RateStep(Seconds(0.0), shape.base_rate),
            RateStep(Seconds(shape.start), shape.base_rate * shape.factor),
            RateStep(Seconds(shape.start + shape.duration), shape.base_rate),
        ),
        Seconds(shape.end),
    )


def _ramp(shape: TraceShape) -> Trace:
    """Base load rising in one-minute steps to ``factor`` x base over ``duration``, then back at once."""
    minutes = max(1, int(shape.duration // 60))
    steps = [RateStep(Seconds(0.0), shape.base_rate)]
    for i in range(minutes):
        fraction = (i + 1) / minutes
        rate = shape.base_rate * (1 + (shape.factor - 1) * fraction)
        steps.append(RateStep(Seconds(shape.start + i * shape.duration / minutes), rate))
    steps.append(RateStep(Seconds(shape.start + shape.duration), shape.base_rate))
    return Trace("ramp", tuple(steps), Seconds(shape.end))


def _steady(shape: TraceShape) -> Trace:
    return Trace("steady", (RateStep(Seconds(0.0), shape.base_rate),), Seconds(shape.end))


def _bursts(shape: TraceShape) -> Trace:
    """Three short bursts of ``factor`` x base, each ``duration / 3`` long and as far apart."""
    third = shape.duration / 3
    steps = [RateStep(Seconds(0.0), shape.base_rate)]
    for i in range(3):
        begin = shape.start + 2 * i * third
        steps.append(RateStep(Seconds(begin), shape.base_rate * shape.factor))
        steps.append(RateStep(Seconds(begin + third), shape.base_rate))
    end = max(shape.end, float(steps[-1].start) + 1)
    return Trace("bursts", tuple(steps), Seconds(end))


_BUILDERS: Final = {"spike": _spike, "ramp": _ramp, "steady": _steady, "bursts": _bursts}
TRACE_NAMES: Final = tuple(_BUILDERS)


def build_trace(name: str, shape: TraceShape) -> Trace:
    """A built-in trace by name (``spike``, ``ramp``, ``steady``, ``bursts``)."""
    try:
        builder = _BUILDERS[name]
    except KeyError:
        raise TraceError(f"unknown trace {name!r} (known: {', '.join(TRACE_NAMES)})") from None
    return builder(shape)


def parse_trace_csv(text: str, *, name: str, end: float | None = None) -> Trace:
    """A trace from CSV rows ``time_seconds,requests_per_second`` (a header row is allowed).

    The last rate holds until ``end`` (default: one minute after the last row).
    """
    steps: list[RateStep] = []
    for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        if len(row) != 2:
            raise TraceError(f"{name} line {number}: expected 'time_seconds,requests_per_second'")
        try:
            start, rate = float(row[0]), float(row[1])
        except ValueError:
            if not steps and number == 1:
                continue  # header
            raise TraceError(f"{name} line {number}: {row!r} are not numbers") from None
        steps.append(RateStep(Seconds(start), rate))
    if not steps:
        raise TraceError(f"{name}: no rate rows")
    last = float(steps[-1].start)
    return Trace(name, tuple(steps), Seconds(last + 60.0 if end is None else end))
