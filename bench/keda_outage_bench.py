"""Side by side through one real KEDA: our ScaledObject vs KEDA as vLLM production-stack sets it up,
while Prometheus is stopped, hung, or returning empty results under load.

One local control plane, one Prometheus, one KEDA v2.21 (operator and metrics server, built from
its Go module). Two simulated vLLM services of the same shape get the same closed-loop load; each
service's replicas follow its Deployment. Both ScaledObjects query Prometheus through a fault
proxy, so an outage hits both at the same instant:

- ``ours``: ``render_scaled_object`` from a service spec (``ignoreNullValues: "false"``, fallback
  ``currentReplicas``, our HPA behavior), on the queue signal with threshold 5 so that only the
  outage handling differs (``--signal demand`` for our default);
- ``production-stack``: the chart's trigger (``vllm:num_requests_waiting``, threshold 5, polling
  15 s, cooldown 360 s, KEDA's defaults otherwise: ``ignoreNullValues`` true, no fallback, HPA
  default behavior). The chart's default query has no ``sum()``, which KEDA refuses once two pods
  export the series ("returned multiple elements"); the tutorial's summed form is used instead.

For each outage mode: load on until both run ``--scaled`` replicas, then ``--outage-seconds`` of
the fault, then ``--recovery-seconds`` with Prometheus back, load still on; between modes the
load stops and both ScaledObjects are deleted, both Deployments set to 1 replica and the
ScaledObjects created again, so every mode starts from the same state. Printed: replicas
before, lowest and highest during, and at the end of the recovery, per mode and service, plus the
queries each service's triggers sent.

    .venv/bin/python bench/keda_outage_bench.py --outage-seconds 120
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from tgi_autoscaler.config.service import parse_service_yaml
from tgi_autoscaler.log import configure_logging
from tgi_autoscaler.render import KedaOptions, ServiceSource
from tgi_autoscaler.render.keda import render_scaled_object
from tgi_autoscaler_dev.localstack.controlplane import ControlPlane, ControlPlaneSettings
from tgi_autoscaler_dev.localstack.keda import running_keda
from tgi_autoscaler_dev.localstack.process import background, free_port, wait_for
from tgi_autoscaler_dev.localstack.prometheus import PrometheusServer
from tgi_autoscaler_dev.sim.fleet import Fleet
from tgi_autoscaler_dev.sim.model import ReplicaConfig
from tgi_autoscaler_dev.sim.pods import pod_labels

NAMESPACE = "keda-outage"
OURS, PRODSTACK = "ours", "production-stack"
MODES = ("stopped", "hung", "empty")
_INSTANCE = "app_kubernetes_io_instance"
EMPTY = {"status": "success", "data": {"resultType": "vector", "result": []}}


class FaultProxy:
    """Prometheus' HTTP API passed through, or failing the way a real outage does, for every client."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.mode = "pass"
        self.port = free_port()
        self.queries: Counter[str] = Counter()  # service name found in the query -> count
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        query = request.query.get("query") or (await request.post()).get("query") or ""
        for service in (OURS, PRODSTACK):
            if f'"{service}"' in str(query):
                self.queries[service] += 1
        if self.mode == "stopped":  # connection closed without an answer, as a dead process
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=503)
        if self.mode == "hung":  # accepts, never answers: the client's timeout decides
            await asyncio.sleep(3600)
        if self.mode == "empty":  # up, but the targets are gone: every selector matches nothing
            return web.json_response(EMPTY)
        assert self._session is not None
        async with self._session.request(
            request.method, f"{self.upstream}{request.path_qs}", data=body, headers=request.headers
        ) as upstream:
            return web.Response(
                status=upstream.status, body=await upstream.read(), content_type=upstream.content_type
            )

    async def start(self) -> None:
        self._session = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()


def deployment(name: str, namespace: str = NAMESPACE) -> dict[str, Any]:
    labels = pod_labels(name)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "vllm", "image": "registry.invalid/vllm:1"}]},
            },
        },
    }


