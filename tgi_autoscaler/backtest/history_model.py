"""A service's own Prometheus history as a request trace, and the capacity numbers fitted from it (pure).

``backtest.history`` runs the queries; everything it gets back is turned into a ``RequestTrace`` and
a ``Calibration`` here, so the arithmetic is tested without a Prometheus.

Counters are read at the step boundaries of a range query (``t_0 = start``, ``t_k = start + k *
step``) and differenced per series, the way ``increase`` would but without its extrapolation: a
decrease is a restart (the new value is the increase), a series first seen after ``t_0`` is a new pod
whose counter started at zero. So the arrivals of a step are whole requests and their sum over the
range is exactly what the servers counted.

- Arrivals: the increase of the engine's request counter in each step, spread over the step as a
  Poisson process conditioned on that count (uniform order statistics), seeded. TGI counts requests
  when they arrive; vLLM and SGLang only when they finish, so for them the trace is finished
  requests (shifted by one request's latency, and requests still running at the end are missing).
- Token counts: TGI and vLLM export per-request histograms. Each step's requests get the bucket
  distribution of that step (stratified: every bucket gets its share, remainders by a seeded draw),
  placed inside their buckets so that the step's mean equals ``_sum / _count``. A step without
  observations (e.g. outputs are observed when requests finish) takes the whole range's
  distribution. SGLang only counts token totals, so its steps get a lognormal around the step's mean
  with the spread of the Azure conversation trace.
- No sample where a counter must have one is an error naming the series and the time range, never
  a zero.

Calibration fits ``decode_step_s`` and ``batch_slowdown`` of ``ServerParams`` by weighted least
squares of each step's mean time per output token against its mean running batch size, and the cold
start's lognormal median and sigma from kube-state-metrics (pod created to Ready).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import yaml

from tgi_autoscaler.backtest.requests import RequestTrace, TraceError
from tgi_autoscaler.config.service import CapacitySpec
from tgi_autoscaler.engines import ENGINES, Engine
from tgi_autoscaler.promql import Matcher, MatchOp, format_matchers, label_value_errors, regex_escape
from tgi_autoscaler.render.selectors import SERVICE_LABEL
from tgi_autoscaler.servicemodel.params import ColdStart, ServerParams

__all__ = [
    "ENGINE_SERIES",
    "OUTPUT_SIGMA",
    "PROMPT_SIGMA",
    "Calibration",
    "ColdStartFit",
    "DecodeFit",
    "Grid",
    "HistoryError",
    "HistorySeries",
    "Series",
    "StepHistogram",
    "TokenSteps",
    "batch_per_step",
    "build_trace",
    "capacity_yaml",
    "cold_start_samples",
    "counter_steps",
    "engine_series",
    "fit_cold_start",
    "fit_decode",
    "format_calibration",
    "histogram_steps",
    "iso",
    "parse_matrix",
    "pod_matchers",
    "service_matchers",
    "token_steps_histogram",
    "token_steps_totals",
]


class HistoryError(TraceError):
    """History that cannot become a trace or a fit; the message names the series, flag or time range."""


@dataclass(frozen=True, slots=True)
class HistorySeries:
    """The series of one engine that a history import reads (histograms by base name)."""

    engine: str
    requests: str  # counter of requests
    requests_are_arrivals: bool  # False: counted when they finish
    prompt_tokens: str
    output_tokens: str
    tokens_are_histograms: bool  # False: counters of token totals
    decode_latency: str  # histogram, seconds per output token
    latency_includes_first: bool  # the first token (prefill) is part of the per-token mean
    running: str  # gauge: sequences in the running batch


def _history_series(engine: Engine) -> HistorySeries | None:
    m = engine.metrics
    requests = m.requests or m.finished
    if requests is None or m.prompt_tokens is None or m.output_tokens is None:
        return None
    if m.decode_latency is None or m.running is None:
        return None
    return HistorySeries(
        engine=m.engine,
        requests=requests,
        requests_are_arrivals=m.requests is not None,
        prompt_tokens=m.prompt_tokens,
        output_tokens=m.output_tokens,
        tokens_are_histograms=m.tokens_are_histograms,
        decode_latency=m.decode_latency,
        latency_includes_first=m.decode_latency_includes_first,
        running=m.running,
    )


# Derived from the engine table: an engine's series have one home (``tgi_autoscaler.engines``).
ENGINE_SERIES: Final[Mapping[str, HistorySeries]] = {
    series.engine: series for engine in ENGINES.values() if (series := _history_series(engine)) is not None
}

# The spread (lognormal sigma) of the Azure conversation trace's token counts, for engines that only
# export token totals (see backtest.requests).
PROMPT_SIGMA: Final = math.sqrt(2 * math.log(1155 / 1020))
OUTPUT_SIGMA: Final = math.sqrt(2 * math.log(211 / 129))
_TOKEN_CAP: Final = 1_000_000


def engine_series(engine: str) -> HistorySeries:
    try:
        return ENGINE_SERIES[engine]
    except KeyError:
        known = ", ".join(ENGINE_SERIES)
        raise HistoryError(f"--engine: unknown engine {engine!r} (known: {known})") from None


def _check_label_value(flag: str, value: str) -> None:
    if not value:
        raise HistoryError(f"{flag}: must not be empty")
    if errors := label_value_errors(value):
        raise HistoryError(f"{flag}: {value!r} is not a valid label value: {'; '.join(errors)}")


def service_matchers(namespace: str, service: str) -> str:
    """The matcher list (no braces) selecting one service's engine series."""
    _check_label_value("--namespace", namespace)
    _check_label_value("--service-name", service)
    return format_matchers(
        [Matcher("namespace", MatchOp.EQUAL, namespace), Matcher(SERVICE_LABEL, MatchOp.EQUAL, service)]
    )


