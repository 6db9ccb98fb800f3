"""Authorization: request attributes, kube-apiserver's forbidden wording and the review cache."""

from __future__ import annotations

import asyncio

import pytest

from tgi_autoscaler.adapter.authn import ReviewUnavailableError, UserInfo
from tgi_autoscaler.adapter.authz import (
    Authorizer,
    Decision,
    RequestAttributes,
    forbidden_message,
    request_attributes,
    subject_access_review,
)

pytestmark = pytest.mark.unit

GROUP = "external.metrics.k8s.io"
HPA = UserInfo(
    name="system:serviceaccount:kube-system:horizontal-pod-autoscaler", groups=("system:serviceaccounts",)
)
BOB = UserInfo(name="bob", groups=("system:authenticated",))


def test_an_external_metric_read_is_a_namespaced_list_of_the_metric() -> None:
    attrs = request_attributes(
        "GET", f"/apis/{GROUP}/v1beta1/namespaces/llm/tgi_queue_size", {"labelSelector": "a=b"}
    )
    assert attrs == RequestAttributes(
        verb="list",
        path=f"/apis/{GROUP}/v1beta1/namespaces/llm/tgi_queue_size",
        resource_request=True,
        api_group=GROUP,
        api_version="v1beta1",
        namespace="llm",
        resource="tgi_queue_size",
    )


@pytest.mark.parametrize(
    ("method", "path", "query", "expected"),
    [
        ("GET", f"/apis/{GROUP}/v1beta1", {}, ("get", False, "", "", "")),
        ("GET", f"/apis/{GROUP}", {}, ("get", False, "", "", "")),
        ("GET", "/apis", {}, ("get", False, "", "", "")),
        ("GET", "/openapi/v2", {}, ("get", False, "", "", "")),
        ("GET", f"/apis/{GROUP}/v1beta1/namespaces/llm/m/name", {}, ("get", True, "llm", "m", "name")),
        (
            "GET",
            f"/apis/{GROUP}/v1beta1/namespaces/llm/m",
            {"watch": "true"},
            ("watch", True, "llm", "m", ""),
        ),
        ("GET", f"/apis/{GROUP}/v1beta1/m", {}, ("list", True, "", "m", "")),
        ("GET", f"/apis/{GROUP}/v1beta1/namespaces/llm", {}, ("get", True, "llm", "namespaces", "llm")),
        ("POST", f"/apis/{GROUP}/v1beta1/namespaces/llm/m", {}, ("create", True, "llm", "m", "")),
        ("DELETE", f"/apis/{GROUP}/v1beta1/namespaces/llm/m", {}, ("deletecollection", True, "llm", "m", "")),
        ("GET", "/api/v1/namespaces/llm/pods", {}, ("list", True, "llm", "pods", "")),
    ],
)
def test_attributes_follow_kube_apiserver_request_info(
    method: str, path: str, query: dict[str, str], expected: tuple[str, bool, str, str, str]
) -> None:
    a = request_attributes(method, path, query)
    assert (a.verb, a.resource_request, a.namespace, a.resource, a.name) == expected


def test_forbidden_wording_for_a_metric_matches_kube_apiserver() -> None:
    attrs = request_attributes("GET", f"/apis/{GROUP}/v1beta1/namespaces/llm/tgi_queue_size", {})
    assert forbidden_message(BOB, attrs) == (
        'tgi_queue_size.external.metrics.k8s.io is forbidden: User "bob" cannot list resource '
        '"tgi_queue_size" in API group "external.metrics.k8s.io" in the namespace "llm"'
    )


def test_forbidden_wording_for_a_path_and_with_a_reason() -> None:
    attrs = request_attributes("GET", f"/apis/{GROUP}/v1beta1", {})
    assert forbidden_message(BOB, attrs, "no RBAC policy matched") == (
        'forbidden: User "bob" cannot get path "/apis/external.metrics.k8s.io/v1beta1": '
        "no RBAC policy matched"
    )


def test_forbidden_wording_at_the_cluster_scope_with_a_name() -> None:
    attrs = request_attributes("GET", f"/apis/{GROUP}/v1beta1/m/x", {})
    assert forbidden_message(UserInfo(name='q"uote'), attrs) == (
        'm.external.metrics.k8s.io "x" is forbidden: User "q\\"uote" cannot get resource "m" '
        'in API group "external.metrics.k8s.io" at the cluster scope'
    )


class FakeClock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


class FakeAccessReviewer:
    """A policy table standing in for kube-apiserver's RBAC; counts the reviews it answers."""

    def __init__(self, allowed: set[tuple[str, str, str]]) -> None:
        self.allowed = allowed  # (user, verb, resource)
        self.calls: list[tuple[str, RequestAttributes]] = []
        self.fail = False
        self.gate: asyncio.Event | None = None

    async def review(self, user: UserInfo, attrs: RequestAttributes) -> Decision:
        self.calls.append((user.name, attrs))
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise ReviewUnavailableError("SubjectAccessReview failed: ServerDisconnectedError")
        ok = (user.name, attrs.verb, attrs.resource) in self.allowed
        return Decision(ok, "" if ok else "no RBAC policy matched")


METRIC = request_attributes("GET", f"/apis/{GROUP}/v1beta1/namespaces/llm/tgi_queue_size", {})
OTHER_NS = request_attributes("GET", f"/apis/{GROUP}/v1beta1/namespaces/other/tgi_queue_size", {})


def _authz(reviewer: FakeAccessReviewer, clock: FakeClock) -> Authorizer:
    return Authorizer(reviewer, allow_ttl_s=10.0, deny_ttl_s=10.0, clock=clock)


