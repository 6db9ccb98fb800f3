"""Load and measurement for external metrics servers: HTTPS keep-alive reads, closed and open loop.

Both adapters are read exactly as the aggregator reads them: HTTPS on a kept-alive connection,
authenticated by the front-proxy client certificate, with the caller's identity in
``X-Remote-User``/``X-Remote-Group``. Two shapes of load:

- closed loop (``concurrency``): N workers, each sending its next read as soon as the previous one
  is answered; measures the server's capacity at that parallelism;
- open loop (``rate``): reads are started on a fixed schedule whatever the answers, which is how
  N HPAs syncing every 15 s behave; a slow server shows up as latency, not as a lower offered rate.

Reads rotate over one selector per service. Also here: what ``/proc`` says about a process (CPU
seconds, peak resident memory, with the peak reset per run) and Kubernetes quantity parsing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import ssl
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from tgi_autoscaler.k8s.quantity import parse_quantity

__all__ = [
    "Identity",
    "Read",
    "RunResult",
    "client_session",
    "closed_loop",
    "cpu_seconds",
    "generator_cpu_seconds",
    "machine_cpu",
    "open_loop",
    "parse_quantity",
    "peak_rss_mib",
    "read_once",
    "reset_peak_rss",
]

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of every thread of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def machine_cpu() -> tuple[float, float]:
    """(idle, total) jiffies of all CPUs from /proc/stat; deltas give the machine's idle share."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return float(fields[3] + fields[4]), float(sum(fields[:8]))


