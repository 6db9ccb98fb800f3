"""The history import's pure parts: query results to a trace, the fits, and the flags' errors."""

from __future__ import annotations

import io
import math
import random
from collections.abc import Sequence

import pytest
import yaml

from tgi_autoscaler.backtest import cli as backtest_cli
from tgi_autoscaler.backtest.history import HistoryQuery, parse_time
from tgi_autoscaler.backtest.history_model import (
    ENGINE_SERIES,
    Calibration,
    DecodeFit,
    Grid,
    HistoryError,
    Series,
    StepHistogram,
    TokenSteps,
    batch_per_step,
    build_trace,
    capacity_yaml,
    cold_start_samples,
    counter_steps,
    engine_series,
    fit_cold_start,
    fit_decode,
    format_calibration,
    histogram_steps,
    parse_matrix,
    pod_matchers,
    service_matchers,
)
from tgi_autoscaler.cli import build_parser
from tgi_autoscaler.config.service import CapacitySpec
from tgi_autoscaler.promql import parse_matchers
from tgi_autoscaler.servicemodel import ColdStart, ServerParams

pytestmark = pytest.mark.unit

T0 = 1_700_000_000.0
GRID = Grid(T0, 10.0, 4)  # boundaries T0, +10, +20, +30, +40


def at(*values: float | None, labels: dict[str, str] | None = None, grid: Grid = GRID) -> Series:
    """A series sampled at the grid's boundaries (None: no sample there)."""
    samples = tuple((grid.time(k), v) for k, v in enumerate(values) if v is not None)
    return Series(labels or {"pod": "a"}, samples)


# -- counters ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("series", "expected"),
    [
        pytest.param([at(5, 7, 7, 12, 20)], [2, 0, 5, 8], id="one pod"),
        pytest.param([at(5, 7, 2, 4, 4)], [2, 2, 2, 0], id="restart counts the new value"),
        pytest.param(
            [at(0, 3, 6, 9, 12), at(None, None, 4, 5, None, labels={"pod": "b"})],
            [3, 3 + 4, 3 + 1, 3],
            id="a pod appearing mid-range started at zero",
        ),
        pytest.param(
            [at(100, None, 110, 111, 115), at(0, 0, 0, 0, 0, labels={"pod": "z"})],
            [0, 10, 1, 4],
            id="a gap in one series (another covers it)",
        ),
    ],
)
def test_counter_steps_differences_each_series(series: list[Series], expected: list[float]) -> None:
    assert counter_steps(series, GRID, "c") == expected


def test_counter_steps_gap_case_is_really_a_gap() -> None:
    with pytest.raises(HistoryError, match="no samples of tgi_request_count"):
        counter_steps([at(100, None, 110, 111, 115)], GRID, "tgi_request_count")


@pytest.mark.parametrize(
    ("series", "range_text"),
    [
        pytest.param([], "2023-11-14T22:13:20Z .. 2023-11-14T22:14:00Z", id="nothing at all"),
        pytest.param([at(1, 2, None, None, 5)], "2023-11-14T22:13:30Z .. 2023-11-14T22:14:00Z", id="a hole"),
        pytest.param([at(None, 2, 3, 4, 5)], "2023-11-14T22:13:20Z .. 2023-11-14T22:13:30Z", id="late start"),
    ],
)
def test_missing_counter_data_is_an_error_naming_series_and_range(
    series: list[Series], range_text: str
) -> None:
    with pytest.raises(HistoryError) as caught:
        counter_steps(series, GRID, 'tgi_request_count{namespace="n"}')
    assert str(caught.value) == f'no samples of tgi_request_count{{namespace="n"}} between {range_text}'


def test_parse_matrix_reads_prometheus_results_and_refuses_other_shapes() -> None:
    result = [{"metric": {"pod": "a", "le": "+Inf"}, "values": [[T0, "1"], [T0 + 10, "3.5"]]}]
    (series,) = parse_matrix(result, what="q")
    assert series.labels == {"pod": "a", "le": "+Inf"}
    assert series.samples == ((T0, 1.0), (T0 + 10, 3.5))
    with pytest.raises(HistoryError, match="not a matrix"):
        parse_matrix([{"metric": {}, "value": [T0, "1"]}], what="q")


