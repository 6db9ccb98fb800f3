"""One PNG per backtest: the load, the queue, and every policy's replicas against the oracle's,
with the requests that missed the SLO marked, so a reader sees at a glance where a policy spent
GPUs and where users waited. matplotlib is imported here only (the ``demo`` extra)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from tgi_autoscaler.backtest.run import RunResult

__all__ = ["plot_runs"]


def plot_runs(
    results: Sequence[RunResult], oracle: RunResult | None, slo_s: float, path: Path, title: str
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trace = results[0].trace if results else oracle.trace if oracle else None
    if trace is None:
        raise ValueError("nothing to plot")
    panels = len(results) + 1
    fig, axes = plt.subplots(panels, 1, figsize=(11, 1.9 * panels + 1), sharex=True)
    minutes = [m for m in range(len(trace.rate_per_minute()))]
    load = axes[0]
    load.step([m for m in minutes], trace.rate_per_minute(), where="post", color="black", lw=1)
    load.set_ylabel("req/s")
    load.set_title(title, fontsize=10)
    for ax, result in zip(axes[1:], results, strict=True):
        times = [t.time / 60 for t in result.ticks]
        ax.step(times, [t.replicas for t in result.ticks], where="post", label="replicas", color="tab:blue")
        ax.step(
            times, [t.ready for t in result.ticks], where="post", label="ready", color="tab:green", lw=0.8
        )
        if oracle is not None:
            ax.step(
                [t.time / 60 for t in oracle.ticks],
                [t.replicas for t in oracle.ticks],
                where="post",
                label="oracle",
                color="tab:gray",
                ls="--",
                lw=0.8,
            )
        log = result.log
        misses = [log.arrival[i] / 60 for i in range(len(log)) if not log.ttft(i) <= slo_s]
        if misses:
            top = max(t.replicas for t in result.ticks) if result.ticks else 1
            ax.plot(misses, [top + 0.5] * len(misses), "|", color="tab:red", ms=6, label="SLO miss")
        queue = ax.twinx()
        queue.fill_between(
            times, [t.queue for t in result.ticks], step="post", color="tab:orange", alpha=0.25
        )
        queue.set_ylabel("queue", fontsize=7)
        queue.tick_params(labelsize=7)
        ax.set_ylabel(result.policy.name, fontsize=8)
        ax.tick_params(labelsize=7)
    axes[1].legend(loc="upper left", fontsize=7, ncols=4)
    axes[-1].set_xlabel("minutes")
    for ax in axes:
        ax.set_xlim(0, math.ceil(trace.duration / 60))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
