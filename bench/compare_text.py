"""The prose of the prometheus-adapter comparison: set-up, tables, and findings computed from the data.

Every sentence that states a result is computed from the measurements of the same run (which server
was faster, used more CPU or memory, kept up with which rate, answered what during the outage), so
re-running the benchmark on another machine cannot leave stale claims behind. The fixed text only
explains what was measured and why the servers behave differently.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from compare_report import Measured, outage_table, ratio_table, runs_table
from outage_probe import OutageSummary

__all__ = ["Results", "Sanity", "render"]


@dataclass(frozen=True)
class Sanity:
    agreeing: int
    total: int
    disagreements: tuple[str, ...]
    special: tuple[tuple[str, str, str], ...]  # (case, server, what it answered)


@dataclass(frozen=True)
class Results:
    command: str
    machine: dict[str, str]
    elapsed_s: float
    namespaces: int
    services: int
    pods: int
    series_per_pod: int
    scrape_interval_s: float
    relist_s: float
    their_version: str
    their_rule: dict[str, str]
    hpa_sync_s: float
    hpas: tuple[int, ...]
    seconds: float
    ours: str
    ours_no_cache: str
    theirs: str
    measured: Sequence[Measured]
    sanity: Sanity
    outage_s: float
    down: Sequence[OutageSummary]
    freeze_s: float = 0.0
    frozen: Sequence[OutageSummary] = ()
    profile_s: float = 0.0
    profile_summary: str = ""
    profile_flat: str = ""
    servers: tuple[str, ...] = field(default=())
    distinct: bool = False  # one selector per HPA (--distinct)


def _cell(text: str) -> str:
    return text.replace("|", r"\|")


def _setup(r: Results) -> list[str]:
    m = r.machine
    return [
        f"Reproduce: `{r.command}` (this run took {r.elapsed_s / 60:.0f} minutes; `--quick` is shorter).",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory']} memory, Linux {m['kernel']}, Python "
        f"{m['python']}. Load average when the run started: {m['load']}. The machine is shared: the load "
        "generator, Prometheus, the control plane and the servers all run on these two CPUs, and so did "
        "other work (the last column of the load table is the machine's idle share during each run). "
        "Absolute figures are therefore noisy and pessimistic; compare rows of the same run.",
        "",
        "### Set-up",
        "",
        f"- Prometheus 2.42 (Debian) scraping {r.services * r.pods} simulated TGI pods ({r.services} "
        f"services x {r.pods} pods in {r.namespaces} namespaces, {r.series_per_pod} series per pod, "
        f"{r.services * r.pods * r.series_per_pod:,} series) every {r.scrape_interval_s:g} s. "
        "`bench/tgi_exporter.py` renders the pods' /metrics with TGI's metric names (gauges, counters and "
        "two 35-bucket duration histograms) and values that move every second.",
        f"- **{r.ours}**: `tgi-autoscaler adapter` with its defaults: built-in `tgi_queue_size` = "
        "`sum(tgi_queue_size{$matchers})`, 3 s Prometheus timeout, a 0.5 s result cache shared by "
        "identical queries, the grouped prefetch (exact-match selectors answered from one "
        "`sum by (app_kubernetes_io_instance, namespace)` query per 2 s refresh, with the data's age), "
        f"one JSON access-log line per request. **{r.ours_no_cache}**: the same with `--cache-ttl 0`"
        + (" and `--no-prefetch`" if r.distinct else "")
        + ", so one Prometheus query per read like prometheus-adapter (concurrent identical "
        "reads still share one query).",
        f"- **{r.theirs}** {r.their_version}, built from its Go module, "
        f"`--metrics-relist-interval={r.relist_s:g}s` (the Helm chart's default), one external rule: "
        f"`seriesQuery: '{r.their_rule['seriesQuery']}'`, `metricsQuery: '{r.their_rule['metricsQuery']}'`, "
        "`resources: {overrides: {namespace: {resource: namespace}}, namespaced: true}`. "
        "A read in namespace NS with selector "
        'S becomes `sum(tgi_queue_size{S,namespace="NS"})`: the same PromQL as ours.',
        "- Both serve HTTPS with a certificate from the cluster CA and delegate to the local kube-apiserver "
        "exactly as in a cluster: the front-proxy CA and header names come from "
        "`kube-system/extension-apiserver-authentication`, authorization is a SubjectAccessReview. Both are "
        "read the way the aggregator reads them: the front-proxy client certificate on kept-alive HTTP/1.1 "
        "connections, with `X-Remote-User: system:serviceaccount:kube-system:horizontal-pod-autoscaler` and "
        "its groups. That identity is not in `system:masters` (which both would allow without a review), so "
        "both check every read against a SubjectAccessReview cached for 10 s per identity and attributes "
        "(verb `list`, resource `tgi_queue_size`, namespace): at most one review per namespace per 10 s "
        "for each (column SARs). Per request, each also verifies the client certificate against the "
        "front-proxy CA and reads the identity headers.",
        *(
            [
                f"- One selector per HPA: at N HPAs the reads rotate over the first N of the {r.services:,} "
                "services' selectors, `app_kubernetes_io_instance=<service>` (one pod each), each read "
                f"once per {r.hpa_sync_s:g} s, so nothing repeats within ours' 0.5 s cache. "
                "prometheus-adapter passes selector keys to PromQL unchanged, so it needs the "
                "Prometheus label name.",
            ]
            if r.distinct
            else [
                f"- Reads rotate over {r.services} selectors, `app_kubernetes_io_instance=<service>`. "
                "prometheus-adapter passes selector keys to PromQL unchanged, so it needs the Prometheus "
                "label name; ours maps the Kubernetes key `app.kubernetes.io/instance` to it as well (see "
                f"the sanity check). The {r.services} selectors repeat: at {max(r.hpas) / r.hpa_sync_s:.0f} "
                f"reads/s each one is read every {1000 * r.services * r.hpa_sync_s / max(r.hpas):.0f} ms, "
                "so ours' 0.5 s cache answers most reads; `--distinct` gives every HPA its own selector.",
            ]
        ),
        "- Load from this Python process (aiohttp): "
        + ("" if r.distinct else "closed loop with 1, 8 and 32 readers (one connection each), then ")
        + "open loop at "
        f"{', '.join(f'{h / r.hpa_sync_s:.1f}' for h in r.hpas)} reads/s (the rates of "
        f"{', '.join(f'{h:,}' for h in r.hpas)} HPAs reading every {r.hpa_sync_s:g} s) over at most 32 "
        f"connections, {r.seconds:g} s each; servers take turns at each level.",
    ]


def _sanity(s: Sanity) -> list[str]:
    out = [
        "### Sanity: same answers",
        "",
        f"{s.agreeing} of {s.total} selectors: every server returned exactly the value Prometheus itself "
        "returns for the same PromQL (each comparison bracketed by two direct Prometheus queries that agree, "
        "so no scrape happened in between).",
    ]
    out += [f"- disagreement: {d}" for d in s.disagreements]
    out += ["", "| case | server | answer |", "|---|---|---|"]
    out += [f"| {case} | {server} | {_cell(answer)} |" for case, server, answer in s.special]
    return out


def _load(r: Results) -> list[str]:
    out = ["### Load", "", *runs_table(r.measured), ""]
    out += [
        "Columns: reads/s = 200 answers per second of run; latency percentiles over the 200 answers, "
        "measured by the client (open loop: from the moment the read was due, so waiting for a "
        "connection counts); "
        "errors = everything else: error statuses, transport errors and, in the open loop, reads not "
        "answered within 10 s of the end of the run (unfinished) or not started because 2,048 were already "
        "waiting (not sent); Prom queries / Prom series = deltas of Prometheus' "
        "own `prometheus_http_requests_total` for the query and the discovery handlers; SARs = "
        "SubjectAccessReviews kube-apiserver answered; CPU s = user+system CPU of the server process (all "
        "threads, /proc/PID/stat); peak RSS = VmHWM, reset before each run; Prometheus and generator CPU "
        "likewise.",
        "",
    ]
    for ours in (r.ours, r.ours_no_cache):
        if any(m.run.adapter == ours for m in r.measured):
            out += [
                f"Ratios {ours} / {r.theirs}: reads/s above 1 is better for ours, every other column "
                "below 1.",
                "",
                *ratio_table(r.measured, ours, r.theirs),
                "",
            ]
    out += [_generator(r.measured), ""]
    return out


def _generator(measured: Sequence[Measured]) -> str:
    closed = [m for m in measured if m.run.ok and m.run.mode == "concurrency"]
    if not closed:
        return ""
    cost = statistics.median(m.run.generator_cpu_s / m.run.ok for m in closed)
    return (
        f"Load generator: a median {cost * 1e6:,.0f} us of its own CPU per read in the closed-loop runs, "
        f"so with a CPU to itself it could drive about {1 / cost:,.0f} reads/s. It shares the two CPUs "
        "with the servers, which lowers every server's ceiling alike."
    )


def _outage(r: Results) -> list[str]:
    out = [
        "### Prometheus outage",
        "",
        f"Prometheus stopped (SIGTERM) for {r.outage_s:g} s, then started again on the same port and data "
        "directory, while every server was read four times a second (one read at a time, first selector). "
        "Answers counted while down are those to reads sent after the Prometheus process had exited and "
        "before it was started again; recovery is the time from Prometheus answering `/-/ready` to the "
        "first value.",
        "",
        *outage_table("Prometheus was down", r.down),
    ]
    if r.frozen:
        out += [
            "",
            f"Prometheus frozen (SIGSTOP) for {r.freeze_s:g} s, then resumed (SIGCONT): the kernel still "
            "accepts connections but nothing answers, as with a hung or overloaded Prometheus. Its own "
            "scrapes time out during the freeze, so right after it resumes Prometheus may have no fresh "
            "samples for a few seconds (staleness), which is why a 404 (ours) or an empty list "
            "(prometheus-adapter) can follow. A value counted while frozen is either an answer from ours' "
            "cache (at most 0.5 s old) or the answer to a read that waited through the whole freeze (see "
            "the slowest answer).",
            "",
            *outage_table("Prometheus was frozen", r.frozen),
        ]
    return out


def _profile(r: Results) -> list[str]:
    if not r.profile_summary:
        return []
    return [
        "### Where our adapter's time goes",
        "",
        f"pyinstrument (`bench/profiled_adapter.py`, 1 ms sampling, imports excluded) of `{r.ours}` serving "
        f"32 concurrent readers for {r.profile_s:g} s. Own time grouped by what the adapter was doing:",
        "",
        "```text",
        r.profile_summary.rstrip(),
        "```",
        "",
        "The 25 functions with the most own time:",
        "",
        "```text",
        r.profile_flat.rstrip(),
        "```",
    ]


def _shares(summary: str) -> dict[str, float]:
    """Category -> percent, from the profile summary's ``  17.2%   5.74  name`` lines."""
    shares: dict[str, float] = {}
    for line in summary.splitlines():
        match = re.match(r"\s*([0-9.]+)%\s+[0-9.]+\s+(.+)$", line)
        if match:
            shares[match.group(2).strip()] = float(match.group(1))
    return shares


