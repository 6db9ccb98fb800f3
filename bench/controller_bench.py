"""Controller benchmark: cold start with many services, edit-to-HPA latency, idle CPU, failover.

Runs against the local control plane (started here, on loopback) with prometheus-operator's real
CRDs, and the controller as a separate process (so its CPU time can be read from /proc):

1. cold start: N service ConfigMaps exist before the controller starts; time until every one has
   status Ready (i.e. every object of every service was applied and the status written);
2. edit latency: M sequential edits of ``autoscaling.queue.targetPerReplica``, each timed from the
   PATCH of the ConfigMap to the watch event showing the HPA with the new target (p50/p99);
3. idle CPU: the controller's CPU use while nothing changes;
4. failover (``--failover``): two leader-elected controllers, the leader SIGKILLed; time until the
   standby holds the lease, with the default lease timings.

    .venv/bin/python bench/controller_bench.py --services 200 --edits 50 --idle-seconds 30 --failover
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tgi_autoscaler.kube.client import ApiKubeClient, KubeObject
from tgi_autoscaler.kube.connect import load_api_client
from tgi_autoscaler.kube.resources import CONFIGMAP, HPA, LEASE
from tgi_autoscaler_dev.localstack.controlplane import ControlPlane
from tgi_autoscaler_dev.localstack.crds import crd_names, ensure_prometheus_operator_crds
from tgi_autoscaler_dev.localstack.process import free_port

SPEC = """\
model:
  id: meta-llama/Llama-2-7b-chat-hf
autoscaling:
  minReplicas: 1
  maxReplicas: 8
  queue:
    targetPerReplica: {target}
