"""``tgi-autoscaler adapter`` under pyinstrument, profiling the serving only, with a summary by cost.

``pyinstrument -m tgi_autoscaler`` would also profile the imports (kubernetes_asyncio's models
alone take seconds), which says nothing about serving. This wrapper imports everything first, then
profiles from the adapter's start until it exits (SIGTERM), and writes three files next to PREFIX:

- ``PREFIX.flat.txt``: functions by their own time;
- ``PREFIX.tree.txt``: the call tree;
- ``PREFIX.summary.txt``: own time grouped by what the adapter was doing (see ``CATEGORIES``).

Usage (the flags after ``--`` are the adapter's)::

    python bench/profiled_adapter.py PREFIX -- --secure-port=... --prometheus-url=...
"""

from __future__ import annotations

import sys
from pathlib import Path

from pyinstrument import Profiler
from pyinstrument.frame import Frame
from pyinstrument.renderers import ConsoleRenderer

import tgi_autoscaler.adapter.server  # noqa: F401 - imported before profiling starts
from tgi_autoscaler.cli import build_parser
from tgi_autoscaler.cli import main as cli_main

__all__ = ["CATEGORIES", "categorize", "summarize"]

# Innermost matching frame wins: (category, path or function fragments). The shared single-flight
# cache (adapter/cache.py) has no category of its own: its time goes to its caller (reads, reviews).
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("idle (waiting in epoll)", ("epoll.poll", "select.select")),
    ("access log (structlog JSON)", ("structlog/", "tgi_autoscaler/log.py")),
    (
        "authentication (front-proxy certificate check, identity headers)",
        ("tgi_autoscaler/adapter/authn.py", "tgi_autoscaler/adapter/requestheader.py"),
    ),
    (
        "authorization (SubjectAccessReview, its cache, the Kubernetes client)",
        ("tgi_autoscaler/adapter/authz.py", "tgi_autoscaler/kube/", "kubernetes_asyncio/"),
    ),
    ("Prometheus client (request, JSON decoding)", ("tgi_autoscaler/adapter/prometheus.py",)),
    (
        "metric read (selector, PromQL, cache, response body)",
        ("tgi_autoscaler/adapter/handlers.py", "tgi_autoscaler/promql/"),
    ),
    (
        "middleware, Status bodies, own metrics",
        (
            "tgi_autoscaler/adapter/app.py",
            "tgi_autoscaler/adapter/security.py",
            "tgi_autoscaler/adapter/status.py",
            "tgi_autoscaler/adapter/own_metrics.py",
            "prometheus_client/",
        ),
    ),
    ("outgoing HTTP (aiohttp client)", ("aiohttp/client", "aiohttp/connector")),
    (
        "HTTPS server (aiohttp server, TLS records)",
        ("aiohttp/web", "aiohttp/http", "asyncio/sslproto", "ssl.py"),
    ),
)
OTHER = "event loop and other"


def categorize(chain: list[Frame]) -> str:
    """The category of the innermost frame of ``chain`` (innermost first) that matches one."""
    for frame in chain:
        where = f"{frame.file_path or ''} {frame.function}"
        for category, fragments in CATEGORIES:
            if any(fragment in where for fragment in fragments):
                return category
    return OTHER


def summarize(root: Frame) -> dict[str, float]:
    """Own time per category over the whole tree."""
    totals: dict[str, float] = {}
    stack: list[tuple[Frame, list[Frame]]] = [(root, [root])]
    while stack:
        frame, chain = stack.pop()
        own = frame.total_self_time
        if own > 0:
            category = categorize(chain)
            totals[category] = totals.get(category, 0.0) + own
        for child in frame.children:
            stack.append((child, [child, *chain]))
    return totals


def _summary_text(totals: dict[str, float], cpu_time: float) -> str:
    total = sum(totals.values()) or 1.0
    lines = [f"{'share':>6}  {'seconds':>8}  what", f"{'':>6}  {'':>8}  (process CPU time {cpu_time:.2f} s)"]
    lines += [
        f"{100 * t / total:5.1f}%  {t:8.2f}  {name}"
        for name, t in sorted(totals.items(), key=lambda kv: -kv[1])
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    if len(sys.argv) < 3 or sys.argv[2] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    prefix = Path(sys.argv[1])
    argv = ["--log-format", "json", "adapter", *sys.argv[3:]]
    build_parser(argv)  # imports the subcommand's modules, as every start of the CLI does
    profiler = Profiler(interval=0.001)
    profiler.start()
    try:
        code = cli_main(argv)
    finally:
        session = profiler.stop()
        prefix.with_suffix(".flat.txt").write_text(
            profiler.output(ConsoleRenderer(flat=True, time="percent_of_total"))
        )
        prefix.with_suffix(".tree.txt").write_text(profiler.output(ConsoleRenderer(time="percent_of_total")))
        root = session.root_frame(trim_stem=False)
        totals = summarize(root) if root is not None else {}
        prefix.with_suffix(".summary.txt").write_text(_summary_text(totals, session.cpu_time))
    return code


if __name__ == "__main__":
    sys.exit(main())
