"""``backtest --prometheus`` and ``--calibrate`` against a real Prometheus scraping the TGI simulator.

A load of known requests (their times, prompt lengths and output lengths recorded here) is sent to a
simulated TGI replica whose decode speed and batch slowdown are configured; the history import must
give back the same requests per step and the same mean token counts, and the calibration the
replica's configured decode time per token and batch slowdown.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import math
import random
import time
import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.support.polling import eventually
from tgi_autoscaler.backtest.cli import run
from tgi_autoscaler.backtest.history import HistoryQuery, PrometheusHistory
from tgi_autoscaler.backtest.history_model import Calibration, HistoryError
from tgi_autoscaler.cli import build_parser
from tgi_autoscaler.servicemodel import ColdStart
from tgi_autoscaler_dev.localstack.prometheus import PrometheusServer
from tgi_autoscaler_dev.sim import Fleet, ReplicaConfig
from tgi_autoscaler_dev.sim.protocol import estimate_tokens

pytestmark = pytest.mark.integration

NAMESPACE = "history-it"
STEP_S = 5.0
# 50 tokens/s for a lone sequence (20 ms per decode step), each extra sequence slows a step by 10 %.
# A short prefill keeps the per-token time about decode (TGI pauses the batch for every prefill).
REPLICA = ReplicaConfig(
    max_batch_size=16,
    token_rate=50.0,
    batch_slowdown=0.1,
    prefill_time_s=0.001,
    max_concurrent_requests=512,
)
# Four 10 s levels: running batches of about 1, 3, 6 and 11 sequences (Little's law with ~40-token
# outputs), so the fit sees the slowdown over a wide range.
LEVELS = ((10.0, 1.0), (10.0, 3.0), (10.0, 5.0), (10.0, 7.0))


@pytest.fixture
def service() -> str:
    return f"hist-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        yield session


def _args(prom: PrometheusServer, service: str, since: float, until: float, *extra: str) -> list[str]:
    return [
        "backtest",
        "--prometheus",
        prom.url,
        "--namespace",
        NAMESPACE,
        "--service-name",
        service,
        "--since",
        f"{since:.3f}",
        "--until",
        f"{until:.3f}",
        "--step",
        f"{STEP_S:g}s",
        *extra,
    ]


async def _send_load(client: aiohttp.ClientSession, url: str) -> tuple[list[float], list[int], list[int]]:
    """Open-loop load at the LEVELS rates, evenly spaced; returns send times and token counts."""
    rng = random.Random(7)
    loop = asyncio.get_running_loop()
    schedule: list[float] = []
    offset = 0.0
    for length, rate in LEVELS:
        n = round(length * rate)
        schedule.extend(offset + (i + 0.5) * length / n for i in range(n))
        offset += length
    sent_at: list[float] = []
    prompts: list[int] = []
    outputs: list[int] = []
    statuses: list[int] = []

    async def one(prompt: str, max_new: int) -> None:
        body = {"inputs": prompt, "parameters": {"max_new_tokens": max_new}}
        async with client.post(f"{url}/generate", json=body) as resp:
            statuses.append(resp.status)
            await resp.read()

    tasks: list[asyncio.Task[None]] = []
    start = loop.time()
    for at in schedule:
        delay = start + at - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        prompt = "x" * rng.randint(40, 800)
        max_new = rng.randint(20, 60)
        sent_at.append(time.time())
        prompts.append(estimate_tokens(prompt))
        outputs.append(max_new)
        tasks.append(asyncio.create_task(one(prompt, max_new)))
    await asyncio.gather(*tasks)
    assert statuses == [200] * len(schedule)
    return sent_at, prompts, outputs


async def test_history_import_and_calibration_recover_the_load_and_the_replica(
    running_prometheus: PrometheusServer, service: str, client: aiohttp.ClientSession
) -> None:
    prom = running_prometheus
    selector = f'namespace="{NAMESPACE}",app_kubernetes_io_instance="{service}"'
    async with Fleet(
        service, namespace=NAMESPACE, replicas=1, config=REPLICA, file_sd_dir=prom.file_sd_dir
    ) as fleet:
        await eventually(lambda: prom.query(f"tgi_request_count{{{selector}}}"), bool)
        since = time.time()
        # The range starts on a step boundary after `since` (it is aligned to its end): no request
        # may come before it.
        await asyncio.sleep(STEP_S + 0.5)
        sent_at, prompts, outputs = await _send_load(client, fleet.url)
        # The last answers and one scrape after them, plus one step (the range ends on a whole step).
        await asyncio.sleep(2.0 + STEP_S)
        until = time.time()

        parser = build_parser(_args(prom, service, since, until))
        args = parser.parse_args(_args(prom, service, since, until))
        history = PrometheusHistory(HistoryQuery.from_args(args))
        trace, _, _, notes = await asyncio.to_thread(history.trace, seed=1)
        assert notes == []  # TGI counts arrivals and exports token histograms

        # Every request, exactly: counters are differenced, not extrapolated.
        assert len(trace) == len(sent_at)
        grid = history.query.grid
        assert grid.start >= since
        assert min(sent_at) > grid.start
        assert max(sent_at) < grid.end
        # Per step: what was sent in the step, give or take the requests of the last scrape
        # interval (1 s) plus a little slack before each boundary (a request sent just before a
        # boundary is counted by the first scrape after it).
        slack = prom.scrape_interval_s + 0.5
        for k in range(grid.steps):
            lo, hi = grid.time(k), grid.time(k + 1)
            got = sum(1 for t in trace.arrival if k * grid.step < t <= (k + 1) * grid.step)
            at_least = sum(1 for t in sent_at if lo < t <= hi - slack)
            at_most = sum(1 for t in sent_at if lo - slack < t <= hi)
            assert at_least <= got <= at_most, (k, at_least, got, at_most)

        # Means: the per-step bucket distributions are placed at each step's _sum/_count mean; only
        # rounding to whole tokens and the stratified draw are left (well under 2 %).
        sent_prompt = sum(prompts) / len(prompts)
        sent_output = sum(outputs) / len(outputs)
        assert trace.mean_prompt_tokens == pytest.approx(sent_prompt, rel=0.02)
        assert trace.mean_output_tokens == pytest.approx(sent_output, rel=0.02)
        # The distribution, not just the mean, to the resolution of TGI's buckets (2048 / 100 = 20.48
        # tokens for outputs): every drawn value lies in a bucket that had observations, and the share
        # above 40.96 tokens is the share sent.
        width = REPLICA.max_total_tokens / 100
        assert max(trace.output_tokens) <= math.ceil(3 * width)
        upper = sum(1 for n in trace.output_tokens if n > 2 * width) / len(trace)
        assert upper == pytest.approx(sum(1 for n in outputs if n > 2 * width) / len(outputs), abs=0.08)

        # --calibrate through the command, replaying with one policy.
        argv = _args(prom, service, since, until, "--calibrate", "--policy", "tgi-autoscaler", "--no-oracle")
        argv += ["--plot", "", "--quiet"]
        out, err = io.StringIO(), io.StringIO()
        code = await asyncio.to_thread(run, build_parser(argv).parse_args(argv), out, err)
        print(out.getvalue())
        print(err.getvalue())
        assert code == 0, err.getvalue()
        args = build_parser(argv).parse_args(argv)
        fit = await asyncio.to_thread(_fit, args)

    # Tolerances. The fit regresses each step's mean time per token on its token-weighted running
    # batch, sampled once a second (5 samples a step): the batch a request saw is known to about
    # +-1 sequence, and TGI's per-token time carries the prefill pauses of other arrivals (1 ms each,
    # a few per second). A 10 % error on the 20 ms step and 30 % on the 0.1 slowdown absorb that
    # while staying far from the defaults (13.3 ms, 0.031) and from "no slowdown".
    assert fit.decode is not None, fit.notes
    assert fit.decode.decode_step_s == pytest.approx(1 / REPLICA.token_rate, rel=0.10)
    assert fit.decode.batch_slowdown == pytest.approx(REPLICA.batch_slowdown, rel=0.30)
    assert fit.decode.batch_range[1] - fit.decode.batch_range[0] > 5
    assert fit.cold_start is None  # no kube-state-metrics here, and the output says so
    text = out.getvalue()
    assert "kube_pod_created" in text
    assert "decodeSecondsPerToken:" in text
    assert "batchSlowdown:" in text
    assert "tgi-autoscaler" in text  # the replay ran (with the fitted numbers)


def _fit(args: argparse.Namespace) -> Calibration:
    history = PrometheusHistory(HistoryQuery.from_args(args))
    trace, _, output, _ = history.trace(seed=1)
    return history.calibrate(output, trace, ColdStart())


async def test_missing_series_is_an_error_naming_it_and_the_range(
    running_prometheus: PrometheusServer, service: str
) -> None:
    """The simulator's vLLM exports only its queue gauges: the import must refuse, not read zeros."""
    prom = running_prometheus
    async with Fleet(
        service, namespace=NAMESPACE, replicas=1, config=REPLICA, engine="vllm", file_sd_dir=prom.file_sd_dir
    ):
        await eventually(
            lambda: prom.query(f'vllm:num_requests_waiting{{app_kubernetes_io_instance="{service}"}}'), bool
        )
        until = time.time()
        argv = _args(prom, service, until - 20, until, "--engine", "vllm")
        args = build_parser(argv).parse_args(argv)
        history = PrometheusHistory(HistoryQuery.from_args(args))
        with pytest.raises(HistoryError) as caught:
            await asyncio.to_thread(history.trace)
    message = str(caught.value)
    assert "vllm:request_success_total" in message
    assert service in message
    assert " .. " in message  # the time range


def test_an_unreachable_prometheus_is_an_error_naming_it() -> None:
    # Port 9 (discard) on loopback: nothing listens there in the test environment.
    argv = ["backtest", "--prometheus", "http://127.0.0.1:9", "--namespace", "n", "--service-name", "s"]
    out, err = io.StringIO(), io.StringIO()
    code = run(build_parser(argv).parse_args(argv), out, err)
    assert code == 2
    assert "backtest: --prometheus http://127.0.0.1:9:" in err.getvalue()
