"""The KEDA backend against the real kube-apiserver and KEDA's real CRDs (from KEDA's Go module).

``render --autoscaler keda`` output passes a server-side dry run with strict field validation (a
misspelled field is rejected, so the check can fail), and the controller in ``--autoscaler keda``
mode applies a ScaledObject instead of the HPA, pruning the HPA it applied before the switch.
No KEDA binary is needed here; the scaling itself is ``test_keda_scaling_e2e``.
"""

from __future__ import annotations

import asyncio
import copy
import sys
from pathlib import Path

import pytest
import yaml
from kubernetes_asyncio import client as k8s_client

from tests.e2e.controller_harness import (
    EXAMPLES,
    install_controller_rbac,
    install_routing_crds,
    owned_objects,
    run_controller,
    service_configmap,
    status_of,
)
from tgi_autoscaler.kube.client import ApiKubeClient
from tgi_autoscaler.kube.resources import CONFIGMAP, HPA, SCALEDOBJECT
from tgi_autoscaler.render import KedaOptions
from tgi_autoscaler_dev.localstack.controlplane import ControlPlane
from tgi_autoscaler_dev.localstack.keda import install_keda_crds
from tgi_autoscaler_dev.localstack.process import wait_for

pytestmark = pytest.mark.e2e

PROM = "http://prometheus.monitoring.svc:9090"
SPEC = "model:\n  id: meta-llama/Llama-2-7b-chat-hf\nautoscaling:\n  minReplicas: 2\n  maxReplicas: 6\n"


@pytest.fixture
async def keda_crds_installed(control_plane: ControlPlane) -> Path:
    kubeconfig = await install_controller_rbac(control_plane)
    await install_keda_crds(control_plane)
    # The routed examples (HTTPRoute, InferencePool, BackendTrafficPolicy) next to a ScaledObject.
    await install_routing_crds(control_plane)
    return kubeconfig


async def _render(example: Path, namespace: str) -> list[dict[str, object]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tgi_autoscaler",
        "render",
        "-f",
        str(example),
        "--namespace",
        namespace,
        "--autoscaler",
        "keda",
        "--keda-prometheus-url",
        PROM,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return [doc for doc in yaml.safe_load_all(out) if doc]


async def _dry_run(control_plane: ControlPlane, docs: list[dict[str, object]]) -> tuple[int, str]:
    result = await control_plane.kubectl(
        "apply",
        "--server-side",
        "--dry-run=server",
        "--validate=strict",
        "--field-manager=tgi-autoscaler",
        "-f",
        "-",
        input_text=yaml.safe_dump_all(docs),
    )
    return result.returncode, result.stdout + result.stderr


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
async def test_rendered_scaled_objects_pass_server_side_dry_run_against_kedas_crds(
    control_plane: ControlPlane, keda_crds_installed: Path, namespace: str, example: str
) -> None:
    # prometheus-operator's kinds are dry-run by the controller's own e2e tests; core kinds, the
    # routing kinds and KEDA's are checked here, so this file needs no generated CRDs.
    docs = [
        doc
        for doc in await _render(EXAMPLES / example, namespace)
        if not str(doc["apiVersion"]).startswith("monitoring.coreos.com/")
    ]
    kinds = [doc["kind"] for doc in docs]
    assert "ScaledObject" in kinds
    assert "HorizontalPodAutoscaler" not in kinds
    code, output = await _dry_run(control_plane, docs)
    assert code == 0, output
    assert "scaledobject.keda.sh/" in output
    assert "(server dry run)" in output

    # The same check rejects what KEDA's schema does not know.
    scaled = copy.deepcopy(next(doc for doc in docs if doc["kind"] == "ScaledObject"))
    scaled["spec"]["fallback"]["behaviour"] = "currentReplicas"  # type: ignore[index]
    code, output = await _dry_run(control_plane, [scaled])
    assert code != 0
    assert "behaviour" in output


async def test_controller_switches_a_service_from_its_hpa_to_a_scaled_object(
    keda_crds_installed: Path, kube_api: k8s_client.ApiClient, namespace: str
) -> None:
    admin = ApiKubeClient(kube_api)
    await admin.create(CONFIGMAP, namespace, service_configmap("svc", namespace, SPEC))

    async def kinds_owned() -> set[str]:
        return {ref.split("/")[0] for ref in await owned_objects(admin, [namespace], "svc")}

    async with run_controller(keda_crds_installed, namespaces=(namespace,)):

        async def hpa_applied() -> bool:
            return "HorizontalPodAutoscaler" in await kinds_owned()

        await wait_for(hpa_applied, timeout=60, what="the HPA of the hpa backend")
    assert "ScaledObject" not in await kinds_owned()

    keda = KedaOptions(prometheus_url=PROM)
    async with run_controller(keda_crds_installed, namespaces=(namespace,), autoscaler="keda", keda=keda):

        async def switched() -> bool:
            kinds = await kinds_owned()
            return "ScaledObject" in kinds and "HorizontalPodAutoscaler" not in kinds

        await wait_for(switched, timeout=60, what="the ScaledObject to replace the HPA")
        scaled = await admin.get(SCALEDOBJECT, namespace, "svc")
        assert scaled is not None
        spec = scaled["spec"]
        assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (2, 6)
        assert spec["fallback"]["behavior"] == "currentReplicas"
        (trigger,) = spec["triggers"]
        assert trigger["metadata"]["ignoreNullValues"] == "false"
        assert f'namespace="{namespace}"' in trigger["metadata"]["query"]
        assert await admin.get(HPA, namespace, "svc") is None
        status = await status_of(admin, namespace, "svc")
        assert status is not None
        assert status["phase"] == "Ready", status
