"""API discovery documents for external.metrics.k8s.io, and Accept-header negotiation.

kube-aggregator learns what an APIService serves by asking its backend for ``/apis`` with
``Accept: application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,
application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList`` and trusts the answer only
if the response ``Content-Type`` names that GVK; otherwise it falls back to the legacy
``/apis/<group>/<version>`` ``APIResourceList``. Both are served here, shaped as the generic API
server shapes them (field order, ``metadata.creationTimestamp: null``, ``freshness``), with the
aggregated form carrying an ``ETag`` so the aggregator's periodic refresh gets a 304.

Every configured metric is a resource of the group version (``namespaced``, verb ``get``), as in
sigs.k8s.io/custom-metrics-apiserver, so ``kubectl get --raw`` and RBAC see each metric by name.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "AGGREGATED_V2",
    "AGGREGATED_V2BETA1",
    "GROUP",
    "GROUP_VERSION",
    "LIST_KIND",
    "PLAIN_JSON",
    "VERSION",
    "MediaType",
    "aggregated_discovery",
    "api_group",
    "api_group_list",
    "api_resource_list",
    "discovery_etag",
    "negotiate",
]

GROUP: Final = "external.metrics.k8s.io"
VERSION: Final = "v1beta1"
GROUP_VERSION: Final = f"{GROUP}/{VERSION}"
LIST_KIND: Final = "ExternalMetricValueList"
_DISCOVERY_GROUP: Final = "apidiscovery.k8s.io"
_DISCOVERY_KIND: Final = "APIGroupDiscoveryList"


@dataclass(frozen=True)
class MediaType:
    """A representation an endpoint can produce; ``gvk`` is the ``g``/``v``/``as`` conversion."""

    mime: str
    gvk: tuple[str, str, str] | None = None

    @property
    def content_type(self) -> str:
        """As ``generateMediaTypeWithGVK`` writes it: ``application/json;g=..;v=..;as=..``."""
        if self.gvk is None:
            return self.mime
        group, version, kind = self.gvk
        return f"{self.mime};g={group};v={version};as={kind}"


PLAIN_JSON: Final = MediaType("application/json")
AGGREGATED_V2: Final = MediaType("application/json", (_DISCOVERY_GROUP, "v2", _DISCOVERY_KIND))
AGGREGATED_V2BETA1: Final = MediaType("application/json", (_DISCOVERY_GROUP, "v2beta1", _DISCOVERY_KIND))


@dataclass(frozen=True)
class _Clause:
    type: str
    subtype: str
    params: Mapping[str, str]
    quality: float


@functools.lru_cache(maxsize=256)
def _parse_accept(header: str) -> tuple[_Clause, ...]:
    clauses: list[_Clause] = []
    for raw in header.split(","):
        parts = [part.strip() for part in raw.split(";")]
        if not parts[0]:
            continue
        kind, _, subtype = parts[0].lower().partition("/")
        params: dict[str, str] = {}
        for part in parts[1:]:
            name, _, value = part.partition("=")
            params[name.strip().lower()] = value.strip().strip('"')
        try:
            quality = float(params.pop("q", "1"))
        except ValueError:
            quality = 0.0
        clauses.append(_Clause(kind, subtype or "*", params, quality))
    # Highest quality first; the client's order breaks ties (as goautoneg's stable sort does).
    return tuple(sorted(clauses, key=lambda clause: -clause.quality))


def _matches(clause: _Clause, offer: MediaType) -> bool:
    offer_type, _, offer_subtype = offer.mime.partition("/")
    if clause.type not in ("*", offer_type) or clause.subtype not in ("*", offer_subtype):
        return False
    requested = (clause.params.get("g"), clause.params.get("v"), clause.params.get("as"))
    if any(requested):
        return offer.gvk == requested
    return offer.gvk is None


def negotiate(accept: str | None, offers: Sequence[MediaType]) -> MediaType | None:
    """The offer the client prefers, ``None`` if it accepts none (a missing header accepts JSON)."""
    if not accept or not accept.strip():
        return next((offer for offer in offers if offer.gvk is None), offers[0])
    for clause in _parse_accept(accept):
        if clause.quality <= 0:
            continue
        for offer in offers:
            if _matches(clause, offer):
                return offer
    return None


def _version_entry() -> dict[str, str]:
    return {"groupVersion": GROUP_VERSION, "version": VERSION}


def api_group() -> dict[str, Any]:
    """``/apis/external.metrics.k8s.io``: the APIGroup."""
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": GROUP,
        "versions": [_version_entry()],
        "preferredVersion": _version_entry(),
    }


def api_group_list() -> dict[str, Any]:
    """``/apis`` (legacy form): the APIGroupList of this server."""
    group = api_group()
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [{key: group[key] for key in ("name", "versions", "preferredVersion")}],
    }


def api_resource_list(metric_names: Iterable[str]) -> dict[str, Any]:
    """``/apis/external.metrics.k8s.io/v1beta1``: one namespaced, get-only resource per metric."""
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": GROUP_VERSION,
        "resources": [
            {"name": name, "singularName": "", "namespaced": True, "kind": LIST_KIND, "verbs": ["get"]}
            for name in sorted(metric_names)
        ],
    }


def aggregated_discovery(metric_names: Iterable[str], media: MediaType = AGGREGATED_V2) -> dict[str, Any]:
    """``/apis`` in the aggregated form (``APIGroupDiscoveryList``, v2 or v2beta1)."""
    assert media.gvk is not None
    resources = [
        {
            "resource": name,
            "responseKind": {"group": GROUP, "version": VERSION, "kind": LIST_KIND},
            "scope": "Namespaced",
            "singularResource": "",
            "verbs": ["get"],
        }
        for name in sorted(metric_names)
    ]
    version: dict[str, Any] = {"version": VERSION}
    if resources:
        version["resources"] = resources
    version["freshness"] = "Current"
    return {
        "kind": _DISCOVERY_KIND,
        "apiVersion": f"{media.gvk[0]}/{media.gvk[1]}",
        "metadata": {},
        "items": [
            {
                "metadata": {"name": GROUP, "creationTimestamp": None},
                "versions": [version],
            }
        ],
    }


def discovery_etag(document: dict[str, Any]) -> str:
    """Quoted ETag: upper-case hex SHA-512 of the compact JSON, as the API server computes it."""
    digest = hashlib.sha512(json.dumps(document, separators=(",", ":")).encode()).hexdigest().upper()
    return f'"{digest}"'