# -- histograms and the trace --------------------------------------------------------------------


def histogram(
    bounds: Sequence[str], cumulative_per_step: Sequence[Sequence[float]], sums: Sequence[float]
) -> tuple[list[Series], list[Series], list[Series]]:
    """A one-pod histogram from cumulative bucket counts and sums at each boundary."""
    buckets = [
        at(*(row[i] for row in cumulative_per_step), labels={"pod": "a", "le": le})
        for i, le in enumerate(bounds)
    ]
    counts = [at(*(row[-1] for row in cumulative_per_step))]
    return buckets, [at(*sums)], counts


def test_histogram_steps_are_per_step_bucket_counts() -> None:
    # Step 1: two observations of 15 (bucket 10-20); step 2: none; step 3: one of 5, one of 30.
    buckets, sums, counts = histogram(
        ["10", "20", "+Inf"],
        [[0, 0, 0], [0, 2, 2], [0, 2, 2], [1, 3, 4], [1, 3, 4]],
        [0, 30, 30, 65, 65],
    )
    steps = histogram_steps(buckets, sums, counts, GRID, "h")
    assert steps[1] is None
    assert steps[3] is None
    first, third = steps[0], steps[2]
    assert first is not None
    assert third is not None
    assert first.counts == (0, 2, 0)
    assert first.mean == 15
    assert third.counts == (1, 0, 1)
    assert third.sum == 35


def test_histogram_that_never_appears_is_missing_data() -> None:
    with pytest.raises(HistoryError, match=r"no samples of tgi_request_input_length .*between"):
        histogram_steps([], [], [], GRID, "tgi_request_input_length")


@pytest.mark.parametrize(
    ("bounds", "counts", "total", "n", "expected_mean", "expected_values"),
    [
        pytest.param((10.0, 20.0, math.inf), (0, 4, 0), 60.0, 4, 15, {15}, id="one bucket: the exact mean"),
        pytest.param((10.0, 20.0, math.inf), (2, 2, 0), 40.0, 10, 10, {5, 15}, id="two buckets"),
        pytest.param((10.0, 20.0, math.inf), (0, 1, 1), 115.0, 2, 57.5, {15, 100}, id="+Inf gets the rest"),
    ],
)
def test_step_histogram_draws_keep_the_shares_and_the_mean(
    bounds: tuple[float, ...],
    counts: tuple[float, ...],
    total: float,
    n: int,
    expected_mean: float,
    expected_values: set[int],
) -> None:
    h = StepHistogram(bounds, counts, total, sum(counts))
    values = h.draw(n, random.Random(0), minimum=1)
    assert len(values) == n
    assert set(values) == expected_values
    assert sum(values) / n == pytest.approx(expected_mean)


def test_build_trace_counts_per_step_and_token_means() -> None:
    arrivals = [3.0, 0.0, 5.0, 2.0]
    # Prompts: 100 tokens in steps 1-2 (bucket 90-110), 200 from step 3 on (bucket 190-210).
    prompt = TokenSteps(
        "p",
        histograms=[
            StepHistogram((90.0, 110.0, 190.0, 210.0, math.inf), (0, 3, 0, 0, 0), 300, 3),
            None,
            StepHistogram((90.0, 110.0, 190.0, 210.0, math.inf), (0, 0, 0, 5, 0), 1000, 5),
            None,
        ],
    )
    # Outputs only from step 2 (observed at completion); step 1 takes the whole range's.
    output = TokenSteps(
        "o",
        histograms=[
            None,
            StepHistogram((40.0, 60.0, math.inf), (0, 2, 0), 100, 2),
            StepHistogram((40.0, 60.0, math.inf), (0, 5, 0), 250, 5),
            None,
        ],
    )
    trace = build_trace("t", GRID, arrivals, prompt, output, seed=3)
    assert len(trace) == 10
    assert trace.duration == 40
    per_step = [sum(1 for t in trace.arrival if 10 * k < t <= 10 * (k + 1)) for k in range(4)]
    assert per_step == [3, 0, 5, 2]
    assert trace.prompt_tokens[:3] == (100, 100, 100)
    assert trace.prompt_tokens[3:8] == (200,) * 5
    # Step 4 has no prompt observations: the pooled distribution (3 x 100, 5 x 200).
    assert set(trace.prompt_tokens[8:]) <= {100, 200}
    assert trace.output_tokens == (50,) * 10
    assert trace == build_trace("t", GRID, arrivals, prompt, output, seed=3)  # seeded
    assert trace != build_trace("t", GRID, arrivals, prompt, output, seed=4)