def ours(prometheus_url: str, signal: str, max_replicas: int) -> dict[str, Any]:
    spec = parse_service_yaml(
        f"model: {{id: meta-llama/Llama-3.1-8B-Instruct}}\nengine: {{kind: vllm}}\n"
        f"autoscaling:\n  minReplicas: 1\n  maxReplicas: {max_replicas}\n  signal: {signal}\n"
        "  queue: {targetPerReplica: 5}\n",
        source="bench",
    )
    source = ServiceSource(name=OURS, namespace=NAMESPACE, spec=spec)
    return render_scaled_object(source, KedaOptions(prometheus_url=prometheus_url))


def production_stack(
    prometheus_url: str, max_replicas: int, *, name: str = PRODSTACK, namespace: str = NAMESPACE
) -> dict[str, Any]:
    """The ScaledObject vLLM production-stack's chart renders for one model (summed, see above)."""
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicaCount": 1,
            "maxReplicaCount": max_replicas,
            "pollingInterval": 15,
            "cooldownPeriod": 360,
            "triggers": [
                {
                    "type": "prometheus",
                    "metadata": {
                        "serverAddress": prometheus_url,
                        "metricName": "vllm:num_requests_waiting",
                        "query": f'sum(vllm:num_requests_waiting{{{_INSTANCE}="{name}"}})',
                        "threshold": "5",
                    },
                }
            ],
        },
    }


@dataclass
class Row:
    mode: str
    service: str
    before: int
    low: int
    high: int
    after: int


_SCALED_OBJECTS = f"/apis/keda.sh/v1alpha1/namespaces/{NAMESPACE}/scaledobjects"


async def create_scaled_objects(cp: ControlPlane, scaled_objects: tuple[dict[str, Any], ...]) -> None:
    for scaled in scaled_objects:
        status, body = await cp.request("POST", _SCALED_OBJECTS, body=scaled)
        assert status == 201, body


async def reset(cp: ControlPlane, scaled_objects: tuple[dict[str, Any], ...]) -> None:
    """Both services back to 1 replica with new ScaledObjects (so new HPAs, no scale-down history).

    Waiting for the HPAs to scale down instead would take our default scale-down behavior (600 s
    stabilization, then one pod per 300 s) 15 min or more per mode; deleting and recreating the
    ScaledObjects starts every mode from the same state for both services.
    """
    names = [scaled["metadata"]["name"] for scaled in scaled_objects]
    for name in names:
        status, body = await cp.request("DELETE", f"{_SCALED_OBJECTS}/{name}")
        assert status in (200, 202), body

    async def hpas_gone() -> bool:
        for name in names:
            hpa = f"/apis/autoscaling/v2/namespaces/{NAMESPACE}/horizontalpodautoscalers/keda-hpa-{name}"
            for path in (hpa, f"{_SCALED_OBJECTS}/{name}"):
                status, _ = await cp.request("GET", path)
                if status != 404:
                    return False
        return True

    await wait_for(hpas_gone, timeout=120, interval=1.0, what="KEDA to delete its HPAs")
    for name in names:
        status, body = await cp.request(
            "PATCH",
            f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{name}",
            body={"spec": {"replicas": 1}},
            content_type="application/merge-patch+json",
        )
        assert status == 200, body
    await create_scaled_objects(cp, scaled_objects)
    print(f"[{time.strftime('%H:%M:%S')}] reset: both at 1 replica, ScaledObjects recreated", flush=True)


