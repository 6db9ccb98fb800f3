"""Backtest results as people read them: one row per policy, next to the oracle.

Every row says what the policy cost (GPU-hours, and that as a multiple of the oracle's) and what
users got (SLO attainment, tail TTFT and queue wait), plus how it moved (mean and peak replicas,
rescales, time pinned at maxReplicas). Terminal table, Markdown or CSV from the same rows.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence

from tgi_autoscaler.backtest.summary import Summary

__all__ = ["COLUMNS", "format_csv", "format_markdown", "format_table", "rows"]

COLUMNS = (
    "policy",
    "GPU-h",
    "x oracle",
    "SLO %",
    "p50 TTFT s",
    "p99 TTFT s",
    "p99 wait s",
    "mean repl",
    "peak repl",
    "rescales",
    "at max s",
)


def _seconds(value: float) -> str:
    if math.isinf(value):
        return "never"
    return f"{value:.2f}" if value < 100 else f"{value:.0f}"


def rows(summaries: Sequence[Summary], oracle: Summary | None) -> list[list[str]]:
    out = []
    for s in summaries:
        ratio = s.gpu_hours / oracle.gpu_hours if oracle and oracle.gpu_hours > 0 else math.nan
        out.append(
            [
                s.policy,
                f"{s.gpu_hours:.2f}",
                "-" if math.isnan(ratio) else f"{ratio:.2f}",
                f"{100 * s.slo_attainment:.2f}",
                _seconds(s.ttft_p50),
                _seconds(s.ttft_p99),
                _seconds(s.wait_p99),
                f"{s.mean_replicas:.2f}",
                str(s.peak_replicas),
                str(s.rescales),
                f"{s.seconds_at_max:.0f}",
            ]
        )
    return out


def format_table(summaries: Sequence[Summary], oracle: Summary | None) -> str:
    body = rows(summaries, oracle)
    widths = [max(len(c), *(len(r[i]) for r in body)) for i, c in enumerate(COLUMNS)]
    lines = [
        "  ".join(
            c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(COLUMNS, widths, strict=True))
        )
    ]
    for r in body:
        lines.append(
            "  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(r, widths, strict=True)))
        )
    return "\n".join(lines) + "\n"


def format_markdown(summaries: Sequence[Summary], oracle: Summary | None) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows(summaries, oracle)]
    return "\n".join(lines) + "\n"


def format_csv(summaries: Sequence[Summary], oracle: Summary | None) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(rows(summaries, oracle))
    return buffer.getvalue()
