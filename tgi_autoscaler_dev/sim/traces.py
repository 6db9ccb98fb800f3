"""Load traces as data: request rate over time, and the arrival times they produce (pure).

A trace is a small frozen dataclass (``constant``, ``step``, ``spike``, ``diurnal``) that can be
written as text (``step:from=2,to=20,at=30``) or JSON, so demos and benchmarks state their load
explicitly. Arrival times are derived from the trace's cumulative rate Λ(t): evenly spaced
(``Λ(t_k) = k + 1/2``) by default, or a non-homogeneous Poisson process by time rescaling
(``Λ(t_k)`` = sum of unit exponentials) with a seed, so a run can be repeated exactly.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

__all__ = [
    "Constant",
    "Diurnal",
    "Spike",
    "Step",
    "Trace",
    "arrival_times",
    "parse_trace",
    "trace_from_dict",
    "trace_to_dict",
]


def _check_rate(name: str, value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
        raise ValueError(f"{name}: must be a finite rate >= 0 requests/s, got {value!r}")


def _check_time(name: str, value: float, *, positive: bool = False) -> None:
    ok = isinstance(value, int | float) and math.isfinite(value) and value >= 0
    if not ok or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{name}: must be a finite number of seconds {bound}, got {value!r}")


@dataclass(frozen=True, slots=True)
class Constant:
    """``rate`` requests/s throughout."""

    kind: ClassVar[str] = "constant"
    rate: float

    def __post_init__(self) -> None:
        _check_rate("constant.rate", self.rate)

    def rate_at(self, t: float) -> float:
        return self.rate

    def cumulative(self, t: float) -> float:
        return self.rate * t

    def peak(self) -> float:
        return self.rate


@dataclass(frozen=True, slots=True)
class Step:
    """``before`` requests/s until ``at`` seconds, ``after`` from then on (text: from=, to=, at=)."""

    kind: ClassVar[str] = "step"
    before: float
    after: float
    at: float

    def __post_init__(self) -> None:
        _check_rate("step.from", self.before)
        _check_rate("step.to", self.after)
        _check_time("step.at", self.at)

    def rate_at(self, t: float) -> float:
        return self.before if t < self.at else self.after

    def cumulative(self, t: float) -> float:
        return self.before * min(t, self.at) + self.after * max(0.0, t - self.at)

    def peak(self) -> float:
        return max(self.before, self.after)


@dataclass(frozen=True, slots=True)
class Spike:
    """``base`` requests/s, raised to ``peak`` during ``[start, start + duration)``."""

    kind: ClassVar[str] = "spike"
    base: float
    peak_rate: float
    start: float
    duration: float

    def __post_init__(self) -> None:
        _check_rate("spike.base", self.base)
        _check_rate("spike.peak", self.peak_rate)
        _check_time("spike.start", self.start)
        _check_time("spike.duration", self.duration, positive=True)

    def rate_at(self, t: float) -> float:
        return self.peak_rate if self.start <= t < self.start + self.duration else self.base

    def cumulative(self, t: float) -> float:
        inside = min(max(t - self.start, 0.0), self.duration)
        return self.base * t + (self.peak_rate - self.base) * inside

    def peak(self) -> float:
        return max(self.base, self.peak_rate)


@dataclass(frozen=True, slots=True)
class Diurnal:
    """A day compressed into ``period`` seconds: ``low`` at t=0, ``high`` at period/2 (cosine)."""

    kind: ClassVar[str] = "diurnal"
    low: float
    high: float
    period: float

    def __post_init__(self) -> None:
        _check_rate("diurnal.min", self.low)
        _check_rate("diurnal.max", self.high)
        _check_time("diurnal.period", self.period, positive=True)
        if self.high < self.low:
            raise ValueError(f"diurnal.max: must be >= min ({self.high} < {self.low})")

    def rate_at(self, t: float) -> float:
        return self.low + (self.high - self.low) * (1 - math.cos(2 * math.pi * t / self.period)) / 2

    def cumulative(self, t: float) -> float:
        w = 2 * math.pi / self.period
        return self.low * t + (self.high - self.low) / 2 * (t - math.sin(w * t) / w)

    def peak(self) -> float:
        return self.high


Trace = Constant | Step | Spike | Diurnal

# Text/JSON parameter names -> dataclass field names, per kind.
_PARAMS: Mapping[str, tuple[type[Trace], Mapping[str, str]]] = {
    "constant": (Constant, {"rate": "rate"}),
    "step": (Step, {"from": "before", "to": "after", "at": "at"}),
    "spike": (Spike, {"base": "base", "peak": "peak_rate", "start": "start", "duration": "duration"}),
    "diurnal": (Diurnal, {"min": "low", "max": "high", "period": "period"}),
}


def trace_from_dict(data: Mapping[str, Any]) -> Trace:
    """``{"kind": "step", "from": 2, "to": 20, "at": 30}`` -> ``Step(2, 20, 30)``."""
    kind = data.get("kind")
    if not isinstance(kind, str) or kind not in _PARAMS:
        raise ValueError(f"trace.kind: must be one of {', '.join(_PARAMS)}, got {kind!r}")
    cls, names = _PARAMS[kind]
    given = {k: v for k, v in data.items() if k != "kind"}
    unknown = sorted(set(given) - set(names))
    missing = sorted(set(names) - set(given))
    if unknown or missing:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing)}")
        if unknown:
            parts.append(f"unknown {', '.join(unknown)}")
        raise ValueError(f"trace {kind}: {'; '.join(parts)} (expects {', '.join(names)})")
    values: dict[str, float] = {}
    for key, value in given.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"trace {kind}.{key}: must be a number, got {value!r}")
        values[names[key]] = float(value)
    return cls(**values)


def trace_to_dict(trace: Trace) -> dict[str, Any]:
    _, names = _PARAMS[trace.kind]
    by_field = {v: k for k, v in names.items()}
    return {"kind": trace.kind, **{by_field[k]: v for k, v in asdict(trace).items()}}


def parse_trace(text: str) -> Trace:
    """``"spike:base=2,peak=30,start=10,duration=20"`` -> ``Spike(...)``."""
    kind, _, rest = text.strip().partition(":")
    data: dict[str, Any] = {"kind": kind.strip()}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"trace {text!r}: expected key=value, got {item!r}")
        try:
            data[key.strip()] = float(value)
        except ValueError:
            raise ValueError(f"trace {text!r}: {key.strip()} must be a number, got {value!r}") from None
    return trace_from_dict(data)


def _invert(trace: Trace, target: float, lo: float, hi: float) -> float:
    """Earliest t in [lo, hi] with Λ(t) >= target (Λ is non-decreasing); ``hi`` if none."""
    if trace.cumulative(hi) < target:
        return hi
    for _ in range(60):
        mid = (lo + hi) / 2
        if trace.cumulative(mid) >= target:
            hi = mid
        else:
            lo = mid
        if hi - lo < 1e-7:
            break
    return hi


def arrival_times(
    trace: Trace,
    *,
    duration_s: float,
    max_requests: int,
    poisson: bool = False,
    seed: int | None = None,
) -> list[float]:
    """Request send times in ``[0, duration_s)``, at most ``max_requests`` of them."""
    _check_time("duration_s", duration_s)
    if not isinstance(max_requests, int) or max_requests < 0:
        raise ValueError(f"max_requests: must be an integer >= 0, got {max_requests!r}")
    rng = random.Random(seed)
    total = trace.cumulative(duration_s)
    times: list[float] = []
    level = 0.0 if poisson else 0.5
    t = 0.0
    while len(times) < max_requests:
        if poisson:
            level += rng.expovariate(1.0)
        elif times:
            level += 1.0
        if level > total:
            break
        t = _invert(trace, level, t, duration_s)
        if t >= duration_s:
            break
        times.append(t)
    return times
