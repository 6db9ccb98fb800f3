"""Server-side apply of one service's objects, ownership labels, drift fingerprints and pruning.

Server-side apply (``fieldManager=tgi-autoscaler``, ``force=true``) is what makes the controller
safe next to other writers: the API server records which fields this manager set, so a re-apply

- reverts a manual change to a field the controller set (``force`` takes ownership back),
- leaves fields it never set alone (an annotation a user added, ``spec.replicas`` written by the
  HPA through the scale subresource: the rendered Deployment never contains ``spec.replicas``),
- removes fields it set before and no longer renders.

Every applied object is labelled with its owning service ConfigMap
(``tgi-autoscaler.io/owner-namespace``/``owner-name``). In the ConfigMap's namespace the
ownerReference lets the garbage collector delete the object with the ConfigMap; in another
namespace (the Grafana dashboard ConfigMap) an ownerReference is not allowed, so the labels are how
the controller finds the object to delete it itself.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from tgi_autoscaler.config.constants import LABEL_OWNER_NAME, LABEL_OWNER_NAMESPACE
from tgi_autoscaler.controller.resources import resource_for
from tgi_autoscaler.kube.client import KubeClient, KubeObject
from tgi_autoscaler.kube.errors import ApiError
from tgi_autoscaler.kube.resources import HPA
from tgi_autoscaler.kube.watch import ObjectKey

__all__ = [
    "REJECTED_STATUSES",
    "AppliedObject",
    "Change",
    "ObjectRef",
    "RejectedObject",
    "apply_objects",
    "fingerprint",
    "owner_of",
    "prepare",
    "project",
    "ref_of",
]

Change = Literal["created", "updated", "unchanged"]

# Statuses meaning "this object's content is not acceptable": reported like an invalid spec.
REJECTED_STATUSES = frozenset({400, 422})


@dataclass(frozen=True, order=True)
class ObjectRef:
    """Identifies one object across kinds: ``Deployment/ns/name``."""

    kind: str
    namespace: str
    name: str
    api_version: str = ""

    def __str__(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"


def ref_of(obj: Mapping[str, Any]) -> ObjectRef:
    meta = obj.get("metadata") or {}
    return ObjectRef(
        kind=str(obj.get("kind", "")),
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name", "")),
        api_version=str(obj.get("apiVersion", "")),
    )


def owner_of(obj: Mapping[str, Any]) -> ObjectKey | None:
    """The service ConfigMap that owns ``obj``: from the owner labels, else a controller ownerReference."""
    meta = obj.get("metadata") or {}
    labels = meta.get("labels") or {}
    name = labels.get(LABEL_OWNER_NAME)
    if name:
        return ObjectKey(str(labels.get(LABEL_OWNER_NAMESPACE) or meta.get("namespace") or ""), str(name))
    for ref in meta.get("ownerReferences") or ():
        if ref.get("controller") and ref.get("kind") == "ConfigMap" and ref.get("apiVersion") == "v1":
            return ObjectKey(str(meta.get("namespace") or ""), str(ref.get("name")))
    return None


def prepare(objects: Iterable[Mapping[str, Any]], owner: ObjectKey) -> list[KubeObject]:
    """Copies of the rendered objects carrying the owner labels; ownerReferences only in-namespace."""
    prepared: list[KubeObject] = []
    for obj in objects:
        copied: KubeObject = copy.deepcopy(dict(obj))
        meta = copied.setdefault("metadata", {})
        labels = meta.setdefault("labels", {})
        labels[LABEL_OWNER_NAMESPACE] = owner.namespace
        labels[LABEL_OWNER_NAME] = owner.name
        if meta.get("namespace", owner.namespace) != owner.namespace:
            # An ownerReference to an object in another namespace is invalid and the garbage
            # collector would treat the owner as absent and delete this object straight away.
            meta.pop("ownerReferences", None)
        prepared.append(copied)
    return prepared


def project(live: Any, desired: Any) -> Any:
    """The part of ``live`` at the paths ``desired`` sets: what the controller manages.

    Mappings keep only the keys of ``desired``; lists of the same length are projected element by
    element; anything else (a list that grew or shrank, a scalar) is kept whole, so a change there
    shows up. Server-side defaults, status, and fields other managers own fall away.
    """
    if isinstance(desired, Mapping):
        if not isinstance(live, Mapping):
            return live
        return {key: project(live.get(key), value) for key, value in desired.items()}
    if isinstance(desired, list):
        if not isinstance(live, list) or len(live) != len(desired):
            return live
        return [project(item, want) for item, want in zip(live, desired, strict=True)]
    return live


def fingerprint(live: Mapping[str, Any], desired: Mapping[str, Any], *, with_replicas: bool = True) -> str:
    """A digest of what the controller manages in ``live`` (see ``project``).

    The controller records the fingerprint of each apply response and ignores watch events whose
    fingerprint matches: its own writes echoed back, or changes to fields it does not manage (the
    Deployment controller's revision annotation, ``spec.replicas`` set by the HPA, status). The HPA's
    replica counts are included (unless ``with_replicas`` is false) because the status annotation
    reports them.
    """
    basis: dict[str, Any] = {
        "managed": project(live, desired),
        "deleting": "deletionTimestamp" in (live.get("metadata") or {}),
    }
    if with_replicas and live.get("kind") == HPA.kind:
        status = live.get("status") or {}
        basis["replicas"] = (status.get("currentReplicas"), status.get("desiredReplicas"))
    encoded = json.dumps(basis, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(encoded.encode()).hexdigest()[:20]


@dataclass(frozen=True)
class AppliedObject:
    ref: ObjectRef
    change: Change
    object: KubeObject  # the API server's response: the object as stored


@dataclass(frozen=True)
class RejectedObject(Exception):
    """The API server refused an object permanently (4xx): names the object and the fields."""

    ref: ObjectRef
    error: ApiError

    def __str__(self) -> str:
        if self.error.causes:
            fields = "; ".join(f"{c.field}: {c.message}" if c.field else c.message for c in self.error.causes)
        else:
            fields = self.error.message
        return (
            f"{self.ref.kind} {self.ref.namespace}/{self.ref.name} rejected ({self.error.reason}): {fields}"
        )


async def apply_objects(
    client: KubeClient,
    objects: Sequence[KubeObject],
    *,
    field_manager: str,
    known_versions: Callable[[ObjectRef], Iterable[str]],
    dry_run: bool = False,
    concurrency: int = 8,
) -> list[AppliedObject]:
    """Apply ``objects`` concurrently; results in input order. ``known_versions`` of an object are
    the resourceVersions meaning "unchanged".

    The objects of one service do not depend on each other for admission, so sending them at once
    turns a reconcile's latency from the sum of the round trips into roughly the slowest one.

    The API server refusing an object's content (400, 422: schema, CEL rules, webhooks) is raised
    as ``RejectedObject`` naming the object and fields; every other error propagates unchanged for
    the retry policy (transient) or the error report (403 and other permanent failures).
    """
    for obj in objects:
        resource_for(obj)  # fail early and clearly on a kind this controller cannot manage
    limit = asyncio.Semaphore(concurrency)

    async def one(obj: KubeObject) -> AppliedObject:
        ref = ref_of(obj)
        # Read before the write: the watch may deliver our own change while the request is in flight.
        versions = set(known_versions(ref))
        async with limit:
            try:
                response = await client.apply(obj, field_manager=field_manager, force=True, dry_run=dry_run)
            except ApiError as exc:
                if exc.status in REJECTED_STATUSES:
                    raise RejectedObject(ref, exc) from exc
                raise
        rv = str((response.get("metadata") or {}).get("resourceVersion", ""))
        change: Change
        if not versions:
            change = "created"
        elif rv in versions:
            change = "unchanged"
        else:
            change = "updated"
        return AppliedObject(ref=ref, change=change, object=response)

    results = await asyncio.gather(*(one(obj) for obj in objects), return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        # A rejection says what to fix; report it in preference to a transient error next to it.
        raise next((f for f in failures if isinstance(f, RejectedObject)), failures[0])
    return [r for r in results if isinstance(r, AppliedObject)]
