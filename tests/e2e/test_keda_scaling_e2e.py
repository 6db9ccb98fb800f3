"""The KEDA backend end to end: our controller's ScaledObject scales a Deployment through real KEDA.

KEDA v2.21's operator and metrics API server (built from KEDA's Go module, cached) run against the
local control plane and own ``v1beta1.external.metrics.k8s.io`` for the duration of the test (the
``keda`` fixture; the APIService that was there before is put back afterwards). The controller runs
with ``--autoscaler keda``; simulated TGI replicas follow the Deployment's replica count, as in
``test_adapter_hpa``. Then Prometheus is stopped under load: KEDA's trigger fails
(``ignoreNullValues: false``), the fallback (``currentReplicas``) takes over, and the replica count
must not move for longer than the downscale stabilization window.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from kubernetes_asyncio import client as k8s_client

from tests.e2e.controller_harness import (
    install_controller_rbac,
    install_operator_crds,
    run_controller,
    service_configmap,
)
from tests.e2e.test_adapter_hpa import closed_loop_load
from tgi_autoscaler.kube.client import ApiKubeClient
from tgi_autoscaler.kube.resources import CONFIGMAP, DEPLOYMENT, HPA
from tgi_autoscaler.render import KedaOptions
from tgi_autoscaler_dev.localstack.controlplane import ControlPlane
from tgi_autoscaler_dev.localstack.process import background, wait_for
from tgi_autoscaler_dev.localstack.prometheus import PrometheusServer
from tgi_autoscaler_dev.sim.fleet import Fleet
from tgi_autoscaler_dev.sim.model import ReplicaConfig

# Needs KEDA's binaries (`localstack build --with-keda`); fails, naming that build, without them.
pytestmark = [pytest.mark.e2e, pytest.mark.keda]

SERVICE = "llama-keda"
SPEC = """\
model:
  id: meta-llama/Llama-2-7b-chat-hf
autoscaling:
  minReplicas: 1
  maxReplicas: 4
  signal: queue
  queue:
    targetPerReplica: 2
  scaleDown:
    stabilizationWindowSeconds: 10
    policies: [{type: Pods, value: 4, periodSeconds: 1}]
"""


@pytest.mark.timeout(900)
async def test_scaled_object_scales_through_keda_and_holds_through_a_prometheus_outage(
    control_plane: ControlPlane,
    keda: None,
    prometheus: PrometheusServer,
    kube_api: k8s_client.ApiClient,
    namespace: str,
) -> None:
    admin = ApiKubeClient(kube_api)
    kubeconfig = await install_controller_rbac(control_plane)
    await install_operator_crds(control_plane)
    options = KedaOptions(prometheus_url=prometheus.url, polling_interval_s=2, failure_threshold=3)

    async def replicas() -> int:
        deployment = await admin.get(DEPLOYMENT, namespace, SERVICE)
        return int((deployment or {}).get("spec", {}).get("replicas") or 0)

    async def follow(fleet: Fleet) -> None:
        while True:
            want = await replicas()
            if want and want != fleet.size:
                await fleet.scale_to(want)
            await asyncio.sleep(0.5)

    config = ReplicaConfig(max_batch_size=1, token_rate=10.0)
    async with run_controller(kubeconfig, namespaces=(namespace,), autoscaler="keda", keda=options):
        await admin.create(CONFIGMAP, namespace, service_configmap(SERVICE, namespace, SPEC))

        async def keda_hpa() -> bool:
            return await admin.get(HPA, namespace, f"keda-hpa-{SERVICE}") is not None

        await wait_for(keda_hpa, timeout=120, what="KEDA to create its HPA from our ScaledObject")
        assert await admin.get(HPA, namespace, SERVICE) is None  # no HPA of ours beside KEDA's
        async with (
            Fleet(
                SERVICE, namespace=namespace, replicas=1, config=config, file_sd_dir=prometheus.file_sd_dir
            ) as fleet,
            background(follow(fleet), "follow-deployment"),
        ):
            async with closed_loop_load(fleet.url, 8, max_new_tokens=20):

                async def scaled_up() -> bool:
                    return await replicas() >= 3

                await wait_for(
                    scaled_up, timeout=180, interval=0.5, what="KEDA's HPA to scale up on the queue"
                )
                await prometheus.stop()
            try:

                async def falling_back() -> bool:
                    status, body = await control_plane.request(
                        "GET", f"/apis/keda.sh/v1alpha1/namespaces/{namespace}/scaledobjects/{SERVICE}"
                    )
                    conditions = (body.get("status") or {}).get("conditions") or [] if status == 200 else []
                    return any(c.get("type") == "Fallback" and c.get("status") == "True" for c in conditions)

                await wait_for(falling_back, timeout=120, interval=0.5, what="KEDA's fallback to take over")
                held = await replicas()
                settings = control_plane.settings
                window = 10 + settings.hpa_downscale_stabilization_s + 3 * settings.hpa_sync_period_s
                observed: list[int] = []
                deadline = time.monotonic() + window
                while time.monotonic() < deadline:
                    observed.append(await replicas())
                    await asyncio.sleep(0.5)
                assert set(observed) == {held}, f"replicas changed during the outage: {observed}"
            finally:
                await prometheus.start()

            async def scaled_down() -> bool:
                return await replicas() == 1

            await wait_for(scaled_down, timeout=240, interval=0.5, what="KEDA's HPA to scale back to 1")