async def test_allow_answers_are_cached_for_ten_seconds() -> None:
    clock, reviewer = FakeClock(), FakeAccessReviewer({(HPA.name, "list", "tgi_queue_size")})
    authz = _authz(reviewer, clock)
    first = await authz.authorize(HPA, METRIC)
    assert first == (Decision(True, ""), False)
    clock.now += 9.9
    assert await authz.authorize(HPA, METRIC) == (Decision(True, ""), True)
    assert len(reviewer.calls) == 1
    clock.now += 0.2
    assert await authz.authorize(HPA, METRIC) == (Decision(True, ""), False)
    assert len(reviewer.calls) == 2


async def test_deny_answers_are_cached_too() -> None:
    clock, reviewer = FakeClock(), FakeAccessReviewer(set())
    authz = _authz(reviewer, clock)
    for _ in range(3):
        decision, _ = await authz.authorize(BOB, METRIC)
        assert decision == Decision(False, "no RBAC policy matched")
    assert len(reviewer.calls) == 1
    clock.now += 10.1
    await authz.authorize(BOB, METRIC)
    assert len(reviewer.calls) == 2


async def test_a_granted_permission_becomes_visible_once_the_deny_expires() -> None:
    clock, reviewer = FakeClock(), FakeAccessReviewer(set())
    authz = _authz(reviewer, clock)
    assert not (await authz.authorize(BOB, METRIC))[0].allowed
    reviewer.allowed.add((BOB.name, "list", "tgi_queue_size"))
    assert not (await authz.authorize(BOB, METRIC))[0].allowed  # still the cached deny
    clock.now += 10.1
    assert (await authz.authorize(BOB, METRIC))[0].allowed


async def test_answers_are_cached_per_identity_and_per_namespace() -> None:
    clock, reviewer = FakeClock(), FakeAccessReviewer({(HPA.name, "list", "tgi_queue_size")})
    authz = _authz(reviewer, clock)
    await authz.authorize(HPA, METRIC)
    await authz.authorize(HPA, OTHER_NS)
    await authz.authorize(BOB, METRIC)
    await authz.authorize(UserInfo(name=HPA.name, groups=("other",)), METRIC)
    assert len(reviewer.calls) == 4
    assert reviewer.calls[1][1].namespace == "other"


async def test_review_failures_are_errors_and_are_not_cached() -> None:
    clock, reviewer = FakeClock(), FakeAccessReviewer({(HPA.name, "list", "tgi_queue_size")})
    reviewer.fail = True
    authz = _authz(reviewer, clock)
    with pytest.raises(ReviewUnavailableError):
        await authz.authorize(HPA, METRIC)
    reviewer.fail = False
    assert (await authz.authorize(HPA, METRIC))[0].allowed
    assert len(reviewer.calls) == 2


async def test_system_masters_are_allowed_without_a_review() -> None:
    clock, reviewer = FakeClock(), FakeAccessReviewer(set())
    aggregator = UserInfo(name="system:kube-aggregator", groups=("system:masters",))
    decision, from_cache = await _authz(reviewer, clock).authorize(aggregator, METRIC)
    assert decision.allowed
    assert from_cache
    assert reviewer.calls == []


async def test_concurrent_identical_questions_share_one_review() -> None:
    clock, reviewer = FakeClock(), FakeAccessReviewer({(HPA.name, "list", "tgi_queue_size")})
    reviewer.gate = asyncio.Event()
    authz = _authz(reviewer, clock)
    tasks = [asyncio.create_task(authz.authorize(HPA, METRIC)) for _ in range(10)]
    await asyncio.sleep(0)
    reviewer.gate.set()
    results = await asyncio.gather(*tasks)
    assert all(d.allowed for d, _ in results)
    assert len(reviewer.calls) == 1


async def test_a_cancelled_first_request_does_not_cancel_the_review_others_wait_for() -> None:
    clock, reviewer = FakeClock(), FakeAccessReviewer({(HPA.name, "list", "tgi_queue_size")})
    reviewer.gate = asyncio.Event()
    authz = _authz(reviewer, clock)
    first = asyncio.create_task(authz.authorize(HPA, METRIC))
    await asyncio.sleep(0)
    second = asyncio.create_task(authz.authorize(HPA, METRIC))
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.sleep(0)
    reviewer.gate.set()
    assert await second == (Decision(True, ""), True)
    assert first.cancelled()
    assert len(reviewer.calls) == 1


async def test_allow_and_deny_answers_keep_their_own_ttls() -> None:
    clock = FakeClock()
    reviewer = FakeAccessReviewer({(HPA.name, "list", "tgi_queue_size")})
    authz = Authorizer(reviewer, allow_ttl_s=10.0, deny_ttl_s=2.0, clock=clock)
    await authz.authorize(HPA, METRIC)
    await authz.authorize(BOB, METRIC)
    clock.now += 5.0
    assert (await authz.authorize(HPA, METRIC))[1]
    assert not (await authz.authorize(BOB, METRIC))[1]
    assert [name for name, _ in reviewer.calls] == [HPA.name, BOB.name, BOB.name]


def test_the_subject_access_review_names_the_user_and_the_metric_leaving_empty_fields_out() -> None:
    attrs = request_attributes("GET", f"/apis/{GROUP}/v1beta1/namespaces/ns/tgi_queue_size", {})
    review = subject_access_review(BOB, attrs)
    assert review == {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": "bob",
            "groups": ["system:authenticated"],
            "resourceAttributes": {
                "verb": "list",
                "group": GROUP,
                "version": "v1beta1",
                "resource": "tgi_queue_size",
                "namespace": "ns",
            },
        },
    }
    discovery = subject_access_review(BOB, request_attributes("GET", f"/apis/{GROUP}/v1beta1", {}))
    assert discovery["spec"]["nonResourceAttributes"] == {"path": f"/apis/{GROUP}/v1beta1", "verb": "get"}
