"""Many simulated TGI pods' /metrics from one light process, for benchmarks that need series counts.

The simulator's ``Fleet`` runs a queueing model and an HTTP server per replica: right for tests of
behaviour, too heavy for 500+ pods on two shared cores. This exporter only renders exposition text.
Each service is one scrape target, ``/metrics/<namespace>/<service>``, exposing its pods' series
with the labels a ``kubernetes-pods`` scrape with ``labelmap`` produces (``namespace``, ``pod``,
``app_kubernetes_io_*``) and TGI's real metric names: the three gauges, the request counters and two
duration histograms with TGI's 35 buckets. Values move every second (queue depth follows a
per-pod pseudo-random walk, counters and histograms only grow), so Prometheus stores changing data.

Run as a child process::

    python bench/tgi_exporter.py --port 9400 --namespaces 10 --services 50 --pods 10 [--lean]

and point Prometheus at it with :func:`file_sd_groups` (one target per service, ``__metrics_path__``
selecting the service).
"""

from __future__ import annotations

import argparse
import hashlib
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

__all__ = ["Layout", "Service", "file_sd_groups", "layout", "queue_size", "render_service"]

# TGI: 0.0001 * 1.5^k for k = 1..35.
_BUCKETS = tuple(repr(0.0001 * 1.5**k) for k in range(1, 36))
_HISTOGRAMS = (
    ("tgi_request_duration", "Total time spent processing the request"),
    ("tgi_request_queue_duration", "Time spent in the queue per request"),
)
_GAUGES = (
    ("tgi_queue_size", "Current queue size"),
    ("tgi_batch_current_size", "Current batch size"),
    ("tgi_batch_current_max_tokens", "Maximum tokens for the current batch"),
)
_COUNTERS = (
    ("tgi_request_count", "Total number of requests"),
    ("tgi_request_success", "Number of successful requests"),
)
SERIES_PER_POD = len(_GAUGES) + len(_COUNTERS) + 1 + len(_HISTOGRAMS) * (len(_BUCKETS) + 3)
# --lean: gauges and counters only, so 10,000 one-pod services stay a Prometheus two cores can carry.
LEAN_SERIES_PER_POD = len(_GAUGES) + len(_COUNTERS) + 1


@dataclass(frozen=True)
class Service:
    namespace: str
    name: str
    pods: tuple[str, ...]

    @property
    def path(self) -> str:
        return f"/metrics/{self.namespace}/{self.name}"

    @property
    def selector(self) -> str:
        """The Prometheus-label selector both adapters accept for this service."""
        return f"app_kubernetes_io_instance={self.name}"


@dataclass(frozen=True)
class Layout:
    services: tuple[Service, ...]

    @property
    def pods(self) -> int:
        return sum(len(s.pods) for s in self.services)

    @property
    def namespaces(self) -> int:
        return len({s.namespace for s in self.services})


def layout(namespaces: int, services: int, pods: int) -> Layout:
    """``services`` services spread round-robin over ``namespaces`` namespaces, ``pods`` pods each."""
    out = []
    for index in range(services):
        name = f"llm-{index:03d}"
        replica_set = hashlib.sha256(name.encode()).hexdigest()[:10]
        suffixes = (hashlib.sha256(f"{name}/{p}".encode()).hexdigest()[:5] for p in range(pods))
        out.append(
            Service(
                namespace=f"team-{index % namespaces:02d}",
                name=name,
                pods=tuple(f"{name}-{replica_set}-{suffix}" for suffix in suffixes),
            )
        )
    return Layout(tuple(out))


def file_sd_groups(
    services: tuple[Service, ...], address: str, *, per_namespace: bool = False
) -> list[dict[str, Any]]:
    """One file_sd target per service (or per namespace: thousands of targets would cost the
    exporter more than the series); the series carry their own ``namespace``/``pod`` labels."""
    if per_namespace:
        namespaces = sorted({s.namespace for s in services})
        return [{"targets": [address], "labels": {"__metrics_path__": f"/metrics/{ns}"}} for ns in namespaces]
    return [{"targets": [address], "labels": {"__metrics_path__": s.path}} for s in services]


def _noise(pod: str, second: int) -> int:
    return hashlib.blake2s(f"{pod}/{second}".encode(), digest_size=2).digest()[0]


