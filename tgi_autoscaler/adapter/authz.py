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
from kubernetes_asyncio import client

from tgi_autoscaler.adapter.authn import ReviewUnavailableError, UserInfo
from tgi_autoscaler.adapter.cache import CacheOutcome, SingleFlightCache
from tgi_autoscaler.k8s.names import go_quote

__all__ = [
    "AccessReviewer",
    "Authorizer",
    "Decision",
    "KubeAccessReviewer",
    "RequestAttributes",
    "forbidden_message",
    "request_attributes",
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

    def __init__(self, api_client: Any) -> None:
        self._api = client.AuthorizationV1Api(api_client)

    async def review(self, user: UserInfo, attrs: RequestAttributes) -> Decision:
        spec = client.V1SubjectAccessReviewSpec(
            user=user.name,
            uid=user.uid or None,
            groups=list(user.groups) or None,
            extra=user.extra_dict() or None,
        )
        if attrs.resource_request:
            spec.resource_attributes = client.V1ResourceAttributes(
                verb=attrs.verb,
                group=attrs.api_group,
                version=attrs.api_version,
                resource=attrs.resource,
                subresource=attrs.subresource or None,
                namespace=attrs.namespace or None,
                name=attrs.name or None,
            )
        else:
            spec.non_resource_attributes = client.V1NonResourceAttributes(path=attrs.path, verb=attrs.verb)
        try:
            result = await self._api.create_subject_access_review(client.V1SubjectAccessReview(spec=spec))
        except Exception as exc:
            raise ReviewUnavailableError(f"SubjectAccessReview failed: {type(exc).__name__}") from exc
        status = result.status
        if status is None:
            raise ReviewUnavailableError("SubjectAccessReview returned no status")
        if status.evaluation_error:
            log.warning("subject_access_review_evaluation_error", error=status.evaluation_error)
        return Decision(allowed=bool(status.allowed) and not status.denied, reason=status.reason or "")


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
