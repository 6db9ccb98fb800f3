"""May this user do this: SubjectAccessReviews against kube-apiserver, cached briefly.

Authorization is delegated the way Kubernetes' generic API server delegates it. A request is
described by the same attributes kube-apiserver's RequestInfo derives from the URL: an
external metric read such as ``GET /apis/external.metrics.k8s.io/v1beta1/namespaces/ns/tgi_queue_size``
is verb ``list`` on resource ``tgi_queue_size`` in group ``external.metrics.k8s.io`` and namespace
``ns``, which is what the ClusterRole granted to the HPA controller names; anything shorter
(discovery) is a non-resource path with the HTTP method as verb.

Members of ``system:masters`` are always allowed, as in the generic API server; the aggregator's
availability probe identifies itself that way. Allow and deny answers are each cached for a short
TTL (10 s by default) per identity and attributes; a failed review is never cached.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from tgi_autoscaler.adapter.authn import ReviewUnavailableError, UserInfo
from tgi_autoscaler.adapter.cache import CacheOutcome, SingleFlightCache
from tgi_autoscaler.k8s.names import go_quote
from tgi_autoscaler.kube.client import KubeClient
from tgi_autoscaler.kube.errors import describe
from tgi_autoscaler.kube.resources import SUBJECT_ACCESS_REVIEW

__all__ = [
    "AccessReviewer",
    "Authorizer",
    "Decision",
    "KubeAccessReviewer",
    "RequestAttributes",
    "forbidden_message",
    "request_attributes",
    "subject_access_review",
]

log = structlog.get_logger(__name__)

DEFAULT_ALLOW_TTL_S = 10.0
DEFAULT_DENY_TTL_S = 10.0
DEFAULT_ALWAYS_ALLOW_GROUPS = ("system:masters",)

_RESOURCE_VERBS = {
    "GET": "get",
    "HEAD": "get",
    "POST": "create",
    "PUT": "update",
    "PATCH": "patch",
    "DELETE": "delete",
}


@dataclass(frozen=True)
class RequestAttributes:
    """What a request does, in the terms of Kubernetes authorization."""

    verb: str
    path: str
    resource_request: bool
    api_group: str = ""
    api_version: str = ""
    namespace: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""


def request_attributes(method: str, path: str, query: Mapping[str, str]) -> RequestAttributes:
    """Derive attributes from the URL the way kube-apiserver's RequestInfoFactory does."""
    parts = [p for p in path.strip("/").split("/") if p]
    non_resource = RequestAttributes(verb=method.lower(), path=path, resource_request=False)
    if len(parts) < 3 or parts[0] not in ("api", "apis"):
        return non_resource
    prefix, rest = parts[0], parts[1:]
    group = ""
    if prefix == "apis":
        if len(rest) < 3:
            return non_resource  # /apis/<group>/<version>: discovery
        group, rest = rest[0], rest[1:]
    version, rest = rest[0], rest[1:]
    verb = _RESOURCE_VERBS.get(method.upper(), method.lower())
    namespace = ""
    if len(rest) > 1 and rest[0] == "namespaces":
        namespace = rest[1]
        if len(rest) > 2:  # a resource inside the namespace, not the namespace object itself
            rest = rest[2:]
    resource = rest[0] if rest else ""
    name = rest[1] if len(rest) >= 2 else ""
    subresource = rest[2] if len(rest) >= 3 else ""
    if not name and verb == "get":
        verb = "watch" if query.get("watch", "").lower() in ("1", "true") else "list"
    elif not name and verb == "delete":
        verb = "deletecollection"
    return RequestAttributes(
        verb=verb,
        path=path,
        resource_request=True,
        api_group=group,
        api_version=version,
        namespace=namespace,
        resource=resource,
        subresource=subresource,
        name=name,
    )


