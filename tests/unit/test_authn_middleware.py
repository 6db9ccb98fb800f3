"""The security middleware: open health paths, 401 and 403 bodies as kube-apiserver writes them.

Requests carry the server side of a real in-memory TLS handshake, so the middleware reads a genuine
peer certificate exactly as it does from a live connection.
"""

from __future__ import annotations

import json
import ssl
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.unit.x509_factory import Issued, client_context, handshake, issue, make_ca
from tgi_autoscaler.adapter.authn import Authenticator, ReviewUnavailableError, UserInfo
from tgi_autoscaler.adapter.authz import Authorizer, Decision, RequestAttributes
from tgi_autoscaler.adapter.requestheader import RequestHeaderConfig, parse_request_header_config
from tgi_autoscaler.adapter.security import USER_KEY, security_middleware
from tgi_autoscaler.adapter.tls import ServingTLS

pytestmark = pytest.mark.unit

METRIC_PATH = "/apis/external.metrics.k8s.io/v1beta1/namespaces/llm/tgi_queue_size"
PROXY_CA = make_ca("front-proxy-ca")
PROXY = issue(PROXY_CA, "front-proxy-client")
SERVING_CA = make_ca("serving-ca")
SERVING = issue(SERVING_CA, "adapter", usages=(ExtendedKeyUsageOID.SERVER_AUTH,), sans=("adapter",))
CONFIG = parse_request_header_config(
    {
        "requestheader-client-ca-file": PROXY_CA.cert_pem.decode(),
        "requestheader-allowed-names": '["front-proxy-client"]',
        "requestheader-username-headers": '["X-Remote-User"]',
        "requestheader-group-headers": '["X-Remote-Group"]',
        "requestheader-extra-headers-prefix": '["X-Remote-Extra-"]',
    }
)


class FakeTransport:
    """What aiohttp's request exposes of the connection: the SSL object of a real handshake."""

    def __init__(self, ssl_object: ssl.SSLObject) -> None:
        self._ssl_object = ssl_object

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._ssl_object if name == "ssl_object" else default


async def _transport(client: Issued | None) -> FakeTransport:
    tls = ServingTLS(SERVING.pair)
    await tls.set_client_ca(PROXY_CA.cert_pem)
    result = handshake(
        tls.listener_context, client_context(trust=SERVING_CA.cert_pem, client=client), "adapter"
    )
    return FakeTransport(result.server_side)


class PolicyReviewer:
    def __init__(self, allowed_users: set[str], *, fail: bool = False) -> None:
        self.allowed_users = allowed_users
        self.fail = fail
        self.asked: list[tuple[UserInfo, RequestAttributes]] = []

    async def review(self, user: UserInfo, attrs: RequestAttributes) -> Decision:
        self.asked.append((user, attrs))
        if self.fail:
            raise ReviewUnavailableError("SubjectAccessReview failed: ClientConnectorError")
        return Decision(user.name in self.allowed_users)


class NoTokens:
    async def review(self, token: str) -> UserInfo | None:
        return None


def _middleware(reviewer: PolicyReviewer, config: RequestHeaderConfig | None = CONFIG) -> Any:
    return security_middleware(Authenticator(lambda: config, NoTokens()), Authorizer(reviewer))


async def _call(
    middleware: Any, path: str, headers: dict[str, str], client: Issued | None
) -> tuple[web.StreamResponse, list[UserInfo]]:
    seen: list[UserInfo] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        user = request.get(USER_KEY)
        if user is not None:
            seen.append(user)
        return web.Response(text="served")

    request = make_mocked_request("GET", path, headers=headers, transport=await _transport(client))
    return await middleware(request, handler), seen


def _body(response: web.StreamResponse) -> Any:
    assert isinstance(response, web.Response)
    assert response.body is not None
    return json.loads(bytes(response.body))  # type: ignore[arg-type]


@pytest.mark.parametrize("path", ["/healthz", "/livez", "/readyz"])
async def test_health_endpoints_need_no_credentials(path: str) -> None:
    response, _ = await _call(_middleware(PolicyReviewer(set())), path, {}, None)
    assert response.status == 200


async def test_a_forged_identity_without_a_client_certificate_gets_kubernetes_401() -> None:
    reviewer = PolicyReviewer({"system:admin"})
    response, seen = await _call(
        _middleware(reviewer),
        METRIC_PATH,
        {"X-Remote-User": "system:admin", "X-Remote-Group": "system:masters"},
        None,
    )
    assert response.status == 401
    assert _body(response) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "Unauthorized",
        "reason": "Unauthorized",
        "code": 401,
    }
    assert seen == []
    assert reviewer.asked == []


async def test_the_healthz_prefix_does_not_open_other_paths() -> None:
    response, _ = await _call(_middleware(PolicyReviewer(set())), "/healthz/../apis", {}, None)
    assert response.status == 401


async def test_an_aggregated_request_without_rbac_gets_kubernetes_403() -> None:
    reviewer = PolicyReviewer(set())
    response, seen = await _call(_middleware(reviewer), METRIC_PATH, {"X-Remote-User": "bob"}, PROXY)
    assert response.status == 403
    assert _body(response) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'tgi_queue_size.external.metrics.k8s.io is forbidden: User "bob" cannot list resource '
        '"tgi_queue_size" in API group "external.metrics.k8s.io" in the namespace "llm"',
        "reason": "Forbidden",
        "details": {"group": "external.metrics.k8s.io", "kind": "tgi_queue_size"},
        "code": 403,
    }
    assert seen == []
    user, attrs = reviewer.asked[0]
    assert user == UserInfo(name="bob", groups=("system:authenticated",))
    assert (attrs.verb, attrs.api_group, attrs.resource, attrs.namespace) == (
        "list",
        "external.metrics.k8s.io",
        "tgi_queue_size",
        "llm",
    )


async def test_an_authorized_aggregated_request_reaches_the_handler_with_its_user() -> None:
    response, seen = await _call(
        _middleware(PolicyReviewer({"hpa"})),
        METRIC_PATH,
        {"X-Remote-User": "hpa", "X-Remote-Group": "system:serviceaccounts"},
        PROXY,
    )
    assert response.status == 200
    assert seen == [UserInfo(name="hpa", groups=("system:serviceaccounts", "system:authenticated"))]


async def test_a_proxy_certificate_with_a_name_outside_the_allowed_list_is_401() -> None:
    impostor = issue(PROXY_CA, "kubelet")
    response, _ = await _call(
        _middleware(PolicyReviewer({"hpa"})), METRIC_PATH, {"X-Remote-User": "hpa"}, impostor
    )
    assert response.status == 401


async def test_before_the_front_proxy_settings_load_aggregated_requests_are_401() -> None:
    response, _ = await _call(
        _middleware(PolicyReviewer({"hpa"}), config=None), METRIC_PATH, {"X-Remote-User": "hpa"}, PROXY
    )
    assert response.status == 401


async def test_an_authorization_outage_is_a_500_not_an_allow() -> None:
    response, seen = await _call(
        _middleware(PolicyReviewer({"hpa"}, fail=True)), METRIC_PATH, {"X-Remote-User": "hpa"}, PROXY
    )
    assert response.status == 500
    body = _body(response)
    assert body["reason"] == "InternalError"
    assert "SubjectAccessReview failed" in body["message"]
    assert seen == []
