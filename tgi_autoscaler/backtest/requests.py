"""Request traces: when each request arrives and how many prompt and output tokens it has.

Two sources. A recorded trace in the Azure LLM inference trace format
(``TIMESTAMP,ContextTokens,GeneratedTokens``; the 2023 conversation trace is CC-BY 4.0, Patel et al.,
"Splitwise", ISCA 2024, and its attribution travels with any copy), scaled in rate (``rate_scale``:
the same minute-by-minute shape with that many times the users) and in time (``time_scale``: the
same requests, compressed, for end-to-end runs that must fit in minutes). Or a built-in shape
(spike, bursts, ramp, diurnal, steady): Poisson arrivals under a piecewise rate, with token counts
drawn from lognormals fitted to that trace (prompt median 1,020 / mean 1,155; output median 129 /
mean 211).
"""

from __future__ import annotations

import csv
import io
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Final

__all__ = [
    "SHAPES",
    "RequestTrace",
    "TraceError",
    "TraceShape",
    "parse_azure_csv",
    "scale_trace",
    "shaped_trace",
]


class TraceError(ValueError):
    """A trace that cannot be replayed; the message names the line or parameter."""


@dataclass(frozen=True, slots=True)
class RequestTrace:
    """Requests sorted by arrival (seconds from the trace's start)."""

    name: str
    arrival: tuple[float, ...]
    prompt_tokens: tuple[int, ...]
    output_tokens: tuple[int, ...]
    duration: float

    def __post_init__(self) -> None:
        n = len(self.arrival)
        if not n:
            raise TraceError(f"trace {self.name}: has no requests")
        if len(self.prompt_tokens) != n or len(self.output_tokens) != n:
            raise TraceError(f"trace {self.name}: columns differ in length")
        if any(b < a for a, b in zip(self.arrival, self.arrival[1:], strict=False)):
            raise TraceError(f"trace {self.name}: arrivals must be sorted")
        if self.duration < self.arrival[-1]:
            raise TraceError(f"trace {self.name}: duration ends before the last arrival")

    def __len__(self) -> int:
        return len(self.arrival)

    @property
    def mean_rate(self) -> float:
        return len(self) / self.duration if self.duration > 0 else math.inf

    @property
    def mean_prompt_tokens(self) -> float:
        return sum(self.prompt_tokens) / len(self)

    @property
    def mean_output_tokens(self) -> float:
        return sum(self.output_tokens) / len(self)

    def rate_per_minute(self) -> list[float]:
        """Requests/s averaged over each minute (for plots and the peak-need estimate)."""
        minutes = max(1, math.ceil(self.duration / 60))
        counts = [0] * minutes
        for t in self.arrival:
            counts[min(int(t // 60), minutes - 1)] += 1
        return [c / 60 for c in counts]


def _timestamp(text: str, number: int, source: str) -> float:
    value = text.strip()
    # Seven fractional digits (.NET ticks) are more than datetime parses; keep microseconds.
    if "." in value:
        head, frac = value.split(".", 1)
        value = f"{head}.{frac[:6]}"
    for fmt in ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S"):
        try:
            return datetime.strptime(value, fmt).timestamp()
        except ValueError:
            continue
    try:
        return float(value)
    except ValueError:
        raise TraceError(f"{source} line {number}: TIMESTAMP {text!r} is not a time") from None


def parse_azure_csv(text: str, *, source: str) -> RequestTrace:
    """A trace from ``TIMESTAMP,ContextTokens,GeneratedTokens`` rows (a header is required)."""
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    wanted = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
    if header is None or [h.strip() for h in header[:3]] != list(wanted):
        raise TraceError(f"{source} line 1: expected the header {','.join(wanted)} (got {header!r})")
    rows: list[tuple[float, int, int]] = []
    for number, row in enumerate(reader, start=2):
        if not row or not "".join(row).strip():
            continue
        if len(row) < 3:
            raise TraceError(f"{source} line {number}: expected 3 columns, got {len(row)}")
        try:
            prompt, output = int(row[1]), int(row[2])
        except ValueError:
            raise TraceError(f"{source} line {number}: token counts {row[1:3]!r} are not integers") from None
        if prompt < 0 or output < 0:
            raise TraceError(f"{source} line {number}: token counts must be >= 0")
        rows.append((_timestamp(row[0], number, source), prompt, max(output, 1)))
    if not rows:
        raise TraceError(f"{source}: no requests")
    rows.sort(key=lambda r: r[0])
    start = rows[0][0]
    arrival = tuple(r[0] - start for r in rows)
    # The trace ends where its last minute does, so the final minute's rate is not inflated.
    duration = max(60.0, math.ceil((arrival[-1] + 1e-9) / 60) * 60)
    return RequestTrace(source, arrival, tuple(r[1] for r in rows), tuple(r[2] for r in rows), duration)


def scale_trace(
    trace: RequestTrace, *, rate_scale: float = 1.0, time_scale: float = 1.0, seed: int = 0
) -> RequestTrace:
    """``rate_scale``: each request stands for that many (whole copies, plus a random share for the
    fraction), each copy shifted by up to a second so they do not arrive at the same instant; the
    per-minute shape is kept. ``time_scale``: every time divided by it (2 = twice as fast)."""
    if not (math.isfinite(rate_scale) and rate_scale > 0):
        raise TraceError(f"rate scale must be > 0 (got {rate_scale})")
    if not (math.isfinite(time_scale) and time_scale > 0):
        raise TraceError(f"time scale must be > 0 (got {time_scale})")
    rng = random.Random(seed)
    whole, fraction = int(rate_scale), rate_scale - int(rate_scale)
    rows: list[tuple[float, int, int]] = []
    for t, p, o in zip(trace.arrival, trace.prompt_tokens, trace.output_tokens, strict=True):
        copies = whole + (1 if rng.random() < fraction else 0)
        for k in range(copies):
            shift = 0.0 if k == 0 else rng.random()
            rows.append((min(t + shift, trace.duration), p, o))
    if not rows:
        raise TraceError(f"rate scale {rate_scale} leaves no requests")
    rows.sort(key=lambda r: r[0])
    name = trace.name
    if rate_scale != 1.0:
        name += f" x{rate_scale:g}"
    if time_scale != 1.0:
        name += f" /{time_scale:g} time"
    return RequestTrace(
        name,
        tuple(r[0] / time_scale for r in rows),
        tuple(r[1] for r in rows),
        tuple(r[2] for r in rows),
        trace.duration / time_scale,
    )


@dataclass(frozen=True, slots=True)
class TraceShape:
    """Parameters of the built-in shapes: base and peak rates (requests/s), times in seconds."""

    base_rate: float = 4.0
    peak_rate: float = 12.0
    start: float = 600.0
    duration: float = 900.0
    end: float = 3600.0

    def __post_init__(self) -> None:
        if not (self.base_rate >= 0 and self.peak_rate >= 0):
            raise TraceError("base and peak rates must be >= 0")
        if not 0 < self.start < self.start + self.duration < self.end:
            raise TraceError(
                f"need 0 < start < start + duration < end (start={self.start}, "
                f"duration={self.duration}, end={self.end})"
            )


RateFn = Callable[[float], float]


def _spike(s: TraceShape) -> RateFn:
    return lambda t: s.peak_rate if s.start <= t < s.start + s.duration else s.base_rate


def _bursts(s: TraceShape) -> RateFn:
    third = s.duration / 3

    def rate(t: float) -> float:
        for i in range(3):
            begin = s.start + 2 * i * third
            if begin <= t < begin + third:
                return s.peak_rate
        return s.base_rate

    return rate


def _ramp(s: TraceShape) -> RateFn:
    def rate(t: float) -> float:
        if s.start <= t < s.start + s.duration:
            return s.base_rate + (s.peak_rate - s.base_rate) * (t - s.start) / s.duration
        return s.base_rate

    return rate


def _diurnal(s: TraceShape) -> RateFn:
    # One day compressed into the trace: a smooth trough-to-peak-to-trough cycle.
    def rate(t: float) -> float:
        phase = (t / s.end) * 2 * math.pi
        return s.base_rate + (s.peak_rate - s.base_rate) * (1 - math.cos(phase)) / 2

    return rate


def _steady(s: TraceShape) -> RateFn:
    return lambda _t: s.base_rate


SHAPES: Final[dict[str, Callable[[TraceShape], RateFn]]] = {
    "spike": _spike,
    "bursts": _bursts,
    "ramp": _ramp,
    "diurnal": _diurnal,
    "steady": _steady,
}

# Lognormal fits to the Azure 2023 conversation trace (mu = ln(median), sigma from mean/median).
_PROMPT = (math.log(1020), math.sqrt(2 * math.log(1155 / 1020)), 4096)
_OUTPUT = (math.log(129), math.sqrt(2 * math.log(211 / 129)), 1000)


def shaped_trace(name: str, shape: TraceShape | None = None, *, seed: int = 0) -> RequestTrace:
    """Poisson arrivals under a built-in rate shape (thinning), tokens from the fitted lognormals."""
    shape = shape or TraceShape()
    try:
        rate = SHAPES[name](shape)
    except KeyError:
        raise TraceError(f"unknown trace shape {name!r} (known: {', '.join(SHAPES)})") from None
    peak = max(shape.base_rate, shape.peak_rate)
    rng = random.Random(seed)
    arrival: list[float] = []
    t = 0.0
    if peak > 0:
        while True:
            t += rng.expovariate(peak)
            if t >= shape.end:
                break
            if rng.random() * peak < rate(t):
                arrival.append(t)
    if not arrival:
        raise TraceError(f"trace shape {name}: no requests at these rates")

    def draw(mu: float, sigma: float, cap: int) -> int:
        return max(1, min(cap, round(rng.lognormvariate(mu, sigma))))

    prompts = tuple(draw(*_PROMPT) for _ in arrival)
    outputs = tuple(draw(*_OUTPUT) for _ in arrival)
    return RequestTrace(name, tuple(arrival), prompts, outputs, shape.end)