def test_build_trace_with_token_totals_draws_around_each_steps_mean() -> None:
    prompt = TokenSteps("p", totals=[4000, 0, 0, 8000], requests=[40, 0, 0, 40], sigma=0.3)
    output = TokenSteps("o", totals=[2000, 0, 0, 2000], requests=[40, 0, 0, 40], sigma=0.3)
    trace = build_trace("t", GRID, [400, 0, 0, 400], prompt, output, seed=0)
    first, last = trace.prompt_tokens[:400], trace.prompt_tokens[400:]
    assert sum(first) / 400 == pytest.approx(100, rel=0.05)
    assert sum(last) / 400 == pytest.approx(200, rel=0.05)
    assert trace.mean_output_tokens == pytest.approx(50, rel=0.05)


def test_a_range_without_requests_or_token_data_is_an_error() -> None:
    empty = TokenSteps("tgi_request_input_length", histograms=[None] * 4)
    with pytest.raises(HistoryError, match="no samples of tgi_request_input_length observations"):
        build_trace("t", GRID, [1, 0, 0, 0], empty, empty)
    some = TokenSteps("p", histograms=[StepHistogram((1.0, math.inf), (1, 0), 1, 1)] * 4)
    with pytest.raises(HistoryError, match="no requests between"):
        build_trace("t", GRID, [0, 0, 0, 0], some, some)


# -- calibration ---------------------------------------------------------------------------------


def synthetic_steps(
    decode: float, slowdown: float, batches: Sequence[float], noise: float = 0.0, seed: int = 0
) -> tuple[list[float], list[float], list[float]]:
    rng = random.Random(seed)
    times = [decode * (1 + slowdown * (b - 1)) * (1 + rng.gauss(0, noise)) for b in batches]
    return times, [10.0] * len(batches), list(batches)


@pytest.mark.parametrize(
    ("decode", "slowdown", "noise", "rel"),
    [
        pytest.param(0.0133, 0.031, 0.0, 1e-9, id="the defaults, exact"),
        pytest.param(0.02, 0.1, 0.0, 1e-9, id="the simulator's, exact"),
        pytest.param(0.03, 0.05, 0.01, 0.15, id="1 % noise"),
    ],
)
def test_fit_decode_recovers_known_parameters(
    decode: float, slowdown: float, noise: float, rel: float
) -> None:
    batches = [1, 2, 4, 8, 16, 24, 32, 48, 64] * 3
    fit = fit_decode(*synthetic_steps(decode, slowdown, batches, noise))
    assert fit.decode_step_s == pytest.approx(decode, rel=rel)
    assert fit.batch_slowdown == pytest.approx(slowdown, rel=rel)
    assert fit.batch_range == (1, 64)
    assert fit.r_squared > 0.9


def test_fit_decode_removes_the_first_token_from_tgis_per_token_mean() -> None:
    # TGI: (prefill ~ 0 + (n - 1) decode steps) / n tokens.
    n = [20.0] * 5
    batches = [1.0, 2.0, 4.0, 6.0, 8.0]
    times = [0.02 * (1 + 0.1 * (b - 1)) * 19 / 20 for b in batches]
    fit = fit_decode(times, [5.0] * 5, batches, output_tokens=n)
    assert fit.decode_step_s == pytest.approx(0.02)
    assert fit.batch_slowdown == pytest.approx(0.1)
    assert fit_decode(times, [5.0] * 5, batches).decode_step_s == pytest.approx(0.019)


@pytest.mark.parametrize(
    ("times", "batches", "message"),
    [
        pytest.param([0.02, 0.03], [1.0, 5.0], "2 steps", id="too few steps"),
        pytest.param(
            [0.02, 0.02, 0.021], [3.0, 3.2, 3.5], "only varied between 3.00 and 3.50", id="no spread"
        ),
        pytest.param(
            [0.02, math.nan, 0.03, 0.04], [1.0, 2.0, math.nan, 9.0], "2 steps", id="NaN steps dropped"
        ),
        pytest.param([0.001, 0.05, 0.1], [2.0, 5.0, 9.0], "not > 0", id="negative at batch 1"),
    ],
)
def test_fit_decode_refuses_what_cannot_pin_the_line(
    times: list[float], batches: list[float], message: str
) -> None:
    with pytest.raises(HistoryError, match=message):
        fit_decode(times, [1.0] * len(times), batches, what="tpt")


