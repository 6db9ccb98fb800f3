"""``python -m tgi_autoscaler_dev demo``: the whole loop on one machine, live in the terminal, then a plot.

What runs, all real except the GPUs: etcd, kube-apiserver, kube-controller-manager (its HPA
controller does the scaling) and kube-scheduler, Prometheus scraping simulated TGI pods, the adapter
registered as ``v1beta1.external.metrics.k8s.io`` behind the aggregation layer, and the controller
turning the demo service's ConfigMap into a Deployment and HPA. kwok plays the kubelet of fake GPU
nodes: the scheduler binds the Deployment's pods to them, kwok runs each and makes it Ready after a
start-up delay (a GPU pod loading its model), and the simulator follows those pods (one replica per
Running pod, serving once Ready). A load spike fills the queue; the HPA reads it through the adapter
and scales up; when the spike ends the queue drains and the HPA scales down one pod at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tgi_autoscaler.engines import ENGINES, EngineKind
from tgi_autoscaler.log import configure_logging
from tgi_autoscaler.signals import DemandSignal
from tgi_autoscaler_dev.localstack.aggregation import apiservice_available, apiservice_objects, local_adapter
from tgi_autoscaler_dev.localstack.controlplane import ControlPlane, ControlPlaneSettings
from tgi_autoscaler_dev.localstack.kwok import GpuNodePool, Kwok, KwokSettings, create_gpu_nodes
from tgi_autoscaler_dev.localstack.process import ManagedProcess, running, wait_for
from tgi_autoscaler_dev.localstack.prometheus import PrometheusServer
from tgi_autoscaler_dev.sim.fleet import Fleet
from tgi_autoscaler_dev.sim.follow import following_pods
from tgi_autoscaler_dev.sim.loadgen import LoadSpec, run_load
from tgi_autoscaler_dev.sim.model import ReplicaConfig
from tgi_autoscaler_dev.sim.traces import Spike

NAMESPACE = "llm-inference"
SERVICE = "llama2-tgi"

# A small simulated replica (8 sequences at 20 tokens/s each, 40 tokens per request: about 3.4
# requests/s at a full batch) so a laptop-sized spike needs several replicas. The service spec
# states the same replica as its capacity, so the HPA's target (requests/s per replica at the TTFT
# SLO) is derived from what the simulated pods really do.
DEMO_REPLICA = ReplicaConfig(max_batch_size=8, token_rate=20.0)
DEMO_NEW_TOKENS = 40
# The demo compresses time (pods Ready in seconds, the HPA syncing every 3 s), so the demand
# signal's windows are compressed too: the adapter serves it with these time constants.
DEMO_DEMAND = DemandSignal(rate_window_s=15, drain_s=20)

DEMO_SERVICE_YAML = f"""\
model:
  id: meta-llama/Llama-2-7b-chat-hf
autoscaling:
  minReplicas: 1
  maxReplicas: 6
  signal: demand
  slo: {{timeToFirstTokenSeconds: 2, attainment: 0.99}}
  capacity:
    maxBatchSize: {DEMO_REPLICA.max_batch_size}
    decodeSecondsPerToken: {1 / DEMO_REPLICA.token_rate}
    batchSlowdown: {DEMO_REPLICA.batch_slowdown}
    prefillSecondsPerToken: {DEMO_REPLICA.prefill_s_per_token}
    prefillOverheadSeconds: {DEMO_REPLICA.prefill_time_s}
    promptTokens: 16
    outputTokens: {DEMO_NEW_TOKENS}
  scaleUp:
    policies:
      - {{type: Pods, value: 4, periodSeconds: 10}}
  scaleDown:
    stabilizationWindowSeconds: 20
    policies:
      - {{type: Pods, value: 1, periodSeconds: 10}}