def pod_matchers(namespace: str, service: str) -> str:
    """The matcher list selecting the service's pods in kube-state-metrics series (a Deployment's pods
    are named ``<service>-<template hash>-<suffix>``)."""
    _check_label_value("--namespace", namespace)
    _check_label_value("--service-name", service)
    return format_matchers(
        [
            Matcher("namespace", MatchOp.EQUAL, namespace),
            Matcher("pod", MatchOp.REGEX, f"{regex_escape(service)}-[a-z0-9]+-[a-z0-9]+"),
        ]
    )


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class Grid:
    """Step boundaries ``start + k * step`` for ``k = 0..steps``; step ``k`` (1-based) is
    ``(t_{k-1}, t_k]``."""

    start: float
    step: float
    steps: int

    def __post_init__(self) -> None:
        if not (math.isfinite(self.step) and self.step > 0):
            raise HistoryError(f"--step: must be > 0 (got {self.step!r})")
        if self.steps < 1:
            raise HistoryError("--since/--until: the range must be at least one --step long")

    @property
    def end(self) -> float:
        return self.start + self.step * self.steps

    def time(self, k: int) -> float:
        return self.start + self.step * k

    def index(self, t: float) -> int | None:
        """The boundary ``t`` falls on (within a millisecond), if any."""
        k = round((t - self.start) / self.step)
        return k if 0 <= k <= self.steps and abs(self.time(k) - t) < 1e-3 else None

    def step_of(self, t: float) -> int | None:
        """The step (1..steps) a raw sample at ``t`` belongs to, if any."""
        if not self.start < t <= self.end:
            return None
        return min(self.steps, max(1, math.ceil((t - self.start) / self.step - 1e-9)))

    def describe(self, first: int, last: int) -> str:
        return f"{iso(self.time(first))} .. {iso(self.time(last))}"


@dataclass(frozen=True, slots=True)
class Series:
    labels: Mapping[str, str]
    samples: tuple[tuple[float, float], ...]

    @property
    def key(self) -> tuple[tuple[str, str], ...]:
        return tuple(sorted(self.labels.items()))


def parse_matrix(result: Iterable[Mapping[str, Any]], *, what: str) -> list[Series]:
    """Series from a Prometheus ``matrix`` result (``[{"metric": {...}, "values": [[t, "v"], ...]}]``)."""
    series: list[Series] = []
    for item in result:
        try:
            labels = {str(k): str(v) for k, v in dict(item.get("metric") or {}).items()}
            samples = tuple((float(t), float(v)) for t, v in item["values"])
        except (KeyError, TypeError, ValueError) as exc:
            raise HistoryError(f"{what}: Prometheus returned a result that is not a matrix ({exc})") from None
        series.append(Series(labels, samples))
    return series


def _missing(what: str, grid: Grid, first: int, last: int) -> HistoryError:
    return HistoryError(f"no samples of {what} between {grid.describe(first, last)}")