def queue_size(pod: str, second: int) -> int:
    """Queue depth of ``pod`` during ``second``: 0..15, moving by at most 3 per second."""
    base = _noise(pod, second // 10) % 12
    return base + _noise(pod, second) % 4


def _labels(service: Service, pod: str) -> str:
    return (
        f'app_kubernetes_io_component="server",app_kubernetes_io_instance="{service.name}",'
        f'app_kubernetes_io_managed_by="tgi-autoscaler",app_kubernetes_io_name="tgi",'
        f'namespace="{service.namespace}",pod="{pod}"'
    )


def _family(name: str, kind: str, help_text: str) -> str:
    return f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n"


# Observations spread over the middle buckets; cumulative counts only grow with the request count.
_SHARES = tuple(min(1.0, max(0.0, (index - 10) / 15)) for index in range(len(_BUCKETS)))


@dataclass(frozen=True)
class _Template:
    """Everything of a service's exposition that does not change between scrapes, pre-rendered."""

    pods: tuple[str, ...]
    gauge_prefixes: tuple[tuple[str, tuple[str, ...]], ...]  # (family header, per-pod "name{labels} ")
    counter_prefixes: tuple[tuple[str, tuple[str, ...]], ...]
    failure_prefixes: tuple[str, tuple[str, ...]]
    histogram_prefixes: tuple[tuple[str, tuple[tuple[str, ...], ...]], ...]  # per pod: bucket.., sum, count


def _template(service: Service, *, lean: bool = False) -> _Template:
    labels = [_labels(service, pod) for pod in service.pods]
    histograms = []
    for name, help_text in _HISTOGRAMS:
        per_pod = []
        for lab in labels:
            lines = [f'{name}_bucket{{{lab},le="{bound}"}} ' for bound in (*_BUCKETS, "+Inf")]
            lines += [f"{name}_sum{{{lab}}} ", f"{name}_count{{{lab}}} "]
            per_pod.append(tuple(lines))
        histograms.append((_family(name, "histogram", help_text), tuple(per_pod)))
    if lean:
        histograms = []
    return _Template(
        pods=service.pods,
        gauge_prefixes=tuple(
            (_family(name, "gauge", h), tuple(f"{name}{{{lab}}} " for lab in labels)) for name, h in _GAUGES
        ),
        counter_prefixes=tuple(
            (_family(name, "counter", h), tuple(f"{name}{{{lab}}} " for lab in labels))
            for name, h in _COUNTERS
        ),
        failure_prefixes=(
            _family("tgi_request_failure", "counter", "Number of failed requests per error type"),
            tuple(f'tgi_request_failure{{{lab},err="validation"}} ' for lab in labels),
        ),
        histogram_prefixes=tuple(histograms),
    )


def _render(template: _Template, now: float) -> str:
    second = int(now)
    queues = [queue_size(pod, second) for pod in template.pods]
    batches = [(q * 7 + 3) % 32 for q in queues]
    values = (queues, batches, [b * 512 for b in batches])
    out: list[str] = []
    for (header, prefixes), series in zip(template.gauge_prefixes, values, strict=True):
        out.append(header)
        out.extend(f"{p}{v}\n" for p, v in zip(prefixes, series, strict=True))
    requests = second * 3
    for header, prefixes in template.counter_prefixes:
        out.append(header)
        out.extend(f"{p}{requests}\n" for p in prefixes)
    header, prefixes = template.failure_prefixes
    out.append(header)
    out.extend(f"{p}{second // 60}\n" for p in prefixes)
    buckets = [*(int(requests * share) for share in _SHARES), requests]
    tail = [f"{requests * 0.8:.3f}", str(requests)]
    cells = [f"{v}\n" for v in (*buckets, *tail)]
    for header, per_pod in template.histogram_prefixes:
        out.append(header)
        for lines in per_pod:
            out.extend(p + c for p, c in zip(lines, cells, strict=True))
    return "".join(out)


def render_service(service: Service, now: float) -> str:
    """The exposition text of every pod of ``service`` at time ``now``."""
    return _render(_template(service), now)


def _app(services: tuple[Service, ...], *, lean: bool = False) -> web.Application:
    by_path = {s.path: _template(s, lean=lean) for s in services}
    by_namespace: dict[str, list[_Template]] = {}
    for s in services:
        by_namespace.setdefault(f"/metrics/{s.namespace}", []).append(by_path[s.path])

    async def metrics(request: web.Request) -> web.Response:
        template = by_path.get(request.path)
        if template is None:
            raise web.HTTPNotFound(text=f"no service at {request.path}\n")
        return web.Response(text=_render(template, time.time()), content_type="text/plain", charset="utf-8")

    async def namespace_metrics(request: web.Request) -> web.Response:
        templates = by_namespace.get(request.path)
        if templates is None:
            raise web.HTTPNotFound(text=f"no namespace at {request.path}\n")
        now = time.time()
        # Each metric family once, its samples together, as the exposition format wants.
        headers: dict[str, list[str]] = {}
        samples: dict[str, list[str]] = {}
        for template in templates:
            family = ""
            for line in _render(template, now).splitlines(keepends=True):
                if line.startswith("# HELP "):
                    family = line.split(" ", 3)[2]
                if line.startswith("#"):
                    if len(headers.setdefault(family, [])) < 2:
                        headers[family].append(line)
                else:
                    samples.setdefault(family, []).append(line)
        lines = [line for family in headers for line in (*headers[family], *samples.get(family, ()))]
        return web.Response(text="".join(lines), content_type="text/plain", charset="utf-8")

    app = web.Application()
    app.router.add_get("/metrics/{namespace}/{service}", metrics)
    app.router.add_get("/metrics/{namespace}", namespace_metrics)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--namespaces", type=int, default=10)
    parser.add_argument("--services", type=int, default=50)
    parser.add_argument("--pods", type=int, default=10)
    parser.add_argument("--lean", action="store_true", help="no histograms (gauges and counters only)")
    args = parser.parse_args()
    services = layout(args.namespaces, args.services, args.pods).services
    web.run_app(_app(services, lean=args.lean), host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
