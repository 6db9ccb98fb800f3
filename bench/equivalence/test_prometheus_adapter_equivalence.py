"""Our adapter and prometheus-adapter give the same answers on the same Prometheus.

The comparison benchmark is only meaningful if both servers compute the same number, so this test
runs both as real processes next to each other (prometheus-adapter with the ``externalRules`` the
benchmark uses), behind the local control plane's delegated authentication and authorization, and
reads both the way the aggregator does: front-proxy client certificate plus identity headers.
Simulated TGI pods with filled queues give non-zero values; each comparison is bracketed by two
direct Prometheus queries so a scrape in between cannot make equal answers look different.

prometheus-adapter is built by ``bench/compare_prometheus_adapter.py`` (not by ``localstack
build``), which runs this check before it measures anything; run alone
(``.venv/bin/python -m pytest bench/equivalence``) it is skipped until the benchmark built the binary.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import sys
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from tgi_autoscaler_dev.localstack.aggregation import issue_serving_cert
from tgi_autoscaler_dev.localstack.controlplane import ControlPlane
from tgi_autoscaler_dev.localstack.pki import KeyPair
from tgi_autoscaler_dev.localstack.process import ManagedProcess, free_port, wait_for
from tgi_autoscaler_dev.localstack.prometheus import PrometheusServer
from tgi_autoscaler_dev.localstack.prometheus_adapter import (
    PrometheusAdapterSettings,
    prometheus_adapter_binary,
    prometheus_adapter_process,
)
from tgi_autoscaler_dev.sim.fleet import Fleet
from tgi_autoscaler_dev.sim.model import ReplicaConfig

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not prometheus_adapter_binary().exists(),
        reason=f"prometheus-adapter is not in the cache ({prometheus_adapter_binary()}); "
        "run .venv/bin/python bench/compare_prometheus_adapter.py --quick once to build it",
    ),
]

HPA_USER = "system:serviceaccount:kube-system:horizontal-pod-autoscaler"
HPA_GROUPS = ("system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated")
Answer = tuple[int, Any]


class Reader:
    """Reads external metrics from one server as the aggregator would."""

    def __init__(self, name: str, port: int, session: aiohttp.ClientSession) -> None:
        self.name = name
        self.port = port
        self.session = session

    async def read(
        self, namespace: str, selector: str, *, user: str = HPA_USER, groups: tuple[str, ...] = HPA_GROUPS
    ) -> Answer:
        headers = [("Accept", "application/json"), ("X-Remote-User", user)]
        headers += [("X-Remote-Group", g) for g in groups]
        url = (
            f"https://127.0.0.1:{self.port}/apis/external.metrics.k8s.io/v1beta1/namespaces/"
            f"{namespace}/tgi_queue_size?labelSelector={quote(selector, safe='')}"
        )
        async with self.session.get(url, headers=headers) as response:
            return response.status, await response.json(content_type=None)


def value_of(answer: Answer) -> Decimal | None:
    status, body = answer
    if status != 200 or not body.get("items"):
        return None
    quantity = str(body["items"][0]["value"])
    return Decimal(quantity[:-1]) / 1000 if quantity.endswith("m") else Decimal(quantity)


@contextlib.asynccontextmanager
async def started(process: ManagedProcess) -> AsyncIterator[ManagedProcess]:
    await process.start()
    try:
        yield process
    finally:
        await process.stop()


def _client_context(cp: ControlPlane) -> ssl.SSLContext:
    assert cp.pki is not None
    ctx = ssl.create_default_context(cafile=str(cp.pki.cluster_ca.cert_path))
    ctx.load_cert_chain(str(cp.pki.front_proxy_client.cert), str(cp.pki.front_proxy_client.key))
    return ctx


def _ours(
    cp: ControlPlane, prom: PrometheusServer, serving: KeyPair, workdir: Path
) -> tuple[ManagedProcess, int]:
    port = free_port()
    process = ManagedProcess(
        name="tgi-autoscaler adapter",
        argv=[
            sys.executable,
            "-m",
            "tgi_autoscaler",
            "--log-format",
            "json",
            "adapter",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            f"--tls-cert-file={serving.cert}",
            f"--tls-private-key-file={serving.key}",
            f"--kubeconfig={cp.kubeconfig}",
            f"--prometheus-url={prom.url}",
            "--cache-ttl=0",
        ],
        log_path=workdir / "ours.log",
    )
    return process, port


async def _queue(session: aiohttp.ClientSession, url: str, count: int) -> list[asyncio.Task[None]]:
    async def one() -> None:
        with contextlib.suppress(aiohttp.ClientError):
            async with session.post(
                f"{url}/generate", json={"inputs": "hi", "parameters": {"max_new_tokens": 8}}
            ) as response:
                await response.read()

    return [asyncio.create_task(one(), name="sim-request") for _ in range(count)]


async def _prometheus_sum(prom: PrometheusServer, namespace: str, matcher: str) -> Decimal | None:
    result = await prom.query(f'sum(tgi_queue_size{{{matcher},namespace="{namespace}"}})')
    return Decimal(result[0]["value"][1]) if result else None


async def test_both_adapters_serve_prometheus_own_sum_for_the_same_selectors(
    control_plane: ControlPlane, running_prometheus: PrometheusServer, namespace: str, tmp_path: Path
) -> None:
    cp, prom = control_plane, running_prometheus
    assert cp.pki is not None
    serving = issue_serving_cert(cp.pki.cluster_ca, "equivalence", "bench")
    ours, ours_port = _ours(cp, prom, serving, tmp_path)
    theirs_port = free_port()
    theirs = prometheus_adapter_process(
        PrometheusAdapterSettings(
            binary=prometheus_adapter_binary(),
            workdir=tmp_path / "prometheus-adapter",
            port=theirs_port,
            prometheus_url=prom.url,
            kubeconfig=cp.kubeconfig,
            serving=serving,
            relist_interval_s=2.0,
        )
    )
    config = ReplicaConfig(max_batch_size=1, token_rate=4.0)  # 2 s per request: queues drain slowly
    async with (
        Fleet("llama", namespace=namespace, replicas=2, config=config, file_sd_dir=prom.file_sd_dir) as llama,
        Fleet(
            "mistral", namespace=namespace, replicas=1, config=config, file_sd_dir=prom.file_sd_dir
        ) as other,
        aiohttp.ClientSession() as sim,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=_client_context(cp))) as session,
        started(ours),
        started(theirs),
    ):
        readers = [Reader("ours", ours_port, session), Reader("prometheus-adapter", theirs_port, session)]
        for reader in readers:  # up, authenticating, and (prometheus-adapter) the metric discovered

            async def reads_ok(reader: Reader = reader) -> bool:
                return (await reader.read(namespace, "app_kubernetes_io_instance=llama"))[0] == 200

            await wait_for(reads_ok, timeout=90, what=f"{reader.name} to serve tgi_queue_size")
        tasks: list[asyncio.Task[None]] = []
        for pod, count in zip(llama.replicas, (5, 6), strict=True):
            tasks += await _queue(sim, pod.url, count)
        tasks += await _queue(sim, other.replicas[0].url, 6)
        try:
            key = "app_kubernetes_io_instance"
            cases = {
                f"{key}=llama": f'{key}="llama"',
                f"{key} in (llama,mistral)": f'{key}=~"llama|mistral"',
                f"{key}!=llama": f'{key}!="llama"',
            }
            for selector, matcher in cases.items():
                seen: list[object] = []
                deadline = asyncio.get_running_loop().time() + 30
                while True:
                    before = await _prometheus_sum(prom, namespace, matcher)
                    answers = [await r.read(namespace, selector) for r in readers]
                    after = await _prometheus_sum(prom, namespace, matcher)
                    values = [value_of(a) for a in answers]
                    seen.append((before, [a[0] for a in answers], values, after))
                    if before == after and before is not None and before > 0 and values == [before] * 2:
                        break
                    if asyncio.get_running_loop().time() > deadline:
                        pytest.fail(f"{selector}: (prometheus, statuses, values, prometheus) {seen[-3:]}")
                    await asyncio.sleep(0.1)

            # Both authorize with a SubjectAccessReview: an identity without RBAC rights is refused.
            for reader in readers:
                status, body = await reader.read(
                    namespace,
                    "app_kubernetes_io_instance=llama",
                    user="nobody",
                    groups=("system:authenticated",),
                )
                assert status == 403, (reader.name, body)
        finally:
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout=60)
