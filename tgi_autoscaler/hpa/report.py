"""Turn a replay into what people read: a few headline numbers, a compact table, CSV, Markdown.

The headline numbers answer the questions a scaling configuration is chosen by: how long until the
replicas asked for exist and are Ready, how long the queue (and so the wait) grows meanwhile, how
far the HPA overshoots what the load needed, and how long the extra GPUs are held afterwards.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass

from tgi_autoscaler.hpa.controller import Decision
from tgi_autoscaler.hpa.normalize import StabilizationReason
from tgi_autoscaler.hpa.replay import ReplayResult, Sample
from tgi_autoscaler.hpa.types import Seconds

__all__ = [
    "ReplaySummary",
    "describe_rescale",
    "format_csv",
    "format_markdown",
    "format_summary",
    "format_table",
    "summarize",
    "table_rows",
]


@dataclass(frozen=True)
class ReplaySummary:
    """Headline numbers of a replay; times are absolute trace times in seconds.

    ``longest_wait_seconds`` estimates the wait of the request at the back of the queue at its
    longest (queue / what the Ready replicas serve); ``mean_wait_seconds`` is the average time a
    request spends queued over the whole trace (Little's law: queue-seconds / arrivals).
    ``back_to_min_at`` is when the count last returned to ``minReplicas`` to stay there.
    """

    load_rise_at: Seconds | None
    load_fall_at: Seconds | None
    needed_replicas: int
    peak_replicas: int
    peak_replicas_at: Seconds
    peak_ready_at: Seconds | None
    peak_queue: float
    peak_queue_at: Seconds
    queue_drained_at: Seconds | None
    longest_wait_seconds: float
    mean_wait_seconds: float
    scale_down_started_at: Seconds | None
    back_to_min_at: Seconds | None
    scale_down_steps: int
    rescales: int
    replica_hours: float


def _rate_changes(samples: tuple[Sample, ...]) -> tuple[Seconds | None, Seconds | None]:
    base = samples[0].arrival_rate
    rise = next((s.time for s in samples if s.arrival_rate > base), None)
    if rise is None:
        return None, None
    fall = next((s.time for s in samples if s.time > rise and s.arrival_rate <= base), None)
    return rise, fall


def summarize(result: ReplayResult) -> ReplaySummary:
    """The headline numbers of ``result``."""
    samples = result.samples
    config = result.config
    rise, fall = _rate_changes(samples)
    peak_rate = max(s.arrival_rate for s in samples)
    needed = max(result.spec.min_replicas, math.ceil(peak_rate / config.capacity_per_replica - 1e-9))
    peak = max(samples, key=lambda s: (s.current, -s.time))
    peak_ready = next((s.time for s in samples if s.ready >= peak.current), None)
    top_queue = max(samples, key=lambda s: (s.queue, -s.time))
    drained = None
    if top_queue.queue > 0:
        drained = next((s.time for s in samples if s.time > top_queue.time and s.queue == 0), None)
    waits = [
        s.queue / (s.ready * config.capacity_per_replica) if s.ready else (math.inf if s.queue else 0.0)
        for s in samples
    ]
    downs = [d for d in result.rescales if d.desired_replicas < d.current_replicas and d.time >= peak.time]
    back = None
    if peak.current > result.spec.min_replicas and samples[-1].current <= result.spec.min_replicas:
        back = next(
            d.time for d in reversed(result.rescales) if d.desired_replicas <= result.spec.min_replicas
        )
    hours = sum(s.current for s in samples[:-1]) * config.tick / 3600
    arrivals = sum(s.arrival_rate for s in samples[:-1]) * config.tick
    queued = sum(s.queue for s in samples[:-1]) * config.tick
    return ReplaySummary(
        load_rise_at=rise,
        load_fall_at=fall,
        needed_replicas=needed,
        peak_replicas=peak.current,
        peak_replicas_at=peak.time,
        peak_ready_at=peak_ready,
        peak_queue=top_queue.queue,
        peak_queue_at=top_queue.time,
        queue_drained_at=drained,
        longest_wait_seconds=max(waits),
        mean_wait_seconds=queued / arrivals if arrivals else 0.0,
        scale_down_started_at=downs[0].time if downs else None,
        back_to_min_at=back,
        scale_down_steps=len(downs),
        rescales=len(result.rescales),
        replica_hours=hours,
    )


def _clock(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole // 60:d}:{whole % 60:02d}"


def _after(time: float | None, reference: float | None, what: str) -> str:
    if time is None:
        return "never (within the trace)"
    if reference is None:
        return f"t={_clock(time)}"
    return f"t={_clock(time)} ({_clock(time - reference)} after {what})"


def format_summary(summary: ReplaySummary, result: ReplayResult) -> list[str]:
    """Plain sentences with the headline numbers (times as minutes:seconds)."""
    spec, config = result.spec, result.config
    rise = "the load rose"
    lines = []
    if summary.load_rise_at is not None:
        lines.append(
            f"load rises at t={_clock(summary.load_rise_at)}"
            + (f" and falls back at t={_clock(summary.load_fall_at)}" if summary.load_fall_at else "")
            + f"; the peak needs {summary.needed_replicas} replica(s) of "
            f"{config.capacity_per_replica:g} req/s"
        )
    capped = " (maxReplicas)" if summary.peak_replicas == spec.max_replicas else ""
    lines.append(
        f"replicas peak at {summary.peak_replicas}{capped}, reached at "
        f"{_after(summary.peak_replicas_at, summary.load_rise_at, rise)}; all Ready at "
        f"{_after(summary.peak_ready_at, summary.load_rise_at, rise)}"
    )
    if summary.peak_queue > 0:
        wait = summary.longest_wait_seconds
        lines.append(
            f"queue peaks at {summary.peak_queue:.0f} requests at t={_clock(summary.peak_queue_at)}"
            f" (longest wait about {'unbounded' if math.isinf(wait) else _clock(wait)}), drained at "
            f"{_after(summary.queue_drained_at, summary.load_rise_at, rise)}; requests waited "
            f"{summary.mean_wait_seconds:.0f} s on average"
        )
    else:
        lines.append("the queue never forms")
    if summary.scale_down_started_at is not None:
        lines.append(
            f"scale-down starts at "
            f"{_after(summary.scale_down_started_at, summary.queue_drained_at, 'the queue drained')} and "
            f"takes {summary.scale_down_steps} step(s); back to {spec.min_replicas} at "
            f"{_after(summary.back_to_min_at, summary.load_fall_at, 'the load fell')}"
        )
    lines.append(
        f"{summary.rescales} scale event(s); {summary.replica_hours:.2f} replica-hours over "
        f"{_clock(result.trace.end)}"
    )
    return lines


def describe_rescale(decision: Decision) -> str:
    """``3->6 ScaleUpLimit (100% per 60s)``: the change and what bounded it."""
    text = f"{decision.current_replicas}->{decision.desired_replicas}"
    if decision.metric_replicas is None:
        return f"{text} ({decision.reason})"
    if decision.limited and decision.limit is not None:
        binding = [str(pl.policy) for pl in decision.policy_limits if pl.bound == decision.rate_bound]
        suffix = f" ({', '.join(binding)})" if binding and decision.limit.value.endswith("Limit") else ""
        return f"{text} {decision.limit.value}{suffix}"
    if decision.stabilized_replicas != decision.metric_replicas and decision.stabilization is not None:
        extreme = (
            "highest" if decision.stabilization is StabilizationReason.SCALE_DOWN_STABILIZED else "lowest"
        )
        held = decision.stabilized_replicas
        return f"{text} {decision.stabilization.value} ({extreme} recent proposal {held})"
    return text


_HEADER = ("time", "rate", "queue", "desired", "current", "ready", "rescale")


def table_rows(result: ReplayResult, every: float, until: float | None = None) -> list[tuple[str, ...]]:
    """Rows every ``every`` seconds, plus every row where the HPA changed the replica count,
    up to ``until`` (default: the end of the trace)."""
    rescales = {d.time: d for d in result.rescales}
    every_ticks = max(1, round(every / result.config.tick))
    rows: list[tuple[str, ...]] = []
    for index, sample in enumerate(result.samples):
        if until is not None and sample.time > until:
            break
        decision = rescales.get(sample.time)
        if index % every_ticks and decision is None:
            continue
        rows.append(
            (
                _clock(sample.time),
                f"{sample.arrival_rate:.2f}",
                f"{sample.queue:.0f}",
                str(sample.desired),
                str(sample.current),
                str(sample.ready),
                describe_rescale(decision) if decision else "",
            )
        )
    return rows


def format_table(result: ReplayResult, every: float, until: float | None = None) -> str:
    """A fixed-width table for a terminal."""
    rows = [_HEADER, *table_rows(result, every, until)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_HEADER))]
    lines = []
    for row in rows:
        cells = [cell.rjust(width) for cell, width in zip(row[:-1], widths[:-1], strict=True)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines) + "\n"


def format_markdown(result: ReplayResult, every: float, until: float | None = None) -> str:
    """The same table as GitHub Markdown."""
    rows = table_rows(result, every, until)
    lines = ["| " + " | ".join(_HEADER) + " |", "|" + "|".join("---:" for _ in _HEADER[:-1]) + "|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def format_csv(result: ReplayResult, every: float | None = None) -> str:
    """Every sample (or one per ``every`` seconds) as CSV with a header row."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("time_s", "arrival_rate", "queue", "desired", "current", "ready"))
    step = 1 if every is None else max(1, round(every / result.config.tick))
    for sample in result.samples[::step]:
        writer.writerow(
            (
                f"{sample.time:g}",
                f"{sample.arrival_rate:.6g}",
                f"{sample.queue:.3f}",
                sample.desired,
                sample.current,
                sample.ready,
            )
        )
    return buffer.getvalue()