def pointers(summary: str) -> list[str]:
    """What the profile suggests, from its shares (empty without a profile)."""
    shares = _shares(summary)
    if not shares:
        return []
    out = ["### What the profile points to", ""]
    top = sorted(shares.items(), key=lambda kv: -kv[1])[:3]
    out.append("- Largest shares: " + "; ".join(f"{name} {share:.0f}%" for name, share in top) + ".")
    authn = next((v for k, v in shares.items() if k.startswith("authentication")), 0.0)
    if authn >= 5:
        out.append(
            f"- The front-proxy certificate check ({authn:.0f}%) is the largest cost that is ours alone to "
            "remove: the aggregator presents the same client certificate on every request, so the verdict "
            "could be kept per certificate (its DER bytes) until the front-proxy CA changes or the "
            "certificate expires, instead of verifying the signature and parsing extensions on every read."
        )
    log = next((v for k, v in shares.items() if k.startswith("access log")), 0.0)
    if log >= 3:
        out.append(
            f"- The access log takes {log:.0f}%: one structured event per request stays, but it could be "
            "rendered more cheaply."
        )
    out.append(
        "- aiohttp and TLS handling is most of the rest; the manifests run two adapter replicas behind the "
        "Service, which spreads it over more CPUs."
    )
    return out


def _by(measured: Sequence[Measured], adapter: str) -> dict[tuple[str, float], Measured]:
    return {(m.run.mode, m.run.level): m for m in measured if m.run.adapter == adapter}


