"""A service's own traffic from Prometheus (``backtest --prometheus``), and ``--calibrate``: the I/O edge.

Range queries (``prometheus-api-client``, synchronous, which suits a command-line tool) read the
engine's request counter and token histograms of one service (``namespace`` and
``app_kubernetes_io_instance``) at every ``--step`` between ``--since`` and ``--until``; raw samples
of the running-batch gauge and kube-state-metrics' pod start times feed the calibration.
``backtest.history_model`` turns the answers into a trace and a fit.
"""

from __future__ import annotations

import argparse
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException

from tgi_autoscaler.backtest.history_model import (
    OUTPUT_SIGMA,
    PROMPT_SIGMA,
    Calibration,
    ColdStartFit,
    DecodeFit,
    Grid,
    HistoryError,
    HistorySeries,
    Series,
    TokenSteps,
    batch_per_step,
    build_trace,
    cold_start_samples,
    counter_steps,
    engine_series,
    fit_cold_start,
    fit_decode,
    format_calibration,
    iso,
    parse_matrix,
    pod_matchers,
    service_matchers,
    token_steps_histogram,
    token_steps_totals,
)
from tgi_autoscaler.backtest.requests import RequestTrace
from tgi_autoscaler.config.observability import parse_duration_seconds
from tgi_autoscaler.servicemodel.params import ColdStart, ServerParams

__all__ = ["HistoryQuery", "PrometheusHistory", "add_arguments", "history_trace", "parse_time"]

# Prometheus refuses range queries of more than 11,000 points per series.
_MAX_POINTS = 11_000
# Seconds one query may take (the client retries connection errors with a backoff first).
_TIMEOUT_S = 60


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("traffic from Prometheus (instead of --trace or a shape)")
    group.add_argument("--prometheus", metavar="URL", help="Prometheus to read the service's history from")
    group.add_argument("--namespace", help="the service's namespace")
    group.add_argument("--service-name", help="the service (pod label app.kubernetes.io/instance)")
    group.add_argument(
        "--engine", choices=("tgi", "vllm", "sglang"), default="tgi", help="which server's series to read"
    )
    group.add_argument("--since", default="1h", help="start: a duration ago (1h, 90m) or a time (ISO, unix)")
    group.add_argument("--until", default="now", help="end: 'now', a duration ago or a time")
    group.add_argument("--step", default="15s", help="resolution of the trace (a Prometheus duration)")
    group.add_argument(
        "--calibrate",
        action="store_true",
        help="fit decode time per token, batch slowdown and cold start from the same history and use them",
    )


_NUMBER = re.compile(r"^\d+(\.\d+)?$")