def generator_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mib(pid: int) -> float:
    """``VmHWM``: the highest resident set since start or since :func:`reset_peak_rss`."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak_rss(pid: int) -> None:
    """Make ``VmHWM`` restart from the current RSS (``echo 5 > clear_refs``), so peaks are per run."""
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")


@dataclass(frozen=True)
class Identity:
    """Who the aggregator says is calling; sent as request headers over the front-proxy cert."""

    user: str
    groups: tuple[str, ...]

    def headers(self) -> list[tuple[str, str]]:
        return [
            ("Accept", "application/json"),
            ("X-Remote-User", self.user),
            *(("X-Remote-Group", g) for g in self.groups),
        ]


@dataclass(frozen=True)
class Read:
    """One external metric read: namespace, metric and label selector."""

    namespace: str
    selector: str
    metric: str = "tgi_queue_size"

    def path(self) -> str:
        return (
            f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{self.namespace}/{self.metric}"
            f"?labelSelector={quote(self.selector, safe='')}"
        )


@dataclass
class RunResult:
    adapter: str
    mode: str  # "concurrency" or "rate"
    level: float
    seconds: float = 0.0
    sent: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    dropped: int = 0  # open loop: not sent because too many were already in flight
    generator_cpu_s: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> int:
        return self.statuses.get("200", 0)

    @property
    def errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status != "200") + self.dropped

    @property
    def throughput(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def on_time(self, within_ms: float) -> float:
        """Share of the reads sent that were answered 200 within ``within_ms``."""
        if not self.sent:
            return 0.0
        return sum(1 for latency in self.latencies_ms if latency <= within_ms) / self.sent

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def client_session(ctx: ssl.SSLContext, *, limit: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(ssl=ctx, limit=limit, keepalive_timeout=60)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30))


async def read_once(
    session: aiohttp.ClientSession,
    base_url: str,
    read: Read,
    identity: Identity,
    *,
    timeout_s: float = 30.0,
) -> tuple[int, Any, float]:
    """One read: (HTTP status or 0 on a transport error, decoded body or error text, milliseconds)."""
    started = time.perf_counter()
    try:
        async with session.get(
            base_url + read.path(),
            headers=identity.headers(),
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as response:
            raw = await response.read()
            status = response.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        return 0, f"{type(exc).__name__}: {exc}", (time.perf_counter() - started) * 1000
    elapsed = (time.perf_counter() - started) * 1000
    try:
        return status, json.loads(raw), elapsed
    except ValueError:
        return status, raw.decode(errors="replace"), elapsed


async def _timed(
    session: aiohttp.ClientSession,
    url: str,
    headers: list[tuple[str, str]],
    result: RunResult,
    *,
    scheduled: float | None = None,
) -> None:
    """One read into ``result``; latency counts from ``scheduled`` (open loop) or from now."""
    started = time.perf_counter() if scheduled is None else scheduled
    try:
        async with session.get(url, headers=headers) as response:
            await response.read()
            status = str(response.status)
    except (aiohttp.ClientError, TimeoutError) as exc:
        status = type(exc).__name__
    result.statuses[status] += 1
    if status == "200":
        result.latencies_ms.append((time.perf_counter() - started) * 1000)


async def closed_loop(
    adapter: str,
    base_url: str,
    ctx: ssl.SSLContext,
    reads: Sequence[Read],
    identity: Identity,
    *,
    concurrency: int,
    seconds: float,
) -> RunResult:
    """``concurrency`` workers reading back-to-back for ``seconds`` on kept-alive connections."""
    urls = [base_url + r.path() for r in reads]
    headers = identity.headers()
    result = RunResult(adapter, "concurrency", concurrency)
    async with client_session(ctx, limit=concurrency) as session:  # one connection per worker
        warm = RunResult(adapter, "warm-up", concurrency)
        await asyncio.gather(
            *(_timed(session, urls[i % len(urls)], headers, warm) for i in range(concurrency))
        )
        counter = 0
        cpu0 = generator_cpu_seconds()
        start = time.perf_counter()
        deadline = start + seconds

        async def worker() -> None:
            nonlocal counter
            while time.perf_counter() < deadline:
                index = counter
                counter += 1
                await _timed(session, urls[index % len(urls)], headers, result)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        result.seconds = time.perf_counter() - start
        result.generator_cpu_s = generator_cpu_seconds() - cpu0
        result.sent = counter
    return result


async def open_loop(
    adapter: str,
    base_url: str,
    ctx: ssl.SSLContext,
    reads: Sequence[Read],
    identity: Identity,
    *,
    rate: float,
    seconds: float,
    connections: int = 32,
    max_in_flight: int = 2048,
    drain_s: float = 10.0,
) -> RunResult:
    """Start reads at ``rate`` per second for ``seconds`` regardless of answers (open loop).

    Reads share at most ``connections`` kept-alive connections, as the aggregator's few
    connections to an APIService do; a read waiting for a free connection is waiting, so latency
    counts from the moment it was due, not from when it got onto the wire. Reads still unanswered
    ``drain_s`` after the last one was started are cancelled and counted as ``unfinished``.
    """
    urls = [base_url + r.path() for r in reads]
    headers = identity.headers()
    result = RunResult(adapter, "rate", rate)
    tasks: set[asyncio.Task[None]] = set()
    async with client_session(ctx, limit=connections) as session:
        warm = RunResult(adapter, "warm-up", rate)
        await asyncio.gather(*(_timed(session, urls[i % len(urls)], headers, warm) for i in range(4)))
        interval = 1.0 / rate
        cpu0 = generator_cpu_seconds()
        start = time.perf_counter()
        sent = 0
        while (now := time.perf_counter()) - start < seconds:
            due = int((now - start) / interval) + 1
            while sent < due:
                if len(tasks) >= max_in_flight:
                    result.dropped += 1
                else:
                    due_at = start + sent * interval
                    task = asyncio.create_task(
                        _timed(session, urls[sent % len(urls)], headers, result, scheduled=due_at)
                    )
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                sent += 1
            await asyncio.sleep(max(0.0, start + sent * interval - time.perf_counter()))
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=drain_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            if pending:
                result.statuses["unfinished"] += len(pending)
        result.seconds = time.perf_counter() - start
        result.generator_cpu_s = generator_cpu_seconds() - cpu0
        result.sent = sent
    return result