def _x(a: float, b: float) -> str:
    return "n/a" if not b or math.isnan(a) or math.isnan(b) else f"{a / b:.2f}x"


def _cpu_sentence(
    r: Results,
    ours_name: str,
    ours: dict[tuple[str, float], Measured],
    theirs: dict[tuple[str, float], Measured],
) -> str:
    closed = [k for k in ours if k in theirs and k[0] == "concurrency"]
    if not closed:
        return ""
    mine = [ours[k].cpu_ms_per_read for k in closed]
    other = [theirs[k].cpu_ms_per_read for k in closed]
    ratio = statistics.median(a / b for a, b in zip(mine, other, strict=True))
    verdict = "about the same CPU" if 0.95 <= ratio <= 1.05 else ("more CPU" if ratio > 1 else "less CPU")
    return (
        f"- **CPU per read, closed loop** ({ours_name}): {min(mine):.2f}-{max(mine):.2f} ms per successful "
        f"read against {min(other):.2f}-{max(other):.2f} ms for {r.theirs}; median ratio {ratio:.2f}, so "
        f"{ours_name} used {verdict} per read."
    )


def findings(r: Results) -> list[str]:
    """Result sentences computed from this run's data."""
    ours, theirs = _by(r.measured, r.ours), _by(r.measured, r.theirs)
    common = [key for key in ours if key in theirs]
    if not common:
        return []
    out = ["### What this run shows", ""]
    for name in (r.ours, r.ours_no_cache):
        if sentence := _cpu_sentence(r, name, _by(r.measured, name), theirs):
            out.append(sentence)
    closed = sorted(k for k in common if k[0] == "concurrency")
    if closed:
        parts = []
        for key in closed:
            mine, other = ours[key].run, theirs[key].run
            parts.append(
                f"c={key[1]:g}: {mine.throughput:.0f} vs {other.throughput:.0f} reads/s, "
                f"p50 {mine.percentile(0.5):.1f} vs {other.percentile(0.5):.1f} ms"
            )
        out.append(f"- **Closed loop** ({r.ours} vs {r.theirs}): " + "; ".join(parts) + ".")
    for key in sorted(k for k in common if k[0] == "rate"):
        a, b = ours[key], theirs[key]
        kept = [name for name, m in ((r.ours, a), (r.theirs, b)) if m.run.on_time(1000) >= 0.99]
        who = " and ".join(kept) if kept else "neither server"
        out.append(
            f"- **{key[1]:.1f} reads/s** ({round(key[1] * r.hpa_sync_s):,} HPAs): {who} answered 99% of "
            f"the reads within 1 s of when they were due. {r.ours} vs {r.theirs}: "
            f"p50 {a.run.percentile(0.5):.1f} vs {b.run.percentile(0.5):.1f} ms, "
            f"p99 {a.run.percentile(0.99):.1f} vs {b.run.percentile(0.99):.1f} ms, "
            f"{100 * a.adapter_cpu_s / a.run.seconds:.0f}% vs {100 * b.adapter_cpu_s / b.run.seconds:.0f}% "
            f"of a CPU, {a.prom_queries:,} vs {b.prom_queries:,} Prometheus queries."
        )
    ours_rss = [ours[k].peak_rss_mib for k in common]
    their_rss = [theirs[k].peak_rss_mib for k in common]
    out.append(
        f"- **Memory**: peak resident {min(ours_rss):.0f}-{max(ours_rss):.0f} MiB for {r.ours}, "
        f"{min(their_rss):.0f}-{max(their_rss):.0f} MiB for {r.theirs} "
        f"({_x(statistics.median(ours_rss), statistics.median(their_rss))})."
    )
    for title, summaries in (("stopped", r.down), ("frozen", r.frozen)):
        if not summaries:
            continue
        parts = []
        for s in summaries:
            recovered = "no value yet" if s.recovery_s is None else f"first value {s.recovery_s:.2f} s after"
            values = f"{s.values_during} value{'' if s.values_during == 1 else 's'}"
            parts.append(
                f"{s.name}: {values} while {title}, slowest answer {s.max_latency_s:.1f} s, {recovered}"
            )
        out.append(f"- **Prometheus {title}**: " + "; ".join(parts) + ".")
    return out


