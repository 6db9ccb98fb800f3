"""Without prometheus-operator the controller falls back to scrape annotations, and notices when it
is installed later (discovery is re-checked periodically)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from kubernetes_asyncio import client as k8s_client

from tests.e2e.controller_harness import (
    events_for,
    expected_objects,
    install_controller_rbac,
    install_operator_crds,
    owned_objects,
    remove_operator_crds,
    run_controller,
    service_configmap,
    status_of,
)
from tgi_autoscaler.kube.client import ApiKubeClient
from tgi_autoscaler.kube.resources import CONFIGMAP, DEPLOYMENT
from tgi_autoscaler_dev.localstack.controlplane import ControlPlane
from tgi_autoscaler_dev.localstack.process import wait_for

pytestmark = pytest.mark.e2e

SPEC = "model:\n  id: mistralai/Mistral-7B-Instruct-v0.2\n"


@pytest.fixture
async def without_operator(control_plane: ControlPlane) -> AsyncIterator[Path]:
    """No monitoring.coreos.com CRDs during the test; reinstalled afterwards for other tests."""
    kubeconfig = await install_controller_rbac(control_plane)
    await remove_operator_crds(control_plane)
    try:
        yield kubeconfig
    finally:
        await install_operator_crds(control_plane)


async def test_without_the_operator_pods_are_annotated_and_a_warning_explains_then_the_operator_is_picked_up(
    control_plane: ControlPlane, without_operator: Path, kube_api: k8s_client.ApiClient, namespace: str
) -> None:
    admin = ApiKubeClient(kube_api)
    async with run_controller(without_operator, namespaces=(namespace,), discovery_period_s=1.0):
        created = await admin.create(CONFIGMAP, namespace, service_configmap("svc", namespace, SPEC))

        async def applied_without_operator() -> bool:
            status = await status_of(admin, namespace, "svc")
            return status is not None and status["phase"] == "Ready" and status["prometheusOperator"] is False

        await wait_for(applied_without_operator, timeout=60, what="the fallback rendering to be applied")
        assert await owned_objects(admin, [namespace], "svc") == expected_objects(created, operator=False)
        deployment = await admin.get(DEPLOYMENT, namespace, "svc")
        assert deployment is not None
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"]
        warnings = [e for e in await events_for(admin, namespace, "svc") if e["type"] == "Warning"]
        assert [e["reason"] for e in warnings] == ["PrometheusOperatorMissing"]
        assert "PodMonitor" in warnings[0]["message"]

        # The operator arrives after the controller: the next discovery check re-renders everything.
        await install_operator_crds(control_plane)

        async def monitored() -> bool:
            found = await owned_objects(admin, [namespace], "svc")
            return {"PodMonitor", "PrometheusRule"} <= {ref.split("/")[0] for ref in found}

        await wait_for(monitored, timeout=30, what="PodMonitor and PrometheusRule after the CRDs appear")
        assert await owned_objects(admin, [namespace], "svc") == expected_objects(created, operator=True)