@contextlib.asynccontextmanager
async def closed_loop(url: str, users: int) -> AsyncIterator[None]:
    async with aiohttp.ClientSession() as session:

        async def user() -> None:
            payload = {"inputs": "hello", "parameters": {"max_new_tokens": 20}}
            while True:
                try:
                    async with session.post(f"{url}/generate", json=payload) as resp:
                        await resp.read()
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)

        tasks = [asyncio.create_task(user()) for _ in range(users)]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def run(args: argparse.Namespace) -> list[Row]:
    workdir = Path(tempfile.mkdtemp(prefix="keda-outage-"))
    cp = ControlPlane(
        workdir / "cp",
        settings=ControlPlaneSettings(
            hpa_sync_period_s=args.sync, hpa_downscale_stabilization_s=args.stabilization
        ),
    )
    prom = PrometheusServer(workdir / "prometheus", scrape_interval_s=args.scrape)
    await cp.start()
    await prom.start()
    proxy = FaultProxy(prom.url)
    await proxy.start()
    rows: list[Row] = []
    try:
        async with running_keda(cp, workdir / "keda", build=True):
            await cp.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
            for name in (OURS, PRODSTACK):
                status, body = await cp.request(
                    "POST", f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments", body=deployment(name)
                )
                assert status == 201, body
            scaled_objects = (
                ours(proxy.url, args.signal, args.max_replicas),
                production_stack(proxy.url, args.max_replicas),
            )
            await create_scaled_objects(cp, scaled_objects)

            async def replicas(name: str) -> int:
                status, body = await cp.request(
                    "GET", f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{name}"
                )
                assert status == 200, body
                return int(body["spec"].get("replicas") or 0)

            async def follow(name: str, fleet: Fleet) -> None:
                while True:
                    want = await replicas(name)
                    if want and want != fleet.size:
                        await fleet.scale_to(want)
                    await asyncio.sleep(0.5)

            config = ReplicaConfig(max_batch_size=1, token_rate=10.0)
            async with (
                Fleet(
                    OURS, namespace=NAMESPACE, engine="vllm", config=config, file_sd_dir=prom.file_sd_dir
                ) as fleet_a,
                Fleet(
                    PRODSTACK, namespace=NAMESPACE, engine="vllm", config=config, file_sd_dir=prom.file_sd_dir
                ) as fleet_b,
                background(follow(OURS, fleet_a), "follow-ours"),
                background(follow(PRODSTACK, fleet_b), "follow-prodstack"),
            ):
                for mode in args.modes:
                    async with closed_loop(fleet_a.url, args.users), closed_loop(fleet_b.url, args.users):

                        async def both_scaled() -> bool:
                            target: int = args.scaled
                            return min([await replicas(OURS), await replicas(PRODSTACK)]) >= target

                        await wait_for(
                            both_scaled, timeout=600, interval=1.0, what="both services to scale up"
                        )
                        before = {name: await replicas(name) for name in (OURS, PRODSTACK)}
                        seen: dict[str, list[int]] = {OURS: [], PRODSTACK: []}
                        proxy.mode = mode
                        print(
                            f"[{time.strftime('%H:%M:%S')}] outage: {mode} for {args.outage_seconds:g} s",
                            flush=True,
                        )
                        deadline = time.monotonic() + args.outage_seconds
                        while time.monotonic() < deadline:
                            for name in seen:
                                seen[name].append(await replicas(name))
                            await asyncio.sleep(1.0)
                        proxy.mode = "pass"
                        await asyncio.sleep(args.recovery_seconds)
                        for name in seen:
                            rows.append(
                                Row(
                                    mode,
                                    name,
                                    before[name],
                                    min(seen[name]),
                                    max(seen[name]),
                                    await replicas(name),
                                )
                            )
                            print(rows[-1], flush=True)

                    if mode != args.modes[-1]:
                        await reset(cp, scaled_objects)
    finally:
        await proxy.stop()
        await prom.stop()
        await cp.stop()
    print(f"queries through the proxy: {dict(proxy.queries)}")
    return rows


def table(rows: list[Row]) -> str:
    lines = ["| outage | ScaledObject | before | during (min-max) | after |", "|---|---|---|---|---|"]
    lines += [f"| {r.mode} | {r.service} | {r.before} | {r.low}-{r.high} | {r.after} |" for r in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--outage-seconds", type=float, default=120.0)
    parser.add_argument("--recovery-seconds", type=float, default=60.0)
    parser.add_argument("--users", type=int, default=16, help="closed-loop users per service")
    parser.add_argument("--scaled", type=int, default=3, help="replicas both must reach before an outage")
    parser.add_argument("--max-replicas", type=int, default=6)
    parser.add_argument("--signal", choices=("queue", "demand"), default="queue")
    parser.add_argument("--sync", type=float, default=15.0, help="HPA sync period, s")
    parser.add_argument("--stabilization", type=float, default=300.0, help="kcm downscale stabilization, s")
    parser.add_argument("--scrape", type=float, default=5.0, help="Prometheus scrape interval, s")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    configure_logging("console")
    rows = asyncio.run(run(args))
    print(table(rows))
    if args.json is not None:
        args.json.write_text(json.dumps([r.__dict__ for r in rows], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
