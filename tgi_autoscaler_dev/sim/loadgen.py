"""Open-loop load generator replaying a trace against a TGI endpoint on loopback.

Requests are sent at the trace's arrival times whether or not earlier ones have been answered (an
open loop, like real users), so an overloaded fleet builds a queue instead of slowing the load down.
A run is bounded both in time (``duration_s``, plus ``drain_timeout_s`` to collect answers) and in
count (``max_requests``), and stops by itself. Only loopback targets are accepted: this tool exists
to exercise the simulator, never a remote server.

Instead of a rate trace, a run can replay a ``schedule``: exact arrival times, each with its own
``max_new_tokens`` (a request trace replayed request by request, so a live run and an offline replay
of the same trace see the same requests). Every request is then recorded (``LoadReport.requests``):
when it was due, when it was sent, its outcome, latency and, when streaming, its time to first token.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp
import structlog

from tgi_autoscaler_dev.sim.stats import percentile
from tgi_autoscaler_dev.sim.traces import Trace, arrival_times, trace_to_dict

__all__ = [
    "LoadGenerator",
    "LoadReport",
    "LoadSpec",
    "RequestRecord",
    "ScheduledRequest",
    "ensure_loopback",
    "run_load",
]

log = structlog.get_logger(__name__)

Outcome = Literal["ok", "rejected", "failed"]


def ensure_loopback(url: str) -> str:
    """Return ``url`` if it is http(s) on a loopback host; raise ValueError naming the host otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"target {url!r}: scheme must be http or https")
    host = parts.hostname or ""
    if host != "localhost":
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ValueError(
                f"target {url!r}: host {host!r} is not a loopback address; the load generator only "
                "sends traffic to 127.0.0.0/8, ::1 or localhost"
            )
    return url.rstrip("/")


@dataclass(frozen=True, slots=True)
class ScheduledRequest:
    """One request of a schedule: sent ``at_s`` seconds after the run starts."""

    at_s: float
    max_new_tokens: int

    def __post_init__(self) -> None:
        if not (math.isfinite(self.at_s) and self.at_s >= 0):
            raise ValueError(f"ScheduledRequest.at_s: must be a finite time >= 0, got {self.at_s!r}")
        if self.max_new_tokens < 1:
            raise ValueError(f"ScheduledRequest.max_new_tokens: must be >= 1, got {self.max_new_tokens!r}")


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """What to send: a trace (or an exact schedule), bounds, and the shape of each request.

    With a non-empty ``schedule`` its arrival times and token counts replace the trace's; requests
    due after ``duration_s`` or beyond ``max_requests`` are not sent.
    """

    trace: Trace
    duration_s: float
    max_requests: int
    max_new_tokens: int = 20
    prompt: str = "What is queue-depth autoscaling and why does it suit LLM servers?"
    stream: bool = False
    poisson: bool = False
    seed: int | None = None
    request_timeout_s: float = 120.0
    drain_timeout_s: float = 30.0
    max_in_flight: int = 2000
    schedule: tuple[ScheduledRequest, ...] = ()

    def __post_init__(self) -> None:
        checks = {
            "duration_s": self.duration_s > 0 and math.isfinite(self.duration_s),
            "max_requests": self.max_requests >= 0,
            "max_new_tokens": self.max_new_tokens >= 1,
            "request_timeout_s": self.request_timeout_s > 0,
            "drain_timeout_s": self.drain_timeout_s >= 0,
            "max_in_flight": self.max_in_flight >= 1,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"LoadSpec.{name}: out of range ({getattr(self, name)!r})")
        if any(b.at_s < a.at_s for a, b in zip(self.schedule, self.schedule[1:], strict=False)):
            raise ValueError("LoadSpec.schedule: arrival times must be sorted")

    def planned(self) -> list[tuple[float, int]]:
        """(send time, max_new_tokens) of every request the run will send, in order."""
        if self.schedule:
            due = [(r.at_s, r.max_new_tokens) for r in self.schedule if r.at_s <= self.duration_s]
            return due[: self.max_requests]
        times = arrival_times(
            self.trace,
            duration_s=self.duration_s,
            max_requests=self.max_requests,
            poisson=self.poisson,
            seed=self.seed,
        )
        return [(t, self.max_new_tokens) for t in times]

    def payload(self, max_new_tokens: int | None = None) -> dict[str, Any]:
        tokens = self.max_new_tokens if max_new_tokens is None else max_new_tokens
        return {"inputs": self.prompt, "parameters": {"max_new_tokens": tokens}}


@dataclass(slots=True)
class RequestRecord:
    """What happened to one request, times in seconds from the run's start (NaN: did not happen)."""

    index: int
    due_s: float
    sent_s: float
    max_new_tokens: int
    outcome: Outcome | None = None
    first_token_s: float = math.nan
    done_s: float = math.nan

    @property
    def ttft_s(self) -> float:
        """Time to first token as the client saw it (streaming runs; NaN otherwise)."""
        return self.first_token_s - self.sent_s

    @property
    def lag_s(self) -> float:
        """How late the request left compared with its schedule (event loop delay)."""
        return self.sent_s - self.due_s