def test_fit_decode_clamps_a_negative_slope_and_says_so() -> None:
    fit = fit_decode([0.03, 0.0299, 0.0298], [1.0] * 3, [1.0, 5.0, 9.0])
    assert fit.batch_slowdown == 0
    assert "batchSlowdown set to 0" in fit.note


def test_batch_per_step_weights_each_sample_by_its_tokens() -> None:
    pods = [
        Series({"pod": "a"}, ((T0 + 1, 2.0), (T0 + 5, 4.0), (T0 + 9, 0.0), (T0 + 25, 3.0))),
        Series({"pod": "b"}, ((T0 + 2, 6.0), (T0 + 31, 0.0))),
    ]
    got = batch_per_step(pods, GRID)
    assert got[0] == pytest.approx((4 + 16 + 36) / (2 + 4 + 6))
    assert math.isnan(got[1])  # no sample
    assert got[2] == 3.0
    assert math.isnan(got[3])  # only idle samples


def test_cold_start_from_kube_state_metrics_recovers_a_lognormal() -> None:
    rng = random.Random(1)
    starts = [rng.lognormvariate(math.log(120), 0.3) for _ in range(400)]
    created = [Series({"namespace": "n", "pod": f"p{i}"}, ((T0, T0 + i),)) for i in range(400)]
    ready = [
        Series({"namespace": "n", "pod": f"p{i}"}, ((T0, 0.0),) if i % 2 else ((T0 + 500, T0 + i + s),))
        for i, s in enumerate(starts)
    ]
    # Odd pods report no ready time: their Ready transition comes from kube_pod_status_ready.
    transitions = [
        Series({"namespace": "n", "pod": f"p{i}"}, ((T0 + i + 1, 0.0), (T0 + i + s, 1.0), (T0 + 900, 1.0)))
        for i, s in enumerate(starts)
        if i % 2
    ]
    samples = cold_start_samples(created, ready, transitions)
    assert samples == pytest.approx(sorted(starts))
    fit = fit_cold_start(samples, ColdStart())
    assert fit.median_s == pytest.approx(120, rel=0.05)
    assert fit.sigma == pytest.approx(0.3, rel=0.1)
    assert fit.pods == 400


def test_cold_start_without_pods_or_with_one() -> None:
    with pytest.raises(HistoryError, match="created to Ready"):
        fit_cold_start([], ColdStart())
    one = fit_cold_start([80.0], ColdStart(sigma=0.4))
    assert one.median_s == pytest.approx(80.0)
    assert one.sigma == 0.4
    assert "default" in one.note


def test_capacity_yaml_is_a_valid_capacity_block_with_the_fitted_numbers() -> None:
    calibration = Calibration(
        "src", DecodeFit(0.0199512, 0.094987, 9, (1.0, 11.0), 0.97), None, 103.4, 40.1, 13.0
    )
    base = ServerParams(max_batch_size=16, prefill_s_per_token=0.0002)
    data = yaml.safe_load(capacity_yaml(calibration, base))
    capacity = data["autoscaling"]["capacity"]
    assert capacity == {
        "maxBatchSize": 16,
        "decodeSecondsPerToken": 0.01995,
        "batchSlowdown": 0.09499,
        "prefillSecondsPerToken": 0.0002,
        "promptTokens": 103,
        "outputTokens": 40,
    }
    spec = CapacitySpec.model_validate(capacity)
    assert spec.server_params().step_time(5) == pytest.approx(0.01995 * (1 + 0.09499 * 4))
    text = format_calibration(calibration, base, ColdStart())
    assert "decodeSecondsPerToken     0.01995  0.0133" in text
    assert "not fitted" in text  # cold start
    unfitted = Calibration("src", None, None, 100, 40, 0, ("decode not fitted: why",))
    assert "note: decode not fitted: why" in format_calibration(unfitted, base, ColdStart())
    assert unfitted.server_params(base) == base