EXPLANATION = """### Why they differ

- **Prefetch**: with one selector per HPA the 0.5 s cache rarely hits, but the grouped prefetch
  answers every exact-match selector from one query per definition per refresh, so ours' Prometheus
  queries follow the number of definitions and a read costs no Prometheus round trip.
- **Raw cost of a read** (compare `ours, no cache` with prometheus-adapter: both query Prometheus
  once per read): compiled Go is ahead of our single Python event loop. The profile above shows
  where our time goes: aiohttp's HTTP and TLS handling (including the loopback `send` system
  calls), the per-request check of the front-proxy client certificate (chain signature, validity,
  key usage, common name), the JSON access-log line, and the Prometheus client. prometheus-adapter
  also verifies the client certificate chain on every request (k8s.io/apiserver's x509 request
  verifier), so that work is not an unfair extra, only a slower implementation of it. On a
  machine whose CPUs are busy, a single-threaded process also gets a smaller share of them than a
  Go process running on several threads, which shows in the latency columns.
- **With its default 0.5 s cache** ours answers repeated reads of the same selector without a
  Prometheus query and without the query's CPU; that is what makes it faster than
  prometheus-adapter at higher read rates here, and why it asks Prometheus fewer times than it is
  asked; with one selector per HPA it rarely hits, and the prefetch does that work.
  prometheus-adapter sends one query per read, plus a `/api/v1/series` discovery query every
  relist interval (a new metric is served only after the next relist); ours needs no discovery.
- **SubjectAccessReviews**: both cache a review for 10 s. prometheus-adapter's cache (k8s.io/apiserver's
  webhook authorizer) does not merge concurrent misses, so when an entry expires under concurrent
  reads several identical reviews go out at once (SARs column); ours sends one.
- **Memory**: our process carries the Python interpreter with aiohttp, kubernetes_asyncio, pydantic
  and structlog loaded; the Go binary is leaner (see the memory line above for this run's ratio).
- **Outages**: neither server turns a Prometheus outage into a number. Ours answers 503
  ServiceUnavailable naming Prometheus' problem; prometheus-adapter answers 500 "unable to fetch
  metrics". Either way the HPA keeps its current replica count. A hung Prometheus is where they
  differ most: ours gives up after its 3 s Prometheus timeout and says so; prometheus-adapter's
  read waits as long as Prometheus does.
- **No data**: a selector that matches no series is a 404 with a reason in ours (no series must not
  read as zero load) and a 200 with an empty list in prometheus-adapter; the HPA skips the metric in
  both cases, but only one answer says why.
- **Selectors**: prometheus-adapter copies selector keys into PromQL, so an HPA selecting on the
  pod label `app.kubernetes.io/instance` gets a PromQL parse error (500); ours maps Kubernetes label
  keys to Prometheus label names the way Prometheus' `labelmap` does."""


def render(r: Results) -> str:
    lines = [*_setup(r), "", *_sanity(r.sanity), "", *_load(r), *_outage(r)]
    if profile := _profile(r):
        lines += ["", *profile]
    if found := findings(r):
        lines += ["", *found]
    lines += ["", EXPLANATION]
    if pointed := pointers(r.profile_summary):
        lines += ["", *pointed]
    return "\n".join(lines) + "\n"