def _series_increases(series: Series, grid: Grid) -> list[float]:
    """Per-step increases (index 1..steps; index 0 unused) of one counter series on the grid."""
    out = [0.0] * (grid.steps + 1)
    previous: float | None = None
    for t, value in sorted(series.samples):
        k = grid.index(t)
        if k is None or math.isnan(value):
            continue
        if previous is None:
            if k > 0:
                out[k] += value  # a new series: the counter started at zero within this step
        elif value >= previous:
            out[k] += value - previous
        else:
            out[k] += value  # a restart
        previous = value
    return out


def _coverage(series: Sequence[Series], grid: Grid) -> list[bool]:
    seen = [False] * (grid.steps + 1)
    for s in series:
        for t, value in s.samples:
            k = grid.index(t)
            if k is not None and not math.isnan(value):
                seen[k] = True
    return seen


def _require_coverage(series: Sequence[Series], grid: Grid, what: str) -> None:
    """Every boundary must have a sample of some series: a gap is missing data, not zero traffic."""
    if not series:
        raise _missing(what, grid, 0, grid.steps)
    seen = _coverage(series, grid)
    k = 0
    while k <= grid.steps:
        if seen[k]:
            k += 1
            continue
        first = k
        while k <= grid.steps and not seen[k]:
            k += 1
        raise _missing(what, grid, max(first - 1, 0), min(k, grid.steps))


def counter_steps(series: Sequence[Series], grid: Grid, what: str, *, require: bool = True) -> list[float]:
    """The counter's increase in each step, summed over series (a list of ``grid.steps`` numbers)."""
    if require:
        _require_coverage(series, grid, what)
    total = [0.0] * (grid.steps + 1)
    for s in series:
        for k, value in enumerate(_series_increases(s, grid)):
            total[k] += value
    return total[1:]


@dataclass(frozen=True, slots=True)
class StepHistogram:
    """Observations of one step: non-cumulative bucket counts under ``bounds`` (last is +Inf)."""

    bounds: tuple[float, ...]
    counts: tuple[float, ...]
    sum: float
    count: float

    @property
    def mean(self) -> float:
        return self.sum / self.count if self.count > 0 else math.nan

    def __add__(self, other: StepHistogram) -> StepHistogram:
        if other.bounds != self.bounds:
            raise HistoryError("histogram bucket layouts differ between steps")
        counts = tuple(a + b for a, b in zip(self.counts, other.counts, strict=True))
        return StepHistogram(self.bounds, counts, self.sum + other.sum, self.count + other.count)

    def draw(self, n: int, rng: random.Random, *, minimum: int) -> list[int]:
        """``n`` values with this step's bucket shares, placed so their mean is ``sum / count``."""
        if n <= 0:
            return []
        lowers = (0.0, *self.bounds[:-1])
        finite = [(lo, hi, c) for lo, hi, c in zip(lowers, self.bounds, self.counts, strict=True) if c > 0]
        total = sum(c for _, _, c in finite)
        if total <= 0:
            raise HistoryError("histogram step has no observations")
        # Where in its bucket each value sits: one fraction for the whole step, chosen so that the
        # placed values have the observed mean (values in the +Inf bucket take what is left over).
        bounded = [(lo, hi, c) for lo, hi, c in finite if math.isfinite(hi)]
        inf_count = sum(c for _, hi, c in finite if not math.isfinite(hi))
        values: list[tuple[float, float]] = []  # (value, share)
        if inf_count > 0:
            placed = sum(c * (lo + hi) / 2 for lo, hi, c in bounded)
            last = lowers[-1]
            tail = max(last, (self.sum - placed) / inf_count) if self.count > 0 else last
            values = [((lo + hi) / 2, c) for lo, hi, c in bounded] + [(tail, inf_count)]
        else:
            width = sum(c * (hi - lo) for lo, hi, c in bounded)
            base = sum(c * lo for lo, _, c in bounded)
            fraction = 0.5 if width <= 0 or self.count <= 0 else (self.sum - base) / width
            fraction = min(1.0, max(0.0, fraction))
            values = [(lo + fraction * (hi - lo), c) for lo, hi, c in bounded]
        # Stratified allocation: floor of each share, the remainders by a seeded weighted draw.
        exact = [n * c / total for _, c in values]
        counts = [int(x) for x in exact]
        remainders = [x - int(x) for x in exact]
        for _ in range(n - sum(counts)):
            pick = rng.choices(range(len(values)), weights=[r + 1e-12 for r in remainders])[0]
            counts[pick] += 1
            remainders[pick] = 0.0
        out = [
            max(minimum, min(_TOKEN_CAP, round(value)))
            for (value, _), m in zip(values, counts, strict=True)
            for _ in range(m)
        ]
        rng.shuffle(out)
        return out