"""


def demo_metrics_yaml() -> str:
    """The adapter's metric definitions for the demo: the default TGI demand query, time-compressed."""
    counters = ENGINES[EngineKind.TGI].counters
    definition = {
        "name": ENGINES[EngineKind.TGI].demand_metric,
        "query": DEMO_DEMAND.promql(counters),
        "description": "Requests/s to serve (demo time constants: rate over 15 s, queue drained over 20 s).",
    }
    return yaml.safe_dump({"metrics": [definition]}, sort_keys=False)


@dataclass
class Sample:
    t: float
    offered_rps: float
    queue: float | None  # None: Prometheus had no answer (shown as a gap, never as a fake zero)
    demand: float | None  # requests/s the HPA reads (the demand signal)
    desired: int
    current: int
    ready: int


@dataclass
class DemoState:
    samples: list[Sample] = field(default_factory=list)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("demo", help="run the whole autoscaling loop locally and plot it")
    parser.add_argument("--workdir", type=Path, default=None, help="where logs and the plot go")
    parser.add_argument("--spike-rps", type=float, default=8.0, help="peak request rate of the spike")
    parser.add_argument("--base-rps", type=float, default=1.0, help="request rate before and after")
    parser.add_argument("--spike-seconds", type=float, default=60.0)
    parser.add_argument("--pod-start-delay", type=float, default=5.0, help="seconds until a new pod is ready")
    parser.add_argument("--gpu-nodes", type=int, default=2, help="fake GPU nodes (kwok)")
    parser.add_argument("--gpus-per-node", type=int, default=4, help="nvidia.com/gpu of each node")
    parser.add_argument("--max-seconds", type=float, default=300.0, help="stop after this long in any case")
    parser.add_argument("--plot", type=Path, default=None, help="PNG path (default: <workdir>/demo.png)")
    parser.add_argument("--verbose", action="store_true", help="show the simulator's and load's log events")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not args.verbose:
        # The live table is the output; the in-process simulator's per-replica events would bury it.
        configure_logging(args.log_format, "WARNING")
    workdir: Path = args.workdir or Path(tempfile.mkdtemp(prefix="tgi-autoscaler-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    return asyncio.run(_demo(args, workdir))


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "tgi_autoscaler", "--log-format", "json", *args]


async def _demo(args: argparse.Namespace, workdir: Path) -> int:
    say = _Printer()
    say.step(f"work directory {workdir} (component logs are kept there)")
    cp = ControlPlane(
        workdir / "control-plane",
        settings=ControlPlaneSettings(hpa_sync_period_s=3, hpa_downscale_stabilization_s=20),
    )
    prom = PrometheusServer(workdir / "prometheus")
    pool = GpuNodePool(name="gpu", count=args.gpu_nodes, gpus_per_node=args.gpus_per_node)
    kwok = Kwok(cp, workdir / "kwok", settings=KwokSettings(ready_delay_s=args.pod_start_delay))
    started = time.monotonic()
    say.step(
        "starting etcd, kube-apiserver, kube-controller-manager, kube-scheduler "
        "(building them first if needed)"
    )
    await cp.start()
    say.step(f"control plane up in {time.monotonic() - started:.1f}s; KUBECONFIG={cp.kubeconfig}")
    try:
        await kwok.start()
        await create_gpu_nodes(cp, pool)
        say.step(
            f"kwok: {pool.count} GPU nodes x {pool.gpus_per_node} {pool.product}, "
            f"pods Ready {args.pod_start_delay:g}s after they start"
        )
        await prom.start()
        say.step(f"Prometheus {prom.url}, scraping every second")
        return await _with_stack(args, workdir, cp, prom, say)
    finally:
        await prom.stop()
        await kwok.stop()
        await cp.stop()


async def _with_stack(
    args: argparse.Namespace, workdir: Path, cp: ControlPlane, prom: PrometheusServer, say: _Printer
) -> int:
    metrics_file = workdir / "metrics.yaml"
    metrics_file.write_text(demo_metrics_yaml(), encoding="utf-8")
    api, adapter = local_adapter(cp, prometheus_url=prom.url, workdir=workdir, metrics_file=metrics_file)
    env = {"PYTHONUNBUFFERED": "1"}
    controller = ManagedProcess(
        name="controller",
        argv=_cli("controller", f"--kubeconfig={cp.kubeconfig}", "--no-leader-elect"),
        log_path=workdir / "controller.log",
        env=env,
    )
    async with running(adapter), running(controller):
        for obj in apiservice_objects(api):
            await cp.apply(obj)
        say.step("adapter registered as v1beta1.external.metrics.k8s.io; waiting for Available")
        await wait_for(
            lambda: apiservice_available(cp, api.apiservice_name), timeout=60, what="APIService Available"
        )
        await cp.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        await cp.apply(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": SERVICE,
                    "namespace": NAMESPACE,
                    "labels": {"tgi-autoscaler.io/service": "true"},
                },
                "data": {"service.yaml": DEMO_SERVICE_YAML},
            },
        )
        say.step(f"applied ConfigMap {NAMESPACE}/{SERVICE}; the controller renders Deployment, HPA, ...")
        await wait_for(lambda: _exists(cp, _hpa_path()), timeout=60, what="the controller to create the HPA")
        say.step("HPA created; simulated TGI servers follow the Deployment's pods")
        return await _loop(args, workdir, cp, prom, say)


