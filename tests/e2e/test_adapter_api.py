"""The adapter behind the real aggregation layer: availability, values, RBAC, forged identities, reloads.

Every request here goes through kube-apiserver the way the HPA controller's does (``kubectl get
--raw``), except where the point is to bypass it: a client that reaches the adapter directly must
not be able to claim an identity.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
import yaml

from tests.e2e.conftest import (
    ADAPTER_NAMESPACE,
    GROUP,
    METRICS_CONFIGMAP,
    VERSION,
    RunningAdapter,
    service_account_token,
)
from tgi_autoscaler_dev.localstack.controlplane import ControlPlane
from tgi_autoscaler_dev.localstack.process import wait_for
from tgi_autoscaler_dev.localstack.prometheus import PrometheusServer
from tgi_autoscaler_dev.sim.fleet import Fleet
from tgi_autoscaler_dev.sim.model import ReplicaConfig

pytestmark = pytest.mark.e2e

SERVICE = "llama"
SELECTOR = quote(f"app.kubernetes.io/instance={SERVICE}", safe="")


def metric_path(namespace: str, metric: str = "tgi_queue_size", selector: str = SELECTOR) -> str:
    return f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{metric}?labelSelector={selector}"


async def get_raw(control_plane: ControlPlane, path: str, **kwargs: Any) -> tuple[int, Any]:
    """``kubectl get --raw`` through kube-apiserver; (0, body) on success, (1, stderr) on failure."""
    result = await control_plane.kubectl("get", "--raw", path, **kwargs)
    if result.returncode != 0:
        return result.returncode, result.stderr
    return 0, json.loads(result.stdout)


@contextlib.asynccontextmanager
async def queued_requests(fleet: Fleet, count: int, *, max_new_tokens: int = 400) -> AsyncIterator[None]:
    """Keep ``count`` long generations submitted to the fleet, so its queue stays put until exit."""
    async with aiohttp.ClientSession() as session:

        async def one(i: int) -> None:
            replica = fleet.replicas[i % fleet.size]
            payload = {"inputs": "hello", "parameters": {"max_new_tokens": max_new_tokens}}
            async with session.post(f"{replica.url}/generate", json=payload) as resp:
                await resp.read()

        tasks = [asyncio.create_task(one(i), name=f"generation-{i}") for i in range(count)]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def test_the_apiservice_passes_the_aggregators_discovery_check(
    adapter: RunningAdapter, control_plane: ControlPlane
) -> None:
    status, body = await control_plane.request(
        "GET", f"/apis/apiregistration.k8s.io/v1/apiservices/{VERSION}.{GROUP}"
    )
    assert status == 200
    available = next(c for c in body["status"]["conditions"] if c["type"] == "Available")
    assert (available["status"], available["reason"]) == ("True", "Passed")
    code, discovery = await get_raw(control_plane, f"/apis/{GROUP}/{VERSION}")
    assert code == 0
    assert {"tgi_queue_size", "vllm_num_requests_waiting"} <= {r["name"] for r in discovery["resources"]}


async def test_kubectl_reads_the_simulated_queue_through_the_api_server(
    adapter: RunningAdapter, control_plane: ControlPlane, prometheus: PrometheusServer, namespace: str
) -> None:
    # One sequence per batch and a slow token rate: of 4 long requests, 3 wait in the queue.
    config = ReplicaConfig(max_batch_size=1, token_rate=5.0)
    async with (
        Fleet(
            SERVICE, namespace=namespace, replicas=1, config=config, file_sd_dir=prometheus.file_sd_dir
        ) as fleet,
        queued_requests(fleet, 4),
    ):
        seen: list[Any] = []

        async def adapter_reports_three() -> bool:
            code, body = await get_raw(control_plane, metric_path(namespace))
            seen.append(body)
            return code == 0 and body["items"][0]["value"] == "3"

        await wait_for(
            adapter_reports_three, timeout=30, what=f"tgi_queue_size 3 via kube-apiserver (last: {seen[-1:]})"
        )
        assert fleet.snapshot().queue_size == 3
    item = seen[-1]["items"][0]
    assert seen[-1]["kind"] == "ExternalMetricValueList"
    assert item["metricName"] == "tgi_queue_size"
    assert item["metricLabels"] == {"app.kubernetes.io/instance": SERVICE}


async def test_a_selector_never_reads_another_namespace(
    adapter: RunningAdapter, control_plane: ControlPlane, prometheus: PrometheusServer, namespace: str
) -> None:
    config = ReplicaConfig(max_batch_size=1, token_rate=5.0)
    async with (
        Fleet(
            SERVICE, namespace=namespace, replicas=1, config=config, file_sd_dir=prometheus.file_sd_dir
        ) as fleet,
        queued_requests(fleet, 3),
    ):

        async def visible_here() -> bool:
            code, body = await get_raw(control_plane, metric_path(namespace))
            return code == 0 and body["items"][0]["value"] == "2"

        await wait_for(visible_here, timeout=30, what="the queue in its own namespace")
        code, body = await get_raw(control_plane, metric_path("default"))
    assert code != 0  # no series there: an error, never a zero
    assert "NotFound" in body or "not found" in body.lower()


async def test_a_user_without_rbac_is_forbidden_until_granted(
    adapter: RunningAdapter, control_plane: ControlPlane, namespace: str
) -> None:
    # kube-apiserver authorizes an aggregated request before proxying it, with the same attributes the
    # adapter checks again (verb list, resource = metric, the namespace): the wording is identical.
    user = f"eve-{namespace}"
    kubeconfig = control_plane.user_kubeconfig(user)
    code, stderr = await get_raw(control_plane, metric_path(namespace), kubeconfig=kubeconfig)
    assert code != 0
    assert (
        f'Error from server (Forbidden): tgi_queue_size.external.metrics.k8s.io is forbidden: User "{user}" '
        f'cannot list resource "tgi_queue_size" in API group "external.metrics.k8s.io" in the namespace '
        f'"{namespace}"'
    ) in stderr

    grant = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "eve-reads-external-metrics", "namespace": namespace},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "external-metrics-reader",
        },
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }
    status, body = await control_plane.request(
        "POST", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings", body=grant
    )
    assert status == 201, body
    answers: list[str] = []

    async def answered_by_the_adapter() -> bool:
        _, out = await get_raw(control_plane, metric_path(namespace), kubeconfig=kubeconfig)
        answers.append(str(out))
        # No simulated pods in this namespace: once both authorizers agree, the adapter itself
        # answers that there is no data (and never a zero).
        return "Error from server (NotFound)" in str(out)

    try:
        await wait_for(answered_by_the_adapter, timeout=30, what="the RoleBinding to let eve through")
    except TimeoutError as exc:
        raise AssertionError(f"{exc}; last answer: {answers[-1:]}") from exc


async def test_forged_identity_headers_without_the_proxy_certificate_are_401(
    adapter: RunningAdapter, namespace: str
) -> None:
    forged = {"X-Remote-User": "system:admin", "X-Remote-Group": "system:masters"}
    status, body = await adapter.get(metric_path(namespace), headers=forged)
    assert status == 401
    assert body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "Unauthorized",
        "reason": "Unauthorized",
        "code": 401,
    }
    # The same headers with the aggregator's certificate are an identity (system:masters: allowed),
    # so the 401 above is about the certificate and nothing else.
    status, _ = await adapter.get(
        f"/apis/{GROUP}/{VERSION}", headers=forged, client=adapter.front_proxy_client
    )
    assert status == 200


async def test_a_client_certificate_from_another_ca_cannot_even_connect(
    adapter: RunningAdapter, control_plane: ControlPlane
) -> None:
    assert control_plane.pki is not None
    # The cluster admin's certificate (O=system:masters) is signed by the cluster CA, not the front-proxy CA.
    # TLS 1.3 delivers the rejection after the client's side of the handshake: no response at all.
    with pytest.raises((aiohttp.ClientError, ssl.SSLError)):
        await adapter.get(
            f"/apis/{GROUP}/{VERSION}", headers={"X-Remote-User": "admin"}, client=control_plane.pki.admin
        )


async def test_a_bearer_token_is_reviewed_and_identity_headers_beside_it_are_ignored(
    adapter: RunningAdapter, control_plane: ControlPlane, namespace: str
) -> None:
    status, body = await control_plane.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/serviceaccounts",
        body={"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "prober"}},
    )
    assert status == 201, body
    token = await service_account_token(control_plane, namespace, "prober", seconds=600)
    headers = {
        "Authorization": f"Bearer {token}",
        "X-Remote-User": "system:admin",
        "X-Remote-Group": "system:masters",
    }
    status, body = await adapter.get(metric_path(namespace), headers=headers)
    assert status == 403
    prober = f"system:serviceaccount:{namespace}:prober"
    assert body["message"].startswith(f'tgi_queue_size.external.metrics.k8s.io is forbidden: User "{prober}"')
    status, _ = await adapter.get(metric_path(namespace), headers={"Authorization": "Bearer not-a-token"})
    assert status == 401


async def test_health_endpoints_answer_without_credentials(adapter: RunningAdapter) -> None:
    for path in ("/healthz", "/livez", "/readyz"):
        status, body = await adapter.get(path)
        assert (status, body) == (200, "ok"), path


async def test_an_edit_of_the_definitions_configmap_is_served_within_five_seconds(
    adapter: RunningAdapter, control_plane: ControlPlane, namespace: str
) -> None:
    path = f"/api/v1/namespaces/{ADAPTER_NAMESPACE}/configmaps/{METRICS_CONFIGMAP}"
    status, original = await control_plane.request("GET", path)
    assert status == 200
    probe = "tgi_edit_probe"
    code, stderr = await get_raw(control_plane, metric_path(namespace, probe))
    assert code != 0
    assert "not found" in stderr.lower()

    document = yaml.safe_load(original["data"]["metrics.yaml"])
    document["metrics"] = [
        *document.get("metrics", []),
        {"name": probe, "query": "sum(tgi_queue_size{$matchers})", "onEmpty": "zero"},
    ]
    patch = {"data": {"metrics.yaml": yaml.safe_dump(document)}}
    try:
        status, body = await control_plane.request(
            "PATCH", path, body=patch, content_type="application/merge-patch+json"
        )
        assert status == 200, body

        async def served() -> bool:
            code, body = await get_raw(control_plane, metric_path(namespace, probe))
            return code == 0 and body["items"][0]["value"] == "0"

        await wait_for(served, timeout=5, interval=0.1, what=f"{probe} to be served after the ConfigMap edit")
    finally:
        restore = {"data": {"metrics.yaml": original["data"]["metrics.yaml"]}}
        await control_plane.request("PATCH", path, body=restore, content_type="application/merge-patch+json")


async def test_own_metrics_need_the_scraper_role(
    adapter: RunningAdapter, control_plane: ControlPlane, namespace: str
) -> None:
    status, _ = await adapter.get("/metrics")
    assert status == 401
    status, body = await control_plane.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/serviceaccounts",
        body={"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "prometheus"}},
    )
    assert status == 201, body
    token = await service_account_token(control_plane, namespace, "prometheus", seconds=600)
    auth = {"Authorization": f"Bearer {token}"}
    status, _ = await adapter.get("/metrics", headers=auth)
    assert status == 403
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": f"scrape-adapter-{namespace}"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "tgi-autoscaler-adapter-metrics-scraper",
        },
        "subjects": [{"kind": "ServiceAccount", "name": "prometheus", "namespace": namespace}],
    }
    status, body = await control_plane.request(
        "POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", body=binding
    )
    assert status == 201, body
    try:
        scraped: list[Any] = []

        async def scrapeable() -> bool:
            status, text = await adapter.get("/metrics", headers=auth)
            scraped.append(text)
            return status == 200

        await wait_for(scrapeable, timeout=30, what="the scraper binding to reach the adapter")
        assert "tgi_autoscaler_adapter_request_duration_seconds" in scraped[-1]
    finally:
        await control_plane.request(
            "DELETE", f"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/scrape-adapter-{namespace}"
        )


async def test_kube_apiserver_publishes_the_adapters_openapi(
    adapter: RunningAdapter, control_plane: ControlPlane
) -> None:
    # The aggregator downloads it as "system:aggregator" with no groups; RBAC lets authenticated
    # users read OpenAPI, so this also proves the adapter counts forwarded users as authenticated.
    async def published() -> bool:
        code, body = await get_raw(control_plane, f"/openapi/v3/apis/{GROUP}/{VERSION}")
        return code == 0 and "ExternalMetricValueList" in json.dumps(body)

    await wait_for(published, timeout=60, what="the adapter's OpenAPI v3 document via kube-apiserver")
    status, _ = await adapter.get(
        "/openapi/v2", headers={"X-Remote-User": "system:aggregator"}, client=adapter.front_proxy_client
    )
    assert status == 200
