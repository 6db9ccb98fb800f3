"""The real-time driver of the queue model and the ``simulate`` command line (no sockets)."""

from __future__ import annotations

import argparse
import asyncio

import pytest

from tgi_autoscaler_dev.sim import cli
from tgi_autoscaler_dev.sim.engine import ReplicaEngine
from tgi_autoscaler_dev.sim.model import Accepted, GenerationRequest, Rejected, ReplicaConfig, ReplicaModel

pytestmark = pytest.mark.unit

QUICK = ReplicaConfig(max_batch_size=4, token_rate=2000.0, prefill_time_s=0.0, max_concurrent_requests=3)


async def drain(queue: asyncio.Queue[object], expected: int) -> list[object]:
    return [await asyncio.wait_for(queue.get(), timeout=10) for _ in range(expected)]


async def test_streaming_submissions_get_every_token_and_others_only_the_last() -> None:
    engine = ReplicaEngine(ReplicaModel(QUICK, now=0.0))
    engine.start()
    try:
        streamed, tokens = engine.submit(GenerationRequest(4, 5), every_token=True)
        plain, final = engine.submit(GenerationRequest(4, 5), every_token=False)
        assert isinstance(streamed, Accepted)
        assert isinstance(plain, Accepted)
        assert tokens is not None
        assert final is not None
        events = await drain(tokens, 5)  # type: ignore[arg-type]
        assert [e.index for e in events] == [1, 2, 3, 4, 5]  # type: ignore[attr-defined]
        (last,) = await drain(final, 1)  # type: ignore[arg-type]
        assert last.completion is not None  # type: ignore[attr-defined]
        await asyncio.wait_for(engine.wait_idle(), timeout=10)
        assert final.empty()
        assert engine.snapshot().in_flight == 0
    finally:
        await engine.stop()


async def test_a_cancelled_request_frees_its_slot_and_counts_as_dropped() -> None:
    slow = ReplicaConfig(max_batch_size=1, token_rate=1.0, max_concurrent_requests=1)
    engine = ReplicaEngine(ReplicaModel(slow, now=0.0))
    engine.start()
    try:
        first, _ = engine.submit(GenerationRequest(4, 100))
        assert isinstance(first, Accepted)
        refused, stream = engine.submit(GenerationRequest(4, 100))
        assert isinstance(refused, Rejected)
        assert stream is None
        engine.cancel(first.request_id)
        await asyncio.wait_for(engine.wait_idle(), timeout=10)
        assert engine.model.stats.counter("tgi_request_failure", {"err": "dropped"}) == 1
        again, _ = engine.submit(GenerationRequest(4, 1))
        assert isinstance(again, Accepted)
    finally:
        await engine.stop()


async def test_submitting_to_a_stopped_engine_is_an_error() -> None:
    engine = ReplicaEngine(ReplicaModel(QUICK, now=0.0))
    with pytest.raises(RuntimeError, match="not running"):
        engine.submit(GenerationRequest(4, 1))


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="tgi-autoscaler")
    cli.register(root.add_subparsers(dest="command", required=True))
    return root


def test_simulate_parses_fleet_capacity_and_trace_options() -> None:
    args = parser().parse_args(
        [
            "simulate",
            "--replicas", "3",
            "--label", "team=nlp",
            "--engine", "vllm",
            "--max-batch-size", "16",
            "--trace", "step:from=1,to=5,at=10",
            "--stream",
        ]
    )  # fmt: skip
    assert (args.replicas, args.engine, args.max_batch_size, args.stream) == (3, "vllm", 16, True)
    assert args.label == [("team", "nlp")]
    assert args.func is cli.run


def test_simulate_rejects_a_bad_trace_at_parse_time(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        parser().parse_args(["simulate", "--trace", "step:from=1,to=5"])
    assert info.value.code == 2
    assert "missing at" in capsys.readouterr().err


def test_simulate_reports_an_impossible_configuration_and_exits_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = parser().parse_args(["simulate", "--max-batch-size", "0"])
    assert cli.run(args) == 2
    assert "max_batch_size" in capsys.readouterr().err
