"""Running the controller against the local control plane, as it runs in a cluster.

The controller authenticates as its ServiceAccount (a client certificate for
``system:serviceaccount:tgi-autoscaler:tgi-autoscaler-controller``) with exactly the RBAC from
``manifests/controller``: a test passing here also proves those permissions are sufficient.
prometheus-operator's CRDs come from controller-gen (``tgi_autoscaler_dev.localstack.crds``), so
PodMonitor and PrometheusRule objects are validated against the real schema; Gateway API's, the
Inference Extension's and Envoy Gateway's come from their Go modules at pinned versions
(``ensure_routing_crds``), so HTTPRoute, InferencePool and BackendTrafficPolicy objects are too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry

from tgi_autoscaler.config.constants import FIELD_MANAGER
from tgi_autoscaler.controller.discovery import AutoscalerMode
from tgi_autoscaler.controller.manager import Controller, ControllerSettings
from tgi_autoscaler.controller.own_metrics import ControllerMetrics
from tgi_autoscaler.controller.resources import CRD_KINDS, KEDA_KINDS, MANAGED_KINDS
from tgi_autoscaler.kube.client import ApiKubeClient, KubeObject
from tgi_autoscaler.kube.connect import load_api_client
from tgi_autoscaler.kube.resources import CONFIGMAP, EVENT, ResourceType
from tgi_autoscaler.render import KedaOptions, render_service, source_from_configmap
from tgi_autoscaler_dev.localstack.controlplane import ControlPlane
from tgi_autoscaler_dev.localstack.crds import (
    crd_names,
    ensure_prometheus_operator_crds,
    ensure_routing_crds,
    routing_crd_names,
)
from tgi_autoscaler_dev.localstack.process import wait_for

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests" / "controller" / "base"
EXAMPLES = REPO / "manifests" / "examples"
CONTROLLER_USER = "system:serviceaccount:tgi-autoscaler:tgi-autoscaler-controller"
CONTROLLER_GROUPS = ("system:serviceaccounts", "system:serviceaccounts:tgi-autoscaler")
RBAC_KINDS = {"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}


async def install_controller_rbac(control_plane: ControlPlane) -> Path:
    """Apply the manifests' namespace, ServiceAccount and RBAC; return a kubeconfig acting as it."""
    built = (await control_plane.kubectl("kustomize", str(MANIFESTS))).check().stdout
    docs = [d for d in yaml.safe_load_all(built) if d and d["kind"] in RBAC_KINDS]
    assert {d["kind"] for d in docs} == RBAC_KINDS, "the kustomization lost part of its RBAC"
    manifest = yaml.safe_dump_all(docs)
    (await control_plane.kubectl("apply", "--server-side", "-f", "-", input_text=manifest)).check()
    return control_plane.user_kubeconfig(CONTROLLER_USER, CONTROLLER_GROUPS)


async def install_operator_crds(control_plane: ControlPlane) -> None:
    paths = await asyncio.to_thread(ensure_prometheus_operator_crds)
    for path in paths:
        (await control_plane.kubectl("apply", "--server-side", "-f", str(path))).check()
    for name in crd_names():
        (
            await control_plane.kubectl("wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s")
        ).check()


async def remove_operator_crds(control_plane: ControlPlane) -> None:
    for name in crd_names():
        await control_plane.kubectl("delete", f"crd/{name}", "--ignore-not-found", "--wait=true")

    async def gone() -> bool:
        status, _ = await control_plane.request("GET", "/apis/monitoring.coreos.com/v1")
        return status == 404

    await wait_for(gone, timeout=60, what="monitoring.coreos.com/v1 to disappear from discovery")


async def install_routing_crds(control_plane: ControlPlane) -> None:
    paths = await asyncio.to_thread(ensure_routing_crds)
    for path in paths:
        (await control_plane.kubectl("apply", "--server-side", "-f", str(path))).check()
    for name in routing_crd_names():
        (
            await control_plane.kubectl("wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s")
        ).check()


async def remove_routing_crds(control_plane: ControlPlane) -> None:
    for name in routing_crd_names():
        await control_plane.kubectl("delete", f"crd/{name}", "--ignore-not-found", "--wait=true")

    async def gone() -> bool:
        for group_version in ("gateway.networking.k8s.io/v1", "inference.networking.k8s.io/v1"):
            status, _ = await control_plane.request("GET", f"/apis/{group_version}")
            if status != 404:
                return False
        return True

    await wait_for(gone, timeout=60, what="the Gateway API groups to disappear from discovery")


