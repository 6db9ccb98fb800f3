"""The adapter's security building blocks against a real kube-apiserver.

TokenReview, SubjectAccessReview and the front-proxy ConfigMap are kube-apiserver's contract with
every aggregated API server; these tests hold the adapter's clients to the real thing, RBAC included.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client as k8s

from tgi_autoscaler.adapter.authn import KubeTokenReviewer, ReviewUnavailableError, UserInfo
from tgi_autoscaler.adapter.authz import KubeAccessReviewer, request_attributes
from tgi_autoscaler.adapter.requestheader import (
    AUTH_CONFIGMAP_NAME,
    AUTH_CONFIGMAP_NAMESPACE,
    RequestHeaderConfig,
    RequestHeaderWatcher,
)
from tgi_autoscaler.kube.client import ApiKubeClient
from tgi_autoscaler.kube.resources import CONFIGMAP, ResourceType
from tgi_autoscaler_dev.localstack.controlplane import ControlPlane
from tgi_autoscaler_dev.localstack.pki import CertAuthority
from tgi_autoscaler_dev.localstack.process import wait_for

pytestmark = pytest.mark.e2e

GROUP = "external.metrics.k8s.io"
ROLE = ResourceType("rbac.authorization.k8s.io", "v1", "Role", "roles")
ROLE_BINDING = ResourceType("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings")


@contextlib.asynccontextmanager
async def running(watcher: RequestHeaderWatcher) -> AsyncIterator[RequestHeaderWatcher]:
    task = asyncio.create_task(watcher.run(), name="requestheader-watcher")
    try:
        yield watcher
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_front_proxy_settings_are_read_from_kube_apiserver(
    control_plane: ControlPlane, kube_api: k8s.ApiClient
) -> None:
    source = ApiKubeClient(kube_api)
    async with running(
        RequestHeaderWatcher(source, (AUTH_CONFIGMAP_NAMESPACE, AUTH_CONFIGMAP_NAME))
    ) as watcher:
        await asyncio.wait_for(watcher.wait_synced(), timeout=30)
        config = watcher.current
    assert control_plane.pki is not None
    assert config is not None
    assert config.client_ca_pem is not None
    assert control_plane.pki.front_proxy_ca.cert_path.read_bytes().strip() in config.client_ca_pem
    assert config.allowed_names == ("front-proxy-client",)
    assert config.username_headers == ("X-Remote-User",)
    assert config.group_headers == ("X-Remote-Group",)
    assert config.extra_header_prefixes == ("X-Remote-Extra-",)
    assert config.enabled


def _auth_configmap(name: str, namespace: str, ca_pem: bytes, allowed: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": {
            "requestheader-client-ca-file": ca_pem.decode(),
            "requestheader-allowed-names": allowed,
            "requestheader-username-headers": '["X-Remote-User"]',
            "requestheader-group-headers": '["X-Remote-Group"]',
            "requestheader-extra-headers-prefix": '["X-Remote-Extra-"]',
        },
    }


async def test_a_rotated_front_proxy_ca_is_picked_up_from_the_watch(
    control_plane: ControlPlane, kube_api: k8s.ApiClient, namespace: str, tmp_path: Path
) -> None:
    # A copy of the ConfigMap in the test's namespace, so the shared kube-system one stays intact.
    old_ca, new_ca = CertAuthority(tmp_path, "old-ca"), CertAuthority(tmp_path, "new-ca")
    name = "front-proxy-settings"
    core = k8s.CoreV1Api(kube_api)
    await ApiKubeClient(kube_api).create(
        CONFIGMAP,
        namespace,
        _auth_configmap(name, namespace, old_ca.cert_path.read_bytes(), '["front-proxy-client"]'),
    )
    seen: list[RequestHeaderConfig] = []

    async def record(config: RequestHeaderConfig) -> None:
        seen.append(config)

    watcher = RequestHeaderWatcher(ApiKubeClient(kube_api), (namespace, name))
    watcher.add_listener(record)
    async with running(watcher):
        await asyncio.wait_for(watcher.wait_synced(), timeout=30)
        assert watcher.current is not None
        assert watcher.current.client_ca_pem == old_ca.cert_path.read_bytes()

        await core.patch_namespaced_config_map(
            name,
            namespace,
            {"data": {"requestheader-client-ca-file": new_ca.cert_path.read_bytes().decode()}},
        )

        async def rotated() -> bool:
            return (
                watcher.current is not None and watcher.current.client_ca_pem == new_ca.cert_path.read_bytes()
            )

        await wait_for(rotated, timeout=10, what="the watcher to see the new front-proxy CA")

    assert [c.client_ca_pem for c in seen][:2] == [
        old_ca.cert_path.read_bytes(),
        new_ca.cert_path.read_bytes(),
    ]


async def _service_account_token(kube_api: k8s.ApiClient, namespace: str, name: str) -> str:
    core = k8s.CoreV1Api(kube_api)
    await core.create_namespaced_service_account(
        namespace, k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(name=name))
    )
    request = k8s.AuthenticationV1TokenRequest(
        spec=k8s.V1TokenRequestSpec(audiences=[], expiration_seconds=600)
    )
    response = await core.create_namespaced_service_account_token(name, namespace, request)
    token: str = response.status.token
    return token


async def test_token_review_identifies_a_service_account_and_rejects_garbage(
    kube_api: k8s.ApiClient, namespace: str
) -> None:
    token = await _service_account_token(kube_api, namespace, "metrics-reader")
    reviewer = KubeTokenReviewer(ApiKubeClient(kube_api))
    user = await reviewer.review(token)
    assert user is not None
    assert user.name == f"system:serviceaccount:{namespace}:metrics-reader"
    assert "system:serviceaccounts" in user.groups
    assert f"system:serviceaccounts:{namespace}" in user.groups
    assert user.uid
    assert await reviewer.review("not-a-token") is None


async def test_subject_access_review_follows_rbac_for_a_metric_in_a_namespace(
    kube_api: k8s.ApiClient, namespace: str
) -> None:
    alice = UserInfo(name=f"alice-{namespace}", groups=("system:authenticated",))
    here = request_attributes("GET", f"/apis/{GROUP}/v1beta1/namespaces/{namespace}/tgi_queue_size", {})
    elsewhere = request_attributes("GET", f"/apis/{GROUP}/v1beta1/namespaces/default/tgi_queue_size", {})
    other_metric = request_attributes("GET", f"/apis/{GROUP}/v1beta1/namespaces/{namespace}/vllm_x", {})
    reviewer = KubeAccessReviewer(ApiKubeClient(kube_api))
    assert not (await reviewer.review(alice, here)).allowed

    admin = ApiKubeClient(kube_api)
    await admin.create(
        ROLE,
        namespace,
        {
            "apiVersion": ROLE.api_version,
            "kind": ROLE.kind,
            "metadata": {"name": "read-queue"},
            "rules": [{"apiGroups": [GROUP], "resources": ["tgi_queue_size"], "verbs": ["list"]}],
        },
    )
    await admin.create(
        ROLE_BINDING,
        namespace,
        {
            "apiVersion": ROLE_BINDING.api_version,
            "kind": ROLE_BINDING.kind,
            "metadata": {"name": "alice-reads-queue"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-queue"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": alice.name}],
        },
    )

    async def granted() -> bool:
        return (await reviewer.review(alice, here)).allowed

    await wait_for(granted, timeout=15, what="RBAC to grant the new RoleBinding")
    assert not (await reviewer.review(alice, elsewhere)).allowed
    assert not (await reviewer.review(alice, other_metric)).allowed
    discovery = request_attributes("GET", f"/apis/{GROUP}/v1beta1", {})
    assert (await reviewer.review(alice, discovery)).allowed  # system:discovery


async def test_a_review_forbidden_by_rbac_reports_the_api_servers_status_and_reason(
    kube_api: k8s.ApiClient, namespace: str
) -> None:
    # A ServiceAccount without the adapter's ClusterRole may not create SubjectAccessReviews: the
    # failure must say so (status, reason, message), not just name an exception class.
    token = await _service_account_token(kube_api, namespace, "no-review-rights")
    configuration = k8s.Configuration(
        host=kube_api.configuration.host,
        api_key={"BearerToken": token},
        api_key_prefix={"BearerToken": "Bearer"},
    )
    configuration.ssl_ca_cert = kube_api.configuration.ssl_ca_cert
    unprivileged = k8s.ApiClient(configuration)
    try:
        reviewer = KubeAccessReviewer(ApiKubeClient(unprivileged))
        attrs = request_attributes("GET", f"/apis/{GROUP}/v1beta1/namespaces/{namespace}/tgi_queue_size", {})
        with pytest.raises(ReviewUnavailableError) as failure:
            await reviewer.review(UserInfo(name="alice", groups=("system:authenticated",)), attrs)
    finally:
        await unprivileged.close()
    message = str(failure.value)
    assert message.startswith("SubjectAccessReview failed: 403 Forbidden: ")
    assert "subjectaccessreviews" in message
    assert f"system:serviceaccount:{namespace}:no-review-rights" in message