def _le(value: str) -> float:
    try:
        return math.inf if value in ("+Inf", "Inf", "inf") else float(value)
    except ValueError:
        raise HistoryError(f"histogram bucket with le={value!r}") from None


def histogram_steps(
    buckets: Sequence[Series], sums: Sequence[Series], counts: Sequence[Series], grid: Grid, what: str
) -> list[StepHistogram | None]:
    """Each step's observations of a histogram (``None`` where none were observed).

    The series must exist somewhere in the range (else an error naming it); a step where no pod has
    it yet had no observations.
    """
    if not buckets or not counts or not sums:
        raise _missing(f"{what} (_bucket, _sum, _count)", grid, 0, grid.steps)
    by_le: dict[float, list[float]] = {}
    for s in buckets:
        if "le" not in s.labels:
            raise HistoryError(f"{what}_bucket: a series without le ({dict(s.labels)})")
        increases = _series_increases(s, grid)
        total = by_le.setdefault(_le(s.labels["le"]), [0.0] * (grid.steps + 1))
        for k, value in enumerate(increases):
            total[k] += value
    bounds = tuple(sorted(by_le))
    if not bounds or not math.isinf(bounds[-1]):
        raise HistoryError(f'{what}_bucket: no le="+Inf" bucket')
    step_sums = counter_steps(sums, grid, f"{what}_sum", require=False)
    step_counts = counter_steps(counts, grid, f"{what}_count", require=False)
    out: list[StepHistogram | None] = []
    for k in range(1, grid.steps + 1):
        cumulative = [by_le[b][k] for b in bounds]
        per_bucket: list[float] = []
        running = 0.0
        for c in cumulative:
            per_bucket.append(max(0.0, c - running))
            running = max(running, c)
        if step_counts[k - 1] <= 0 or sum(per_bucket) <= 0:
            out.append(None)
            continue
        out.append(StepHistogram(bounds, tuple(per_bucket), step_sums[k - 1], step_counts[k - 1]))
    return out


@dataclass(frozen=True, slots=True)
class TokenSteps:
    """Where a step's token counts come from: histograms, or (SGLang) total tokens and requests."""

    what: str
    histograms: Sequence[StepHistogram | None] | None = None
    totals: Sequence[float] | None = None
    requests: Sequence[float] | None = None
    sigma: float = 0.0

    def means(self) -> list[float]:
        if self.histograms is not None:
            return [math.nan if h is None else h.mean for h in self.histograms]
        assert self.totals is not None
        assert self.requests is not None
        return [t / r if r > 0 else math.nan for t, r in zip(self.totals, self.requests, strict=True)]

    def drawer(self, grid: Grid, *, minimum: int) -> _Drawer:
        if self.histograms is not None:
            present = [h for h in self.histograms if h is not None]
            if not present:
                raise _missing(f"{self.what} observations", grid, 0, grid.steps)
            pooled = present[0]
            for h in present[1:]:
                pooled = pooled + h
            return _Drawer(list(self.histograms), pooled, None, None, 0.0, minimum)
        means = self.means()
        if all(math.isnan(m) for m in means):
            raise _missing(f"{self.what} with finished requests", grid, 0, grid.steps)
        assert self.totals is not None
        assert self.requests is not None
        pooled_mean = sum(self.totals) / sum(self.requests)
        return _Drawer(None, None, means, pooled_mean, self.sigma, minimum)


@dataclass(slots=True)
class _Drawer:
    histograms: list[StepHistogram | None] | None
    pooled: StepHistogram | None
    means: list[float] | None
    pooled_mean: float | None
    sigma: float
    minimum: int

    def draw(self, k: int, n: int, rng: random.Random) -> list[int]:
        if self.histograms is not None:
            histogram = self.histograms[k] or self.pooled
            assert histogram is not None
            return histogram.draw(n, rng, minimum=self.minimum)
        assert self.means is not None
        assert self.pooled_mean is not None
        mean = self.means[k] if not math.isnan(self.means[k]) else self.pooled_mean
        mu = math.log(max(mean, 1e-9)) - self.sigma**2 / 2
        return [
            max(self.minimum, min(_TOKEN_CAP, round(rng.lognormvariate(mu, self.sigma)))) for _ in range(n)
        ]