def example_configmap(filename: str, namespace: str) -> KubeObject:
    """One of manifests/examples, moved into the test's namespace."""
    doc: KubeObject = yaml.safe_load((EXAMPLES / filename).read_text())
    doc["metadata"]["namespace"] = namespace
    return doc


def service_configmap(name: str, namespace: str, spec: str) -> KubeObject:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": {"tgi-autoscaler.io/service": "true"}},
        "data": {"service.yaml": spec},
    }


def expected_objects(
    configmap: KubeObject, *, operator: bool, dashboard_namespace: str | None = None
) -> set[str]:
    """``Kind/namespace/name`` of everything the renderer produces for ``configmap``."""
    from tgi_autoscaler.render import RenderOptions

    source = source_from_configmap(configmap)
    rendered = render_service(
        source, RenderOptions(prometheus_operator=operator, dashboard_namespace=dashboard_namespace)
    )
    return {f"{o['kind']}/{o['metadata']['namespace']}/{o['metadata']['name']}" for o in rendered}


async def owned_objects(client: ApiKubeClient, namespaces: list[str], owner: str) -> set[str]:
    """Every object labelled as owned by the service ConfigMap ``owner``, across ``namespaces``."""
    found: set[str] = set()
    kinds: list[ResourceType] = []
    for rt in MANAGED_KINDS:
        if rt in CRD_KINDS + KEDA_KINDS:  # listed only where its CRD is installed
            document = await client.get_path(f"/apis/{rt.api_version}")
            if rt.plural not in {r["name"] for r in (document or {}).get("resources", [])}:
                continue
        kinds.append(rt)
    for rt in kinds:
        for ns in namespaces:
            listed = await client.list(
                rt, namespace=ns, label_selector=f"tgi-autoscaler.io/owner-name={owner}"
            )
            found |= {f"{rt.kind}/{ns}/{o['metadata']['name']}" for o in listed.items}
    return found


async def status_of(client: ApiKubeClient, namespace: str, name: str) -> dict[str, Any] | None:
    cm = await client.get(CONFIGMAP, namespace, name)
    raw = ((cm or {}).get("metadata", {}).get("annotations") or {}).get("tgi-autoscaler.io/status")
    return dict(json.loads(raw)) if raw else None


async def events_for(client: ApiKubeClient, namespace: str, name: str) -> list[KubeObject]:
    """The controller's events about objects named ``name``.

    The HPA shares the service's name and records events of its own (FailedGetExternalMetric while
    no adapter answers), so events are told apart by their reporting component.
    """
    listed = await client.list(EVENT, namespace=namespace)
    return [
        e
        for e in listed.items
        if e.get("involvedObject", {}).get("name") == name and e.get("reportingComponent") == FIELD_MANAGER
    ]


@dataclass
class RunningController:
    controller: Controller
    registry: CollectorRegistry


@contextlib.asynccontextmanager
async def run_controller(
    kubeconfig: Path,
    *,
    namespaces: tuple[str, ...],
    dashboard_namespace: str | None = None,
    discovery_period_s: float = 1.0,
    resync_period_s: float = 300.0,
    autoscaler: AutoscalerMode = "hpa",
    keda: KedaOptions | None = None,
) -> AsyncIterator[RunningController]:
    """An in-process controller (no leader election), stopped gracefully on exit."""
    api = await load_api_client(str(kubeconfig))
    registry = CollectorRegistry()
    controller = Controller(
        ApiKubeClient(api),
        ControllerSettings(
            namespaces=namespaces,
            dashboard_namespace=dashboard_namespace,
            discovery_period_s=discovery_period_s,
            resync_period_s=resync_period_s,
            watch_timeout_s=30,
            identity="e2e",
            autoscaler=autoscaler,
            keda=keda,
        ),
        metrics=ControllerMetrics.create(registry),
        build_source=source_from_configmap,
        render=render_service,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(controller.run(stop), name="controller-under-test")
    try:
        await wait_for(lambda: _ready(controller, task), timeout=30, what="controller caches to sync")
        yield RunningController(controller, registry)
    finally:
        stop.set()
        try:
            await asyncio.wait_for(task, 30)
        finally:
            await api.close()


async def _ready(controller: Controller, task: asyncio.Task[None]) -> bool:
    if task.done():
        task.result()  # surface the crash instead of waiting for the timeout
    return controller.ready
