"""OpenAPI v2 and v3 documents of the served metrics, for kube-aggregator to merge and publish.

kube-aggregator downloads ``/openapi/v2`` and the ``/openapi/v3`` index from every APIService
backend; ``kubectl explain`` and client generators read the merged result. Each metric gets its own
path (its description shows up there). Schema names live under this group's own prefix and the
standard types (Quantity, Time) are written inline, so merging never collides with another server's
definitions. The v3 group-version document is addressed by content hash like kube-openapi does:
``?hash=`` of the current document is cacheable forever, a stale hash is redirected.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, Final

from tgi_autoscaler.adapter.discovery import GROUP, GROUP_VERSION, LIST_KIND, VERSION
from tgi_autoscaler.config.metrics import MetricDefinition

__all__ = ["V3_GROUP_VERSION_PATH", "content_hash", "openapi_v2", "openapi_v3", "openapi_v3_index"]

V3_GROUP_VERSION_PATH: Final = f"apis/{GROUP_VERSION}"
_PREFIX: Final = "io.k8s.metrics.pkg.apis.external_metrics.v1beta1"
_LIST: Final = f"{_PREFIX}.ExternalMetricValueList"
_VALUE: Final = f"{_PREFIX}.ExternalMetricValue"
_TITLE: Final = "tgi-autoscaler external metrics adapter"
_GVK: Final = {"group": GROUP, "version": VERSION, "kind": LIST_KIND}


def _schemas(ref_prefix: str) -> dict[str, Any]:
    return {
        _LIST: {
            "description": (
                "ExternalMetricValueList is a list of values for a given metric for some set labels"
            ),
            "type": "object",
            "required": ["items"],
            "properties": {
                "apiVersion": {"type": "string", "description": "APIVersion of this object."},
                "kind": {"type": "string", "description": "Kind of this object."},
                "metadata": {"type": "object", "description": "Standard list metadata."},
                "items": {
                    "type": "array",
                    "description": "value of the metric matching a given set of labels",
                    "items": {"$ref": f"{ref_prefix}{_VALUE}"},
                },
            },
            "x-kubernetes-group-version-kind": [_GVK],
        },
        _VALUE: {
            "description": "ExternalMetricValue is a metric value for external metric",
            "type": "object",
            "required": ["metricName", "metricLabels", "timestamp", "value"],
            "properties": {
                "metricName": {"type": "string", "description": "the name of the metric"},
                "metricLabels": {
                    "type": "object",
                    "additionalProperties": {"type": "string"},
                    "description": "the selector's exact-match labels",
                },
                "timestamp": {
                    "type": "string",
                    "format": "date-time",
                    "description": "indicates the time at which the metrics were produced",
                },
                "window": {
                    "type": "integer",
                    "format": "int64",
                    "description": "the window the value was computed over (absent: instantaneous)",
                },
                "value": {
                    "type": "string",
                    "description": "the value of the metric, as a Kubernetes quantity",
                },
            },
        },
    }


def _description(definition: MetricDefinition) -> str:
    text = definition.description or f"external metric {definition.name}"
    return f"{text} PromQL template: {definition.query}"


def _v2_path(definition: MetricDefinition) -> dict[str, Any]:
    return {
        "get": {
            "description": _description(definition),
            "consumes": ["*/*"],
            "produces": ["application/json"],
            "schemes": ["https"],
            "tags": [f"{GROUP}_{VERSION}"],
            "operationId": f"listExternalMetricValue_{definition.name}",
            "responses": {
                "200": {"description": "OK", "schema": {"$ref": f"#/definitions/{_LIST}"}},
                "401": {"description": "Unauthorized"},
            },
            "x-kubernetes-action": "list",
            "x-kubernetes-group-version-kind": _GVK,
        },
        "parameters": [
            {
                "name": "namespace",
                "in": "path",
                "required": True,
                "type": "string",
                "uniqueItems": True,
                "description": "object name and auth scope, such as for teams and projects",
            },
            {
                "name": "labelSelector",
                "in": "query",
                "type": "string",
                "uniqueItems": True,
                "description": "A selector to restrict the list of returned objects by their labels.",
            },
        ],
    }


def openapi_v2(definitions: Mapping[str, MetricDefinition], version: str) -> dict[str, Any]:
    """Swagger 2.0 document for ``/openapi/v2``."""
    return {
        "swagger": "2.0",
        "info": {"title": _TITLE, "version": version},
        "paths": {
            f"/apis/{GROUP_VERSION}/namespaces/{{namespace}}/{name}": _v2_path(definitions[name])
            for name in sorted(definitions)
        },
        "definitions": _schemas("#/definitions/"),
    }


def openapi_v3(definitions: Mapping[str, MetricDefinition], version: str) -> dict[str, Any]:
    """OpenAPI 3.0 document of the group version for ``/openapi/v3/apis/<group>/<version>``."""
    parameters = [
        {
            "name": "namespace",
            "in": "path",
            "required": True,
            "description": "object name and auth scope, such as for teams and projects",
            "schema": {"type": "string", "uniqueItems": True},
        },
        {
            "name": "labelSelector",
            "in": "query",
            "description": "A selector to restrict the list of returned objects by their labels.",
            "schema": {"type": "string", "uniqueItems": True},
        },
    ]
    paths = {
        f"/apis/{GROUP_VERSION}/namespaces/{{namespace}}/{name}": {
            "get": {
                "tags": [f"{GROUP}_{VERSION}"],
                "description": _description(definitions[name]),
                "operationId": f"listExternalMetricValue_{name}",
                "responses": {
                    "200": {
                        "description": "OK",
                        "content": {
                            "application/json": {"schema": {"$ref": f"#/components/schemas/{_LIST}"}}
                        },
                    },
                    "401": {"description": "Unauthorized"},
                },
                "x-kubernetes-action": "list",
                "x-kubernetes-group-version-kind": _GVK,
            },
            "parameters": parameters,
        }
        for name in sorted(definitions)
    }
    return {
        "openapi": "3.0.0",
        "info": {"title": _TITLE, "version": version},
        "paths": paths,
        "components": {"schemas": _schemas("#/components/schemas/")},
    }


def content_hash(document: Mapping[str, Any]) -> str:
    """Upper-case hex SHA-512 of the compact JSON (kube-openapi's ETag and ``?hash=``)."""
    return hashlib.sha512(json.dumps(document, separators=(",", ":")).encode()).hexdigest().upper()


def openapi_v3_index(group_version_hash: str) -> dict[str, Any]:
    """``/openapi/v3``: where each group version's document lives, pinned by hash."""
    return {
        "paths": {
            V3_GROUP_VERSION_PATH: {
                "serverRelativeURL": f"/openapi/v3/{V3_GROUP_VERSION_PATH}?hash={group_version_hash}"
            }
        }
    }