def parse_time(text: str, *, now: float, flag: str) -> float:
    """``now``, a Prometheus duration before ``now``, a unix time or an ISO 8601 time (UTC if no zone)."""
    value = text.strip()
    if value == "now":
        return now
    if _NUMBER.match(value):
        return float(value)
    try:
        return now - parse_duration_seconds(value)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise HistoryError(
            f"{flag}: {text!r} is not a time (use 'now', a duration ago such as 1h or 90m, a unix time "
            "or an ISO 8601 time)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    url: str
    namespace: str
    service: str
    series: HistorySeries
    grid: Grid

    @classmethod
    def from_args(cls, args: argparse.Namespace, *, now: float | None = None) -> HistoryQuery:
        if not args.prometheus:
            raise HistoryError("--calibrate needs --prometheus (and --namespace, --service-name)")
        if getattr(args, "trace", None):
            raise HistoryError("--prometheus and --trace are mutually exclusive: pick one traffic source")
        for flag, value in (("--namespace", args.namespace), ("--service-name", args.service_name)):
            if not value:
                raise HistoryError(f"{flag}: required with --prometheus")
        current = time.time() if now is None else now
        start = parse_time(args.since, now=current, flag="--since")
        end = parse_time(args.until, now=current, flag="--until")
        try:
            step = parse_duration_seconds(args.step)
        except ValueError as exc:
            raise HistoryError(f"--step: {exc}") from None
        if step <= 0:
            raise HistoryError(f"--step: must be longer than zero (got {args.step!r})")
        if end <= start:
            raise HistoryError(f"--since/--until: the range {iso(start)} .. {iso(end)} is empty")
        steps = int((end - start) // step)
        if steps < 1:
            raise HistoryError(f"--step: {args.step} is longer than the range {iso(start)} .. {iso(end)}")
        if steps + 1 > _MAX_POINTS:
            raise HistoryError(
                f"--step: {args.step} over {iso(start)} .. {iso(end)} is {steps + 1} points; "
                f"Prometheus answers at most {_MAX_POINTS} (use a longer --step)"
            )
        # The range ends on a whole step so every step of the trace is complete.
        grid = Grid(math.floor(end - steps * step), step, steps)
        return cls(args.prometheus, args.namespace, args.service_name, engine_series(args.engine), grid)

    @property
    def matchers(self) -> str:
        return service_matchers(self.namespace, self.service)

    def describe(self) -> str:
        g = self.grid
        return (
            f"{self.namespace}/{self.service} ({self.series.engine}) on {self.url}, "
            f"{g.describe(0, g.steps)}, {g.steps} steps of {g.step:g} s"
        )


class PrometheusHistory:
    """The queries of one history import, through ``PrometheusConnect``."""

    def __init__(self, query: HistoryQuery, *, client: PrometheusConnect | None = None) -> None:
        self.query = query
        self._client = client or PrometheusConnect(url=query.url, disable_ssl=False, timeout=_TIMEOUT_S)

    def _call(self, what: str, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except PrometheusApiClientException as exc:
            raise HistoryError(f"--prometheus {self.query.url}: {what}: {exc}") from None
        except OSError as exc:  # requests' exceptions are OSErrors
            raise HistoryError(f"--prometheus {self.query.url}: {what}: {exc}") from None

    def range(self, promql: str) -> list[Series]:
        """``promql`` at every step boundary."""
        g = self.query.grid
        result = self._call(
            promql,
            lambda: self._client.custom_query_range(
                promql,
                start_time=datetime.fromtimestamp(g.start, tz=UTC),
                end_time=datetime.fromtimestamp(g.end, tz=UTC),
                step=f"{g.step:g}",
            ),
        )
        return parse_matrix(result, what=promql)

    def raw(self, selector: str) -> list[Series]:
        """Every raw sample of ``selector`` in the range (a range-vector selector at the end)."""
        g = self.query.grid
        promql = f"{selector}[{math.ceil(g.end - g.start)}s]"
        result = self._call(
            promql, lambda: self._client.custom_query(promql, params={"time": f"{g.end:.3f}"})
        )
        return parse_matrix(result, what=promql)

    def selector(self, name: str, suffix: str = "") -> str:
        return f"{name}{suffix}{{{self.query.matchers}}}"

    # -- the trace --------------------------------------------------------------------------------

    def _tokens(self, name: str, requests: list[float], sigma: float) -> TokenSteps:
        series, grid = self.query.series, self.query.grid
        if series.tokens_are_histograms:
            return token_steps_histogram(
                self.selector(name),
                self.range(self.selector(name, "_bucket")),
                self.range(self.selector(name, "_sum")),
                self.range(self.selector(name, "_count")),
                grid,
            )
        totals = self.range(self.selector(name))
        return token_steps_totals(self.selector(name), totals, requests, grid, sigma=sigma)

    def trace(self, *, seed: int = 0) -> tuple[RequestTrace, TokenSteps, TokenSteps, list[str]]:
        series, grid = self.query.series, self.query.grid
        notes: list[str] = []
        requests_selector = self.selector(series.requests)
        requests = counter_steps(self.range(requests_selector), grid, requests_selector)
        if not series.requests_are_arrivals:
            notes.append(
                f"{series.engine} has no arrival counter: the trace is finished requests "
                f"({series.requests}), each shifted by its latency"
            )
        if not series.tokens_are_histograms:
            notes.append(
                f"{series.engine} exports token totals only: token counts are lognormal around each "
                "step's mean"
            )
        prompt = self._tokens(series.prompt_tokens, requests, PROMPT_SIGMA)
        output = self._tokens(series.output_tokens, requests, OUTPUT_SIGMA)
        name = f"{self.query.namespace}/{self.query.service} {grid.describe(0, grid.steps)}"
        return build_trace(name, grid, requests, prompt, output, seed=seed), prompt, output, notes

    # -- calibration ------------------------------------------------------------------------------

    def fit_decode(self, output: TokenSteps) -> tuple[DecodeFit, float]:
        series, grid = self.query.series, self.query.grid
        tpt = self.selector(series.decode_latency)
        # A histogram appears with its first observation: steps before it observed nothing.
        observed: list[list[float]] = []
        for suffix in ("_sum", "_count"):
            selector = self.selector(series.decode_latency, suffix)
            found = self.range(selector)
            if not found:
                raise HistoryError(f"no samples of {selector} between {grid.describe(0, grid.steps)}")
            observed.append(counter_steps(found, grid, selector, require=False))
        sums, counts = observed
        gauge = self.raw(self.selector(series.running))
        if not gauge:
            raise HistoryError(
                f"no samples of {self.selector(series.running)} between {grid.describe(0, grid.steps)}"
            )
        batch = batch_per_step(gauge, grid)
        max_seen = max((v for s in gauge for _, v in s.samples if math.isfinite(v)), default=0.0)
        means = [s / c if c > 0 else math.nan for s, c in zip(sums, counts, strict=True)]
        fit = fit_decode(
            means,
            counts,
            batch,
            output_tokens=output.means() if series.latency_includes_first else None,
            what=f"{tpt} against {series.running}",
        )
        return fit, max_seen

    def fit_cold_start(self, default: ColdStart) -> ColdStartFit:
        q = self.query
        pods = pod_matchers(q.namespace, q.service)
        created = self.range(f"kube_pod_created{{{pods}}}")
        if not created:
            raise HistoryError(
                f"no kube-state-metrics series kube_pod_created{{{pods}}} between "
                f"{q.grid.describe(0, q.grid.steps)}"
            )
        ready_time = self.range(f"kube_pod_status_ready_time{{{pods}}}")
        ready = [] if ready_time else self.raw(f'kube_pod_status_ready{{{pods},condition="true"}}')
        if not ready_time and not ready:
            raise HistoryError(
                f"no kube_pod_status_ready_time or kube_pod_status_ready series for {{{pods}}}"
            )
        return fit_cold_start(cold_start_samples(created, ready_time, ready), default)

    def calibrate(self, output: TokenSteps, trace: RequestTrace, cold: ColdStart) -> Calibration:
        notes: list[str] = []
        decode: DecodeFit | None = None
        max_seen = math.nan
        try:
            decode, max_seen = self.fit_decode(output)
        except HistoryError as exc:
            notes.append(f"decode not fitted, keeping the flags' values: {exc}")
        cold_fit: ColdStartFit | None = None
        try:
            cold_fit = self.fit_cold_start(cold)
        except HistoryError as exc:
            notes.append(f"cold start not fitted, keeping the flags' values: {exc}")
        return Calibration(
            self.query.describe(),
            decode,
            cold_fit,
            trace.mean_prompt_tokens,
            trace.mean_output_tokens,
            max_seen,
            tuple(notes),
        )


def history_trace(args: argparse.Namespace, out: TextIO, err: TextIO) -> RequestTrace:
    """The trace of ``--prometheus``; with ``--calibrate`` the fitted numbers replace the server and
    cold-start flags in ``args`` (so the replay uses them) and are printed with the capacity snippet."""
    query = HistoryQuery.from_args(args)
    history = PrometheusHistory(query)
    trace, _, output, notes = history.trace(seed=args.seed)
    for note in notes:
        print(f"backtest: {note}", file=err)
    if args.calibrate:
        base = ServerParams(
            max_batch_size=args.max_batch,
            decode_step_s=args.decode_step,
            batch_slowdown=args.batch_slowdown,
            prefill_s_per_token=args.prefill_per_token,
        )
        base_cold = ColdStart(median_s=args.cold_start, sigma=args.cold_start_sigma)
        calibration = history.calibrate(output, trace, base_cold)
        target = err if args.format == "csv" else out
        target.write(format_calibration(calibration, base, base_cold))
        params, cold = calibration.server_params(base), calibration.cold(base_cold)
        args.decode_step, args.batch_slowdown = params.decode_step_s, params.batch_slowdown
        args.cold_start, args.cold_start_sigma = cold.median_s, cold.sigma
        if getattr(args, "service", None):
            print(
                "backtest: --service sets the replay's capacity from the spec; paste the snippet above "
                "into it to replay with the fitted numbers",
                file=err,
            )
    return trace