def build_trace(
    name: str,
    grid: Grid,
    arrivals: Sequence[float],
    prompt: TokenSteps,
    output: TokenSteps,
    *,
    seed: int = 0,
) -> RequestTrace:
    """Requests per step from ``arrivals``, at Poisson times within the step, with drawn token counts."""
    if len(arrivals) != grid.steps:
        raise HistoryError(f"{name}: {len(arrivals)} arrival counts for {grid.steps} steps")
    rng = random.Random(seed)
    prompts, outputs = prompt.drawer(grid, minimum=0), output.drawer(grid, minimum=1)
    times: list[float] = []
    prompt_tokens: list[int] = []
    output_tokens: list[int] = []
    for k, count in enumerate(arrivals):
        n = round(count)
        if n <= 0:
            continue
        begin = k * grid.step
        times.extend(sorted(begin + grid.step * (1.0 - rng.random()) for _ in range(n)))
        prompt_tokens.extend(prompts.draw(k, n, rng))
        outputs_k = outputs.draw(k, n, rng)
        output_tokens.extend(outputs_k)
    if not times:
        raise HistoryError(f"{name}: no requests between {grid.describe(0, grid.steps)}")
    duration = grid.step * grid.steps
    return RequestTrace(name, tuple(times), tuple(prompt_tokens), tuple(output_tokens), duration)


def token_steps_histogram(
    what: str, buckets: Sequence[Series], sums: Sequence[Series], counts: Sequence[Series], grid: Grid
) -> TokenSteps:
    return TokenSteps(what, histograms=histogram_steps(buckets, sums, counts, grid, what))


def token_steps_totals(
    what: str, totals: Sequence[Series], requests: Sequence[float], grid: Grid, *, sigma: float
) -> TokenSteps:
    return TokenSteps(what, totals=counter_steps(totals, grid, what), requests=list(requests), sigma=sigma)


# -- calibration ----------------------------------------------------------------------------------


def batch_per_step(series: Sequence[Series], grid: Grid) -> list[float]:
    """Each step's running batch size as a generated token sees it: the raw gauge samples of every
    pod in the step, weighted by themselves (``sum b^2 / sum b``; NaN where every sample is 0).

    A decode step over ``b`` sequences yields ``b`` tokens, so a token's batch is ``b`` with weight
    ``b``; the plain time average would count idle and lightly loaded moments that produced few
    tokens as much as busy ones.
    """
    squares = [0.0] * (grid.steps + 1)
    plain = [0.0] * (grid.steps + 1)
    for s in series:
        for t, b in s.samples:
            k = grid.step_of(t)
            if k is None or math.isnan(b) or b <= 0:
                continue
            squares[k] += b * b
            plain[k] += b
    return [sq / p if p > 0 else math.nan for sq, p in zip(squares[1:], plain[1:], strict=True)]


@dataclass(frozen=True, slots=True)
class DecodeFit:
    decode_step_s: float
    batch_slowdown: float
    steps: int
    batch_range: tuple[float, float]
    r_squared: float
    note: str = ""