def forbidden_message(user: UserInfo, attrs: RequestAttributes, reason: str = "") -> str:
    """kube-apiserver's wording for a 403, so clients and people see the familiar message."""
    if not attrs.resource_request:
        message = f"forbidden: User {go_quote(user.name)} cannot {attrs.verb} path {go_quote(attrs.path)}"
    else:
        resource = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
        where = f"in the namespace {go_quote(attrs.namespace)}" if attrs.namespace else "at the cluster scope"
        detail = (
            f"User {go_quote(user.name)} cannot {attrs.verb} resource {go_quote(resource)} "
            f"in API group {go_quote(attrs.api_group)} {where}"
        )
        qualified = f"{attrs.resource}.{attrs.api_group}" if attrs.api_group else attrs.resource
        subject = f"{qualified} {go_quote(attrs.name)}" if attrs.name else qualified
        message = f"{subject} is forbidden: {detail}"
    return f"{message}: {reason}" if reason else message


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""


class AccessReviewer(Protocol):
    async def review(self, user: UserInfo, attrs: RequestAttributes) -> Decision:
        """kube-apiserver's answer; raises :class:`ReviewUnavailableError` when it cannot answer."""
        ...


class KubeAccessReviewer:
    """:class:`AccessReviewer` backed by ``authorization.k8s.io/v1`` SubjectAccessReview."""

    def __init__(self, client: KubeClient) -> None:
        self._client = client

    async def review(self, user: UserInfo, attrs: RequestAttributes) -> Decision:
        try:
            result = await self._client.create(
                SUBJECT_ACCESS_REVIEW, None, subject_access_review(user, attrs)
            )
        except Exception as exc:
            raise ReviewUnavailableError(f"SubjectAccessReview failed: {describe(exc)}") from exc
        status = result.get("status")
        if not isinstance(status, dict):
            raise ReviewUnavailableError("SubjectAccessReview returned no status")
        if status.get("evaluationError"):
            log.warning("subject_access_review_evaluation_error", error=status["evaluationError"])
        allowed = bool(status.get("allowed")) and not status.get("denied")
        return Decision(allowed=allowed, reason=str(status.get("reason") or ""))


def subject_access_review(user: UserInfo, attrs: RequestAttributes) -> dict[str, Any]:
    """The SubjectAccessReview asking whether ``user`` may do ``attrs``; empty fields are left out."""
    spec: dict[str, Any] = _present(
        user=user.name, uid=user.uid, groups=list(user.groups), extra=user.extra_dict()
    )
    if attrs.resource_request:
        spec["resourceAttributes"] = {
            "verb": attrs.verb,
            "group": attrs.api_group,
            "version": attrs.api_version,
            "resource": attrs.resource,
            **_present(subresource=attrs.subresource, namespace=attrs.namespace, name=attrs.name),
        }
    else:
        spec["nonResourceAttributes"] = {"path": attrs.path, "verb": attrs.verb}
    return {"apiVersion": SUBJECT_ACCESS_REVIEW.api_version, "kind": SUBJECT_ACCESS_REVIEW.kind, "spec": spec}


def _present(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v}


class Authorizer:
    """Answers authorization questions from a short-lived cache, asking kube-apiserver on a miss."""

    def __init__(
        self,
        reviewer: AccessReviewer,
        *,
        allow_ttl_s: float = DEFAULT_ALLOW_TTL_S,
        deny_ttl_s: float = DEFAULT_DENY_TTL_S,
        always_allow_groups: Sequence[str] = DEFAULT_ALWAYS_ALLOW_GROUPS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._reviewer = reviewer
        self._always_allow = frozenset(always_allow_groups)
        self._cache: SingleFlightCache[tuple[UserInfo, RequestAttributes], Decision] = SingleFlightCache(
            allow_ttl_s,
            ttl_of=lambda d: allow_ttl_s if d.allowed else deny_ttl_s,
            clock=clock,
        )

    async def authorize(self, user: UserInfo, attrs: RequestAttributes) -> tuple[Decision, bool]:
        """The decision and whether it was served without a new review."""
        if self._always_allow.intersection(user.groups):
            return Decision(True, "member of an always-allowed group"), True
        decision, outcome = await self._cache.get((user, attrs), lambda: self._reviewer.review(user, attrs))
        return decision, outcome is not CacheOutcome.MISS
