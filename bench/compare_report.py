"""Tables of the prometheus-adapter comparison, and their section in ``docs/benchmarks.md``.

Everything is rendered as Markdown: it reads well in a terminal and is pasted unchanged into the
docs. The docs file is shared with other benchmarks, so only the section under
``## Comparison with prometheus-adapter`` is replaced (up to the next ``## `` heading); the rest of
the file is left as it is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from metrics_load import RunResult
from outage_probe import OutageSummary

__all__ = ["SECTION_HEADING", "Measured", "outage_table", "ratio_table", "runs_table", "write_section"]

SECTION_HEADING = "## Comparison with prometheus-adapter"


@dataclass(frozen=True)
class Measured:
    """One load run and what it cost, measured outside the load generator."""

    run: RunResult
    adapter_cpu_s: float
    peak_rss_mib: float
    prom_queries: int  # /api/v1/query and /api/v1/query_range requests Prometheus served
    prom_series: int  # /api/v1/series and /api/v1/labels requests (discovery)
    sars: int  # SubjectAccessReviews kube-apiserver answered
    prom_cpu_s: float
    machine_idle_pct: float  # share of the machine's CPU time nobody used during the run

    @property
    def cpu_ms_per_read(self) -> float:
        return 1000 * self.adapter_cpu_s / self.run.ok if self.run.ok else math.nan

    @property
    def load(self) -> str:
        if self.run.mode == "concurrency":
            return f"c={self.run.level:g}"
        return f"{self.run.level:.1f}/s ({round(self.run.level * 15):,} HPAs)"


def _f(value: float, digits: int = 1) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.{digits}f}"


def _errors(run: RunResult) -> str:
    kinds = [(kind, n) for kind, n in run.statuses.most_common() if kind != "200"]
    if run.dropped:
        kinds.append(("not sent", run.dropped))
    if not kinds:
        return "0"
    return f"{run.errors:,} ({', '.join(f'{kind}: {n:,}' for kind, n in kinds)})"


def runs_table(measured: Sequence[Measured]) -> list[str]:
    lines = [
        "| adapter | load | reads/s | p50 ms | p95 ms | p99 ms | errors | Prom queries | Prom series "
        "| SARs | CPU s | CPU ms/read | peak RSS MiB | Prometheus CPU s | generator CPU s | machine idle |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for m in measured:
        r = m.run
        lines.append(
            f"| {r.adapter} | {m.load} | {_f(r.throughput)} | {_f(r.percentile(0.5), 2)} "
            f"| {_f(r.percentile(0.95), 2)} | {_f(r.percentile(0.99), 2)} | {_errors(r)} "
            f"| {m.prom_queries:,} | {m.prom_series:,} | {m.sars:,} | {_f(m.adapter_cpu_s, 2)} "
            f"| {_f(m.cpu_ms_per_read, 3)} | {_f(m.peak_rss_mib)} | {_f(m.prom_cpu_s, 2)} "
            f"| {_f(r.generator_cpu_s, 2)} | {m.machine_idle_pct:.0f}% |"
        )
    return lines


def _ratio(a: float, b: float) -> str:
    if b == 0 or math.isnan(a) or math.isnan(b):
        return "n/a"
    return f"{a / b:.2f}"


def ratio_table(measured: Sequence[Measured], ours: str, theirs: str) -> list[str]:
    """ours/theirs per load level: below 1 is better for ours, except reads/s (above 1)."""
    by_key = {(m.run.adapter, m.run.mode, m.run.level): m for m in measured}
    lines = [
        "| load | reads/s | p50 | p95 | p99 | Prom queries | CPU ms/read | peak RSS |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for m in measured:
        if m.run.adapter != ours:
            continue
        other = by_key.get((theirs, m.run.mode, m.run.level))
        if other is None:
            continue
        a, b = m.run, other.run
        lines.append(
            f"| {m.load} | {_ratio(a.throughput, b.throughput)} "
            f"| {_ratio(a.percentile(0.5), b.percentile(0.5))} "
            f"| {_ratio(a.percentile(0.95), b.percentile(0.95))} "
            f"| {_ratio(a.percentile(0.99), b.percentile(0.99))} "
            f"| {_ratio(m.prom_queries, other.prom_queries)} "
            f"| {_ratio(m.cpu_ms_per_read, other.cpu_ms_per_read)} "
            f"| {_ratio(m.peak_rss_mib, other.peak_rss_mib)} |"
        )
    return lines


def outage_table(title: str, summaries: Sequence[OutageSummary]) -> list[str]:
    lines = [
        f"| adapter | answers while {title} | values served while {title} | slowest answer s "
        "| first value after Prometheus is back (s) | what it said |",
        "|---|---|--:|--:|--:|---|",
    ]
    for s in summaries:
        recovery = "never (within the wait)" if s.recovery_s is None else f"{s.recovery_s:.2f}"
        said = "<br>".join(m.replace("|", "\\|") for m in s.messages) or "-"
        lines.append(
            f"| {s.name} | {s.kinds() or '-'} | {s.values_during} | {s.max_latency_s:.2f} "
            f"| {recovery} | {said} |"
        )
    return lines


def write_section(path: Path, body: str, heading: str = SECTION_HEADING) -> None:
    """Replace (or append) this benchmark's section of ``path``, leaving other sections alone."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    section = f"{heading}\n\n{body.strip()}\n"
    start = text.find(f"\n{heading}\n")
    if start == -1:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + 1)
        rest = "" if end == -1 else "\n" + text[end + 1 :]
        text = text[: start + 1] + section + rest
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