def fit_decode(
    time_per_token: Sequence[float],
    weights: Sequence[float],
    batch: Sequence[float],
    *,
    output_tokens: Sequence[float] | None = None,
    what: str = "time per token",
    min_steps: int = 3,
    min_batch_spread: float = 1.0,
) -> DecodeFit:
    """Weighted least squares of ``t = a + c (b - 1)``; ``decode_step_s = a``, ``batch_slowdown = c / a``.

    ``time_per_token``: each step's mean seconds per output token; ``weights``: observations behind
    it; ``batch``: the step's mean running batch. With ``output_tokens`` (the step's mean generated
    tokens, for engines whose per-token mean includes the first, prefill token), the mean is
    rescaled by ``n / (n - 1)`` to the decode steps alone, which is what ``ServerParams`` models.
    Raises ``HistoryError`` when the data cannot pin the line down.
    """
    rows: list[tuple[float, float, float]] = []
    for k, (t, w, b) in enumerate(zip(time_per_token, weights, batch, strict=True)):
        if not (math.isfinite(t) and math.isfinite(b) and w > 0 and t > 0 and b > 0):
            continue
        if output_tokens is not None:
            n = output_tokens[k]
            if not (math.isfinite(n) and n > 1):
                continue
            t = t * n / (n - 1)
        rows.append((b - 1.0, t, w))
    if len(rows) < min_steps:
        raise HistoryError(
            f"{what}: {len(rows)} steps with both a time per token and a running batch "
            f"(need {min_steps}); a longer --since or a shorter --step gives more"
        )
    low, high = min(r[0] for r in rows) + 1, max(r[0] for r in rows) + 1
    if high - low < min_batch_spread:
        raise HistoryError(
            f"{what}: the running batch only varied between {low:.2f} and {high:.2f}; the slowdown "
            f"per sequence needs a spread of at least {min_batch_spread:g} (a range with more varied load)"
        )
    sw = sum(w for _, _, w in rows)
    mx = sum(w * x for x, _, w in rows) / sw
    my = sum(w * y for _, y, w in rows) / sw
    sxx = sum(w * (x - mx) ** 2 for x, _, w in rows)
    sxy = sum(w * (x - mx) * (y - my) for x, y, w in rows)
    syy = sum(w * (y - my) ** 2 for _, y, w in rows)
    slope = sxy / sxx
    intercept = my - slope * mx
    note = ""
    if intercept <= 0:
        raise HistoryError(
            f"{what}: the fitted time per token at batch 1 is {intercept:.3g} s (not > 0); "
            "the history does not follow the batch model"
        )
    if slope < 0:
        note = "time per token fell as the batch grew; batchSlowdown set to 0"
        slope = 0.0
    r_squared = 1.0 - sum(w * (y - intercept - slope * x) ** 2 for x, y, w in rows) / syy if syy > 0 else 1.0
    return DecodeFit(intercept, slope / intercept, len(rows), (low, high), r_squared, note)


def cold_start_samples(
    created: Sequence[Series], ready_time: Sequence[Series], ready: Sequence[Series] = ()
) -> list[float]:
    """Seconds from creation to Ready for each pod seen.

    ``created``: ``kube_pod_created`` (creation time as the value); ``ready_time``:
    ``kube_pod_status_ready_time`` (Ready time as the value); without it, ``ready``:
    ``kube_pod_status_ready{condition="true"}`` raw samples, where a pod is Ready at its first 1
    after a 0 (known to a scrape interval).
    """

    def by_pod(series: Sequence[Series]) -> dict[tuple[str, str], list[tuple[float, float]]]:
        out: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for s in series:
            pod = (s.labels.get("namespace", ""), s.labels.get("pod", ""))
            out.setdefault(pod, []).extend(s.samples)
        return out

    created_at = {pod: max(v for _, v in samples) for pod, samples in by_pod(created).items() if samples}
    ready_at: dict[tuple[str, str], float] = {}
    for pod, samples in by_pod(ready_time).items():
        values = [v for _, v in samples if math.isfinite(v) and v > 0]
        if values:
            ready_at[pod] = min(values)
    for pod, samples in by_pod(ready).items():
        if pod in ready_at:
            continue
        previous: float | None = None
        for t, v in sorted(samples):
            if previous == 0 and v == 1:
                ready_at[pod] = t
                break
            previous = v
    return sorted(
        ready_at[pod] - created_at[pod]
        for pod in created_at
        if pod in ready_at and ready_at[pod] - created_at[pod] > 0
    )


@dataclass(frozen=True, slots=True)
class ColdStartFit:
    median_s: float
    sigma: float
    pods: int
    note: str = ""


def fit_cold_start(samples: Sequence[float], default: ColdStart) -> ColdStartFit:
    """Lognormal fit (median = exp(mean ln x), sigma = sample std of ln x); one pod keeps the default
    sigma. Raises ``HistoryError`` without samples."""
    values = [x for x in samples if x > 0 and math.isfinite(x)]
    if not values:
        raise HistoryError("no pod went from created to Ready in the range")
    logs = [math.log(x) for x in values]
    mu = sum(logs) / len(logs)
    if len(logs) < 2:
        return ColdStartFit(math.exp(mu), default.sigma, 1, "one pod: sigma kept at the default")
    sigma = math.sqrt(sum((x - mu) ** 2 for x in logs) / (len(logs) - 1))
    return ColdStartFit(math.exp(mu), sigma, len(logs))