"""
NAMESPACE = "bench"
LOG_LEVEL = "WARNING"


@dataclass(frozen=True)
class Row:
    measure: str
    value: str


def _configmap(i: int, target: int = 10) -> KubeObject:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": f"svc-{i:03d}",
            "namespace": NAMESPACE,
            "labels": {"tgi-autoscaler.io/service": "true"},
        },
        "data": {"service.yaml": SPEC.format(target=target)},
    }


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime + stime
    return ticks / os.sysconf("SC_CLK_TCK")


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def _is(probe: Callable[[], Awaitable[str]], expected: str) -> bool:
    return await probe() == expected


async def _until(condition: Callable[[], Awaitable[bool]], interval: float) -> None:
    """Poll ``condition``; the caller bounds the wait (asyncio.timeout)."""
    while True:
        if await condition():
            return
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def _controller(
    kubeconfig: Path, log: Path, *extra: str, leader_elect: bool = False
) -> AsyncIterator[asyncio.subprocess.Process]:
    with log.open("ab") as sink:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tgi_autoscaler",
            "--log-format=json",
            f"--log-level={LOG_LEVEL}",
            "controller",
            f"--kubeconfig={kubeconfig}",
            f"--namespace={NAMESPACE}",
            f"--metrics-bind=127.0.0.1:{free_port()}",
            "--leader-elect" if leader_elect else "--no-leader-elect",
            f"--lease-namespace={NAMESPACE}",
            *extra,
            stdout=sink,
            stderr=sink,
        )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def _ready_count(client: ApiKubeClient) -> int:
    listed = await client.list(
        CONFIGMAP, namespace=NAMESPACE, label_selector="tgi-autoscaler.io/service=true"
    )
    return sum(
        1
        for cm in listed.items
        if '"phase": "Ready"'
        in ((cm["metadata"].get("annotations") or {}).get("tgi-autoscaler.io/status") or "")
    )


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


async def _edit_latency(client: ApiKubeClient, services: int, edits: int) -> list[float]:
    latencies: list[float] = []
    for n in range(edits):
        name = f"svc-{n % services:03d}"
        target = 11 + n
        listed = await client.list(HPA, namespace=NAMESPACE)
        stream = client.watch(
            HPA, namespace=NAMESPACE, resource_version=listed.resource_version, timeout_s=60
        )
        started = time.monotonic()
        await client.merge_patch(
            CONFIGMAP,
            NAMESPACE,
            name,
            {"data": {"service.yaml": SPEC.format(target=target)}},
            field_manager="bench",
        )
        async with asyncio.timeout(60):
            async for event in stream:
                obj = event["object"]
                if obj.get("metadata", {}).get("name") != name:
                    continue
                metrics = obj.get("spec", {}).get("metrics", [])
                if any(
                    m.get("external", {}).get("target", {}).get("averageValue") == str(target)
                    for m in metrics
                ):
                    latencies.append(time.monotonic() - started)
                    break
        await stream.aclose()
    return latencies


async def _failover(kubeconfig: Path, client: ApiKubeClient, workdir: Path) -> float:
    await client.delete(LEASE, NAMESPACE, "tgi-autoscaler-controller")

    async def holder() -> str:
        lease = await client.get(LEASE, NAMESPACE, "tgi-autoscaler-controller")
        return "" if lease is None else str(lease["spec"].get("holderIdentity") or "")

    async with _controller(
        kubeconfig, workdir / "leader.log", "--identity=leader", leader_elect=True
    ) as leader:
        async with asyncio.timeout(60):
            await _until(lambda: _is(holder, "leader"), 0.1)
        async with _controller(kubeconfig, workdir / "standby.log", "--identity=standby", leader_elect=True):
            await asyncio.sleep(5)  # the standby observes a few renewals
            leader.kill()
            killed = time.monotonic()
            async with asyncio.timeout(120):
                await _until(lambda: _is(holder, "standby"), 0.05)
            return time.monotonic() - killed


async def run(args: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="controller-bench-") as tmp:
        workdir = Path(args.workdir) if args.workdir else Path(tmp)
        cp = ControlPlane(workdir / "cp")
        await cp.start()
        try:
            paths = await asyncio.to_thread(ensure_prometheus_operator_crds)
            for path in paths:
                (await cp.kubectl("apply", "--server-side", "-f", str(path))).check()
            for name in crd_names():
                (await cp.kubectl("wait", "--for=condition=Established", f"crd/{name}")).check()
            (await cp.kubectl("create", "namespace", NAMESPACE)).check()
            api = await load_api_client(cp.kubeconfig)
            try:
                client = ApiKubeClient(api)
                for i in range(args.services):
                    await client.create(CONFIGMAP, NAMESPACE, _configmap(i))
                log = workdir / "controller.log"
                started = time.monotonic()
                async with _controller(cp.kubeconfig, log) as proc:
                    while await _ready_count(client) < args.services:
                        if proc.returncode is not None:
                            raise RuntimeError(f"controller exited: {log.read_text()[-2000:]}")
                        await asyncio.sleep(0.2)
                    cold = time.monotonic() - started
                    cold_cpu = _cpu_seconds(proc.pid)
                    rows.append(Row(f"cold start, {args.services} services until all Ready", f"{cold:.1f} s"))
                    rows.append(Row("cold start throughput", f"{args.services / cold:.1f} services/s"))
                    rows.append(
                        Row("controller CPU time during cold start (incl. imports)", f"{cold_cpu:.1f} s")
                    )
                    await asyncio.sleep(5)  # let the echoes of the cold start settle
                    latencies = await _edit_latency(client, args.services, args.edits)
                    rows.append(
                        Row(
                            f"edit -> HPA change, p50 ({len(latencies)} edits)",
                            f"{statistics.median(latencies) * 1000:.0f} ms",
                        )
                    )
                    rows.append(
                        Row("edit -> HPA change, p99", f"{_percentile(latencies, 0.99) * 1000:.0f} ms")
                    )
                    rows.append(Row("edit -> HPA change, max", f"{max(latencies) * 1000:.0f} ms"))
                    await asyncio.sleep(5)
                    cpu_before, wall_before = _cpu_seconds(proc.pid), time.monotonic()
                    await asyncio.sleep(args.idle_seconds)
                    cpu = _cpu_seconds(proc.pid) - cpu_before
                    wall = time.monotonic() - wall_before
                    rows.append(
                        Row(
                            f"idle CPU, {args.services} services, {wall:.0f} s window",
                            f"{100 * cpu / wall:.2f} % of one core",
                        )
                    )
                    rows.append(Row("controller resident memory", f"{_rss_mib(proc.pid):.0f} MiB"))
                if args.failover:
                    took = await _failover(cp.kubeconfig, client, workdir)
                    rows.append(
                        Row("failover after SIGKILL (lease 10 s, renew 7 s, retry 2 s)", f"{took:.1f} s")
                    )
            finally:
                await api.close()
        finally:
            await cp.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--edits", type=int, default=50)
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    parser.add_argument("--failover", action="store_true", help="also measure leader failover")
    parser.add_argument("--workdir", help="keep the control plane's and controllers' logs here")
    parser.add_argument("--controller-log-level", default="WARNING")
    args = parser.parse_args()
    global LOG_LEVEL
    LOG_LEVEL = args.controller_log_level
    load_before = os.getloadavg()[0]
    rows = asyncio.run(run(args))
    rows.append(
        Row("host", f"{os.cpu_count()} CPUs, load average {load_before:.1f} -> {os.getloadavg()[0]:.1f}")
    )
    width = max(len(r.measure) for r in rows)
    print(f"{'measure'.ljust(width)}  value")
    print(f"{'-' * width}  {'-' * 24}")
    for row in rows:
        print(f"{row.measure.ljust(width)}  {row.value}")


if __name__ == "__main__":
    main()