async def _loop(
    args: argparse.Namespace, workdir: Path, cp: ControlPlane, prom: PrometheusServer, say: _Printer
) -> int:
    state = DemoState()
    trace = Spike(base=args.base_rps, peak_rate=args.spike_rps, start=20.0, duration=args.spike_seconds)
    load_seconds = 20.0 + args.spike_seconds + 20.0
    async with (
        Fleet(
            SERVICE, namespace=NAMESPACE, replicas=0, config=DEMO_REPLICA, file_sd_dir=prom.file_sd_dir
        ) as fleet,
        following_pods(
            fleet, kubeconfig=cp.kubeconfig, label_selector=f"app.kubernetes.io/instance={SERVICE}"
        ),
    ):

        async def first_pod_serves() -> bool:
            return fleet.serving >= 1

        await wait_for(first_pod_serves, timeout=120, what="the first pod to be Ready")
        load = asyncio.create_task(
            run_load(
                fleet.url,
                LoadSpec(
                    trace=trace,
                    duration_s=load_seconds,
                    max_requests=20_000,
                    max_new_tokens=DEMO_NEW_TOKENS,
                ),
            ),
            name="load",
        )
        t0 = time.monotonic()
        shown_api = False
        say.header()
        try:
            while True:
                t = time.monotonic() - t0
                sample = await _sample(cp, prom, fleet, t, trace.rate_at(t) if t < load_seconds else 0.0)
                state.samples.append(sample)
                say.sample(sample)
                if not shown_api and sample.desired > 1:
                    shown_api = True
                    await _show_what_the_hpa_reads(cp, say)
                if t > args.max_seconds:
                    say.step("time limit reached")
                    break
                if load.done() and t > load_seconds + 20 and sample.desired <= 1 and sample.current <= 1:
                    say.step("load over and scaled back down to minReplicas")
                    break
                await asyncio.sleep(2.0)
        finally:
            if not load.done():
                load.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                report = await load
                say.step(f"load: {report.summary()}")
    plot = args.plot or workdir / "demo.png"
    _plot(state, plot)
    say.step(f"plot saved to {plot}")
    peak = max((s.desired for s in state.samples), default=0)
    return 0 if peak > 1 else 1


async def _show_what_the_hpa_reads(cp: ControlPlane, say: _Printer) -> None:
    """Print, once, the external metric exactly as the HPA controller reads it through the API server."""
    path = (
        f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{NAMESPACE}/tgi_request_demand"
        f"?labelSelector=app.kubernetes.io%2Finstance%3D{SERVICE}"
    )
    result = await cp.kubectl("get", "--raw", path)
    say.step(f"kubectl get --raw '{path}'")
    print(result.stdout.strip() or result.stderr.strip(), flush=True)
    hpa = await cp.kubectl("get", "hpa", "-n", NAMESPACE)
    print(hpa.stdout.strip() or hpa.stderr.strip(), flush=True)