@dataclass(frozen=True, slots=True)
class Calibration:
    """What ``--calibrate`` found, and what it could not fit (``notes``)."""

    source: str
    decode: DecodeFit | None
    cold_start: ColdStartFit | None
    prompt_tokens: float
    output_tokens: float
    max_batch_seen: float
    notes: tuple[str, ...] = field(default=())

    def server_params(self, base: ServerParams) -> ServerParams:
        if self.decode is None:
            return base
        return ServerParams(
            max_batch_size=base.max_batch_size,
            max_concurrent_requests=base.max_concurrent_requests,
            decode_step_s=self.decode.decode_step_s,
            batch_slowdown=self.decode.batch_slowdown,
            prefill_s_per_token=base.prefill_s_per_token,
            prefill_overhead_s=base.prefill_overhead_s,
        )

    def cold(self, base: ColdStart) -> ColdStart:
        if self.cold_start is None:
            return base
        return ColdStart(self.cold_start.median_s, self.cold_start.sigma, base.min_s, base.max_s)


def _sig(value: float, digits: int = 4) -> float:
    if value == 0 or not math.isfinite(value):
        return value
    return round(value, digits - 1 - math.floor(math.log10(abs(value))))


def capacity_yaml(calibration: Calibration, base: ServerParams) -> str:
    """The ``autoscaling.capacity`` block of a service spec with the fitted numbers (validated)."""
    params = calibration.server_params(base)
    capacity = {
        "maxBatchSize": params.max_batch_size,
        "decodeSecondsPerToken": _sig(params.decode_step_s),
        "batchSlowdown": _sig(params.batch_slowdown),
        "prefillSecondsPerToken": _sig(params.prefill_s_per_token),
        "promptTokens": max(1, round(calibration.prompt_tokens)),
        "outputTokens": max(1, round(calibration.output_tokens)),
    }
    CapacitySpec.model_validate(capacity)
    return yaml.safe_dump({"autoscaling": {"capacity": capacity}}, sort_keys=False)


def format_calibration(calibration: Calibration, base: ServerParams, base_cold: ColdStart) -> str:
    """A small table of the fitted numbers next to the ones they replace, then the YAML snippet."""
    params = calibration.server_params(base)
    cold = calibration.cold(base_cold)
    d, c = calibration.decode, calibration.cold_start
    decode_from = (
        f"{d.steps} steps, batch {d.batch_range[0]:.1f}-{d.batch_range[1]:.1f}, R^2 {d.r_squared:.2f}"
        if d
        else "not fitted"
    )
    cold_from = f"{c.pods} pods, kube-state-metrics" if c else "not fitted"
    rows = [
        ("parameter", "used", "flags", "from"),
        ("decodeSecondsPerToken", f"{params.decode_step_s:.4g}", f"{base.decode_step_s:.4g}", decode_from),
        ("batchSlowdown", f"{params.batch_slowdown:.4g}", f"{base.batch_slowdown:.4g}", decode_from),
        ("tokens/s at batch 1", f"{1 / params.decode_step_s:.4g}", f"{1 / base.decode_step_s:.4g}", ""),
        ("coldStart median s", f"{cold.median_s:.4g}", f"{base_cold.median_s:.4g}", cold_from),
        ("coldStart sigma", f"{cold.sigma:.3g}", f"{base_cold.sigma:.3g}", cold_from),
        ("promptTokens (mean)", f"{calibration.prompt_tokens:.1f}", "", "history"),
        ("outputTokens (mean)", f"{calibration.output_tokens:.1f}", "", "history"),
        ("running batch (max seen)", f"{calibration.max_batch_seen:.0f}", str(base.max_batch_size), ""),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"calibration: {calibration.source}"]
    for row in rows:
        cells = "  ".join(v.ljust(w) for v, w in zip(row[:3], widths, strict=True))
        lines.append(f"  {cells}  {row[3]}".rstrip())
    notes = [*calibration.notes, *(n for n in (d.note if d else "", c.note if c else "") if n)]
    lines.extend(f"  note: {n}" for n in notes)
    lines.append("# autoscaling.capacity for the service spec (maxBatchSize and prefill from the flags):")
    lines.append(capacity_yaml(calibration, base).rstrip())
    return "\n".join(lines) + "\n"