@dataclass(slots=True)
class LoadReport:
    """Outcome counts and latencies; updated live while a run is in progress."""

    planned: int = 0
    sent: int = 0
    ok: int = 0
    rejected: int = 0
    failed: int = 0
    skipped: int = 0
    in_flight: int = 0
    elapsed_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    requests: list[RequestRecord] = field(default_factory=list)  # schedule runs only
    started_at: float = math.nan  # the event loop's clock when the run started (its time zero)

    def latency(self, q: float) -> float:
        """Latency percentile of successful requests (NaN when none succeeded)."""
        return percentile(self.latencies_s, q)

    def to_dict(self) -> dict[str, Any]:
        return {
            "planned": self.planned,
            "sent": self.sent,
            "ok": self.ok,
            "rejected": self.rejected,
            "failed": self.failed,
            "skipped": self.skipped,
            "elapsed_s": round(self.elapsed_s, 3),
            "latency_p50_s": self.latency(50),
            "latency_p95_s": self.latency(95),
            "latency_p99_s": self.latency(99),
            "errors": dict(self.errors),
        }

    def summary(self) -> str:
        def ms(q: float) -> str:
            value = self.latency(q)
            return "-" if math.isnan(value) else f"{value * 1000:.0f}ms"

        return (
            f"sent={self.sent} ok={self.ok} rejected={self.rejected} failed={self.failed} "
            f"in_flight={self.in_flight} p50={ms(50)} p95={ms(95)} p99={ms(99)}"
        )


class LoadGenerator:
    """One run of ``spec`` against ``url``; ``report`` can be read while ``run()`` is in progress."""

    def __init__(self, url: str, spec: LoadSpec, *, session: aiohttp.ClientSession | None = None) -> None:
        self.url = ensure_loopback(url)
        self.spec = spec
        self.report = LoadReport()
        self._session = session

    async def run(self) -> LoadReport:
        spec = self.spec
        schedule = spec.planned()
        self.report.planned = len(schedule)
        log.info(
            "load_started",
            target=self.url,
            trace="schedule" if spec.schedule else trace_to_dict(spec.trace),
            duration_s=spec.duration_s,
            planned=len(schedule),
        )
        own_session = self._session is None
        session = self._session or aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),
        )
        tasks: set[asyncio.Task[None]] = set()
        loop = asyncio.get_running_loop()
        start = loop.time()
        self.report.started_at = start
        try:
            for index, (at, tokens) in enumerate(schedule):
                delay = start + at - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                if self.report.in_flight >= spec.max_in_flight:
                    self.report.skipped += 1
                    continue
                record = None
                if spec.schedule:
                    record = RequestRecord(index, at, loop.time() - start, tokens)
                    self.report.requests.append(record)
                task = asyncio.create_task(self._one(session, tokens, record, start))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            remaining = max(0.0, start + spec.duration_s - loop.time())
            await asyncio.sleep(remaining)
            if tasks:
                _, pending = await asyncio.wait(set(tasks), timeout=spec.drain_timeout_s)
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
        finally:
            for task in tasks:
                task.cancel()
            if own_session:
                await session.close()
            self.report.elapsed_s = loop.time() - start
        log.info("load_finished", **self.report.to_dict())
        return self.report

    async def _one(
        self,
        session: aiohttp.ClientSession,
        max_new_tokens: int | None = None,
        record: RequestRecord | None = None,
        start: float = 0.0,
    ) -> None:
        report = self.report
        report.sent += 1
        report.in_flight += 1
        started = time.monotonic()
        outcome: Outcome = "failed"
        reason = "unknown"
        loop = asyncio.get_running_loop()

        def first_token() -> None:
            if record is not None and math.isnan(record.first_token_s):
                record.first_token_s = loop.time() - start

        try:
            async with asyncio.timeout(self.spec.request_timeout_s):
                outcome, reason = await self._request(session, max_new_tokens, first_token)
        except TimeoutError:
            reason = "timeout"
        except asyncio.CancelledError:
            reason = "unfinished at end of run"
            raise
        except aiohttp.ClientError as exc:
            reason = type(exc).__name__
        finally:
            report.in_flight -= 1
            if outcome == "ok":
                report.ok += 1
                report.latencies_s.append(time.monotonic() - started)
            elif outcome == "rejected":
                report.rejected += 1
            else:
                report.failed += 1
                report.errors[reason] += 1
            if record is not None:
                record.outcome = outcome
                record.done_s = loop.time() - start

    async def _request(
        self,
        session: aiohttp.ClientSession,
        max_new_tokens: int | None = None,
        first_token: Callable[[], None] | None = None,
    ) -> tuple[Outcome, str]:
        path = "/generate_stream" if self.spec.stream else "/generate"
        async with session.post(self.url + path, json=self.spec.payload(max_new_tokens)) as resp:
            if resp.status == 429:
                await resp.read()
                return "rejected", "overloaded"
            if resp.status != 200:
                await resp.read()
                return "failed", f"http {resp.status}"
            if not self.spec.stream:
                await resp.read()
                return "ok", ""
            return await _consume_sse(resp, first_token)


async def _consume_sse(
    resp: aiohttp.ClientResponse, first_token: Callable[[], None] | None = None
) -> tuple[Outcome, str]:
    """Read a TGI event stream; errors arrive as events carrying ``error``/``error_type``.

    ``first_token`` is called when the first token event arrives."""
    finished = False
    async for raw in resp.content:
        line = raw.decode().strip()
        if not line.startswith("data:"):
            continue
        with contextlib.suppress(ValueError):
            event = json.loads(line[5:])
            if "error" in event:
                kind = event.get("error_type", "error")
                return ("rejected", kind) if kind == "overloaded" else ("failed", str(kind))
            if first_token is not None and "token" in event:
                first_token()
            if event.get("generated_text") is not None:
                finished = True
    return ("ok", "") if finished else ("failed", "incomplete stream")


async def run_load(url: str, spec: LoadSpec, *, session: aiohttp.ClientSession | None = None) -> LoadReport:
    """Replay ``spec`` against ``url`` (loopback only) and return the final report."""
    return await LoadGenerator(url, spec, session=session).run()
