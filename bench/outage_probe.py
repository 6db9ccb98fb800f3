"""What external metrics servers answer while Prometheus is down or hung, and how fast they recover.

Each server is probed on its own schedule (one read every ``interval_s``, the next only after the
previous answer, like an HPA that waits for its read) while the caller takes Prometheus away and
brings it back. Every answer is classified:

- ``value``: 200 with at least one item (the number is kept, to compare with Prometheus itself);
- ``empty``: 200 with no items (an HPA treats that as "no metrics", but it is not an error status);
- ``<status> <reason>``: an error Status, or ``transport`` when the connection itself failed.

The caller marks the moments (outage start, Prometheus ready again); :func:`summarize` turns the
probe log into what each server returned during the outage and how long after Prometheus was ready
its first value arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from metrics_load import Identity, Read, client_session, parse_quantity, read_once

__all__ = ["OutageSummary", "Probe", "Prober", "classify", "summarize"]


@dataclass(frozen=True)
class Probe:
    sent: float
    received: float
    kind: str
    value: Decimal | None
    message: str

    @property
    def latency_s(self) -> float:
        return self.received - self.sent


def classify(status: int, body: Any) -> tuple[str, Decimal | None, str]:
    """(kind, value, message) of one answer; see the module docstring for the kinds."""
    if status == 200 and isinstance(body, dict):
        items = body.get("items") or []
        if not items:
            return "empty", None, "200 with no items"
        return "value", parse_quantity(str(items[0]["value"])), ""
    if status == 0:
        return "transport", None, str(body)[:160]
    if isinstance(body, dict):
        reason = body.get("reason") or "?"
        return f"{status} {reason}", None, str(body.get("message", ""))[:160]
    return f"{status}", None, str(body)[:160]


@dataclass
class Prober:
    """Reads one selector from one server until stopped, logging every answer."""

    name: str
    base_url: str
    read: Read
    identity: Identity
    ctx: ssl.SSLContext
    interval_s: float = 0.25
    timeout_s: float = 30.0
    probes: list[Probe] = field(default_factory=list)

    async def run(self, stop: asyncio.Event) -> None:
        async with client_session(self.ctx, limit=2) as session:
            while not stop.is_set():
                sent = time.monotonic()
                status, body, _ = await read_once(
                    session, self.base_url, self.read, self.identity, timeout_s=self.timeout_s
                )
                kind, value, message = classify(status, body)
                self.probes.append(Probe(sent, time.monotonic(), kind, value, message))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self.interval_s)

    def value_since(self, moment: float) -> Probe | None:
        """The first value answer to a read sent at or after ``moment``."""
        return next((p for p in self.probes if p.sent >= moment and p.kind == "value"), None)


@dataclass(frozen=True)
class OutageSummary:
    name: str
    during: Counter[str]  # kinds of the answers to reads sent while Prometheus was away
    messages: tuple[str, ...]
    max_latency_s: float
    recovery_s: float | None  # Prometheus ready -> first value answer
    recovered_value: Decimal | None
    values_during: int

    def kinds(self) -> str:
        return ", ".join(f"{n}x {kind}" for kind, n in self.during.most_common())


def summarize(prober: Prober, *, away: float, until: float, back: float) -> OutageSummary:
    """Answers to reads sent in [away, until), and recovery after ``back``.

    ``until`` is when Prometheus was told to come back (restart, SIGCONT) and ``back`` when it was
    seen ready; reads sent in between are in neither window, since Prometheus may already answer.
    """
    during = [p for p in prober.probes if away <= p.sent < until]
    messages: list[str] = []
    for probe in during:
        text = f"{probe.kind}: {probe.message}" if probe.message else probe.kind
        if text not in messages:
            messages.append(text)
    first = prober.value_since(back)
    return OutageSummary(
        name=prober.name,
        during=Counter(p.kind for p in during),
        messages=tuple(messages[:4]),
        max_latency_s=max((p.latency_s for p in during), default=0.0),
        recovery_s=None if first is None else first.received - back,
        recovered_value=None if first is None else first.value,
        values_during=sum(1 for p in during if p.kind == "value"),
    )


async def wait_recovered(probers: Sequence[Prober], since: float, *, timeout_s: float) -> None:
    """Until every prober has a value answer to a read sent after ``since`` (or the timeout)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all(p.value_since(since) is not None for p in probers):
            return
        await asyncio.sleep(0.1)