# -- selectors, engines, flags -------------------------------------------------------------------


def test_selectors_are_built_with_the_promql_helpers() -> None:
    matchers = parse_matchers(service_matchers("prod", "llama.3"))
    assert [(m.label, m.op.value, m.value) for m in matchers] == [
        ("namespace", "=", "prod"),
        ("app_kubernetes_io_instance", "=", "llama.3"),
    ]
    pods = parse_matchers(pod_matchers("prod", "llama.3"))
    assert pods[1].value == r"llama\.3-[a-z0-9]+-[a-z0-9]+"


@pytest.mark.parametrize(
    ("namespace", "service", "message"),
    [
        ("prod", 'a"}or vector(1)', "--service-name: 'a\"}or vector(1)' is not a valid label value"),
        ("", "svc", "--namespace: must not be empty"),
        ("a b", "svc", "--namespace: 'a b' is not a valid label value"),
    ],
)
def test_label_values_are_validated_naming_the_flag(namespace: str, service: str, message: str) -> None:
    with pytest.raises(HistoryError) as caught:
        service_matchers(namespace, service)
    assert str(caught.value).startswith(message)


def test_every_engine_has_series_and_finished_counters_are_flagged() -> None:
    assert set(ENGINE_SERIES) == {"tgi", "vllm", "sglang"}
    assert engine_series("tgi").requests == "tgi_request_count"
    assert engine_series("tgi").requests_are_arrivals
    assert engine_series("vllm").requests == "vllm:request_success_total"
    assert not engine_series("vllm").requests_are_arrivals
    assert not engine_series("sglang").tokens_are_histograms
    with pytest.raises(HistoryError, match="--engine: unknown engine 'ollama'"):
        engine_series("ollama")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("now", T0),
        ("1h", T0 - 3600),
        ("1h30m", T0 - 5400),
        ("1700000000", 1_700_000_000.0),
        ("2023-11-14T22:13:20Z", 1_700_000_000.0),
        ("2023-11-14T22:13:20", 1_700_000_000.0),
        ("2023-11-14T23:13:20+01:00", 1_700_000_000.0),
    ],
)
def test_parse_time(text: str, expected: float) -> None:
    assert parse_time(text, now=T0, flag="--since") == expected


def args_for(*argv: str) -> object:
    full = ["backtest", *argv]
    return build_parser(full).parse_args(full)


BASE = ("--prometheus", "http://127.0.0.1:9", "--namespace", "n", "--service-name", "s")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(("--calibrate",), "--calibrate needs --prometheus", id="calibrate alone"),
        pytest.param((*BASE, "--trace", "x.csv"), "mutually exclusive", id="with --trace"),
        pytest.param(BASE[:2] + BASE[4:], "--namespace: required with --prometheus", id="no namespace"),
        pytest.param((*BASE, "--since", "yesterday"), "--since: 'yesterday' is not a time", id="since"),
        pytest.param((*BASE, "--until", "2h", "--since", "1h"), "--since/--until: the range", id="reversed"),
        pytest.param((*BASE, "--step", "2h"), "--step: 2h is longer than the range", id="step too long"),
        pytest.param((*BASE, "--step", "fast"), "--step: 'fast' is not a Prometheus duration", id="bad step"),
        pytest.param((*BASE, "--step", "1s", "--since", "1d"), "Prometheus answers at most", id="points"),
    ],
)
def test_flag_errors_name_the_flag(argv: tuple[str, ...], message: str) -> None:
    args = args_for(*argv)
    with pytest.raises(HistoryError, match=message):
        HistoryQuery.from_args(args, now=T0)  # type: ignore[arg-type]
    out, err = io.StringIO(), io.StringIO()
    assert backtest_cli.run(args, out, err) == 2  # type: ignore[arg-type]
    assert message.split(":")[0] in err.getvalue()


def test_the_range_ends_on_whole_steps_at_until() -> None:
    query = HistoryQuery.from_args(args_for(*BASE, "--since", "95s", "--step", "10s"), now=T0)  # type: ignore[arg-type]
    assert query.grid == Grid(T0 - 90, 10.0, 9)
    assert query.matchers == 'namespace="n",app_kubernetes_io_instance="s"'
