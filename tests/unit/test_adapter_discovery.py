"""Discovery documents and Accept negotiation, as kube-aggregator and clients expect them."""

from __future__ import annotations

import pytest

from tgi_autoscaler.adapter.discovery import (
    AGGREGATED_V2,
    AGGREGATED_V2BETA1,
    PLAIN_JSON,
    aggregated_discovery,
    api_resource_list,
    discovery_etag,
    negotiate,
)
from tgi_autoscaler.adapter.openapi import content_hash, openapi_v2, openapi_v3, openapi_v3_index
from tgi_autoscaler.config.metrics import MetricsConfig

pytestmark = pytest.mark.unit

AGGREGATOR_ACCEPT = (
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
)
OFFERS = (AGGREGATED_V2, AGGREGATED_V2BETA1, PLAIN_JSON)


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, PLAIN_JSON),
        ("", PLAIN_JSON),
        ("application/json", PLAIN_JSON),
        ("*/*", PLAIN_JSON),
        ("application/json, */*", PLAIN_JSON),
        (AGGREGATOR_ACCEPT, AGGREGATED_V2),
        (AGGREGATOR_ACCEPT + ",application/json", AGGREGATED_V2),
        ("application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList", AGGREGATED_V2BETA1),
        ("application/json;as=Table;v=v1;g=meta.k8s.io,application/json", PLAIN_JSON),
        (
            "application/json;q=0.5, application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
            AGGREGATED_V2,
        ),
        ("application/vnd.kubernetes.protobuf", None),
        ("text/html", None),
        ("application/json;q=0", None),
    ],
)
def test_accept_negotiation(accept: str | None, expected: object) -> None:
    assert negotiate(accept, OFFERS) == expected


def test_aggregated_content_type_names_the_gvk_the_aggregator_checks() -> None:
    assert (
        AGGREGATED_V2.content_type == "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    )
    assert AGGREGATED_V2BETA1.content_type.endswith(";v=v2beta1;as=APIGroupDiscoveryList")


def test_resource_list_has_one_get_only_namespaced_resource_per_metric() -> None:
    assert api_resource_list(["b", "a"])["resources"] == [
        {
            "name": "a",
            "singularName": "",
            "namespaced": True,
            "kind": "ExternalMetricValueList",
            "verbs": ["get"],
        },
        {
            "name": "b",
            "singularName": "",
            "namespaced": True,
            "kind": "ExternalMetricValueList",
            "verbs": ["get"],
        },
    ]


def test_aggregated_document_matches_the_legacy_one() -> None:
    document = aggregated_discovery(["m"], AGGREGATED_V2)
    assert document["apiVersion"] == "apidiscovery.k8s.io/v2"
    (group,) = document["items"]
    assert group["metadata"] == {"name": "external.metrics.k8s.io", "creationTimestamp": None}
    (version,) = group["versions"]
    assert version["version"] == "v1beta1"
    assert version["freshness"] == "Current"
    assert version["resources"] == [
        {
            "resource": "m",
            "responseKind": {
                "group": "external.metrics.k8s.io",
                "version": "v1beta1",
                "kind": "ExternalMetricValueList",
            },
            "scope": "Namespaced",
            "singularResource": "",
            "verbs": ["get"],
        }
    ]
    assert discovery_etag(document) == discovery_etag(aggregated_discovery(["m"], AGGREGATED_V2))
    assert discovery_etag(document) != discovery_etag(aggregated_discovery(["m", "n"], AGGREGATED_V2))


def test_openapi_documents_describe_every_metric() -> None:
    definitions = MetricsConfig().definitions()
    v2 = openapi_v2(definitions, "v0.1.0")
    v3 = openapi_v3(definitions, "v0.1.0")
    paths = sorted(v2["paths"])
    assert paths == sorted(v3["paths"])
    assert "/apis/external.metrics.k8s.io/v1beta1/namespaces/{namespace}/tgi_queue_size" in paths
    assert len(paths) == len(definitions)
    digest = content_hash(v3)
    assert openapi_v3_index(digest) == {
        "paths": {
            "apis/external.metrics.k8s.io/v1beta1": {
                "serverRelativeURL": f"/openapi/v3/apis/external.metrics.k8s.io/v1beta1?hash={digest}"
            }
        }
    }