def _hpa_path() -> str:
    return f"/apis/autoscaling/v2/namespaces/{NAMESPACE}/horizontalpodautoscalers/{SERVICE}"


async def _sample(cp: ControlPlane, prom: PrometheusServer, fleet: Fleet, t: float, rps: float) -> Sample:
    _, hpa = await cp.request("GET", _hpa_path())
    status = hpa.get("status", {}) if isinstance(hpa, dict) else {}
    queue = await _scalar(prom, f'sum(tgi_queue_size{{namespace="{NAMESPACE}"}})')
    matchers = f'namespace="{NAMESPACE}",app_kubernetes_io_instance="{SERVICE}"'
    demand = await _scalar(
        prom, DEMO_DEMAND.promql(ENGINES[EngineKind.TGI].counters).replace("$matchers", matchers)
    )
    return Sample(
        t=t,
        offered_rps=rps,
        queue=queue,
        demand=demand,
        desired=int(status.get("desiredReplicas") or 0),
        current=int(status.get("currentReplicas") or 0),
        ready=fleet.serving,
    )


async def _scalar(prom: PrometheusServer, query: str) -> float | None:
    with contextlib.suppress(Exception):
        result = await prom.query(query)
        if result:
            return float(result[0]["value"][1])
    return None


async def _exists(cp: ControlPlane, path: str) -> bool:
    status, _ = await cp.request("GET", path)
    return status == 200


class _Printer:
    def __init__(self) -> None:
        self.color = sys.stdout.isatty() and not os.environ.get("NO_COLOR")

    def step(self, text: str) -> None:
        prefix = "\033[1;34m==>\033[0m" if self.color else "==>"
        print(f"{prefix} {text}", flush=True)

    def header(self) -> None:
        print(
            f"{'t(s)':>6} {'load rps':>9} {'demand':>7} {'queue':>7} {'desired':>8} {'current':>8} "
            f"{'ready pods':>11}  "
        )

    def sample(self, s: Sample) -> None:
        bar = "#" * min(int(s.queue or 0), 60)
        queue = "?" if s.queue is None else f"{s.queue:.0f}"
        demand = "?" if s.demand is None else f"{s.demand:.1f}"
        print(
            f"{s.t:6.0f} {s.offered_rps:9.1f} {demand:>7} {queue:>7} {s.desired:8d} {s.current:8d} "
            f"{s.ready:11d}  {bar}",
            flush=True,
        )


def _plot(state: DemoState, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s.t for s in state.samples]
    fig, (ax_load, ax_rep) = plt.subplots(2, 1, sharex=True, figsize=(10, 6))
    ax_load.plot(
        t,
        [math.nan if s.queue is None else s.queue for s in state.samples],
        label="queue (tgi_queue_size, sum)",
        color="tab:red",
    )
    ax_load.plot(t, [s.offered_rps for s in state.samples], label="offered load (req/s)", color="tab:gray")
    ax_load.plot(
        t,
        [math.nan if s.demand is None else s.demand for s in state.samples],
        label="demand the HPA reads (req/s)",
        color="tab:blue",
    )
    ax_load.set_ylabel("requests")
    ax_load.legend(loc="upper right")
    ax_rep.step(t, [s.desired for s in state.samples], where="post", label="HPA desired")
    ax_rep.step(t, [s.current for s in state.samples], where="post", label="HPA current")
    ax_rep.step(t, [s.ready for s in state.samples], where="post", label="ready pods", linestyle="--")
    ax_rep.set_ylabel("replicas")
    ax_rep.set_xlabel("seconds")
    ax_rep.legend(loc="upper right")
    fig.suptitle("tgi-autoscaler demo: the demand signal drives the HorizontalPodAutoscaler")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
