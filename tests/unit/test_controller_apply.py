"""Ownership labels, cross-namespace ownerReferences, owner lookup and drift fingerprints."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tgi_autoscaler.controller.apply import fingerprint, owner_of, prepare, project
from tgi_autoscaler.kube.watch import ObjectKey

pytestmark = pytest.mark.unit

OWNER = ObjectKey("llm", "llama")
REF = {"apiVersion": "v1", "kind": "ConfigMap", "name": "llama", "uid": "u1", "controller": True}


def _obj(kind: str = "Deployment", namespace: str = "llm", **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": "llama", "namespace": namespace, "ownerReferences": [REF], **meta},
        "spec": {"template": {}},
    }


def test_prepare_labels_every_object_with_its_owner_and_copies() -> None:
    original = _obj()
    [prepared] = prepare([original], OWNER)
    labels = prepared["metadata"]["labels"]
    assert labels["tgi-autoscaler.io/owner-namespace"] == "llm"
    assert labels["tgi-autoscaler.io/owner-name"] == "llama"
    assert prepared["metadata"]["ownerReferences"] == [REF]
    assert "labels" not in original["metadata"], "the rendered object must not be mutated"


def test_prepare_drops_owner_references_across_namespaces() -> None:
    [prepared] = prepare([_obj(kind="ConfigMap", namespace="grafana")], OWNER)
    assert "ownerReferences" not in prepared["metadata"]
    assert owner_of(prepared) == OWNER


def test_owner_falls_back_to_the_controller_owner_reference() -> None:
    assert owner_of(_obj()) == OWNER
    assert owner_of({"metadata": {"name": "x", "namespace": "llm"}}) is None


def test_fingerprint_sees_managed_fields_only() -> None:
    desired: dict[str, Any] = {
        "kind": "Deployment",
        "metadata": {"name": "llama", "labels": {"a": "1"}},
        "spec": {"template": {"spec": {"containers": [{"name": "tgi", "image": "tgi:1"}]}}},
    }
    live: dict[str, Any] = {
        "kind": "Deployment",
        "metadata": {"name": "llama", "labels": {"a": "1"}, "resourceVersion": "10", "generation": 3},
        "spec": {
            "replicas": 2,
            "template": {
                "spec": {"containers": [{"name": "tgi", "image": "tgi:1", "terminationMessagePath": "/x"}]}
            },
        },
        "status": {"readyReplicas": 2},
    }
    base = fingerprint(live, desired)
    unmanaged = copy.deepcopy(live)
    unmanaged["spec"]["replicas"] = 7  # written by the HPA
    unmanaged["metadata"]["annotations"] = {"deployment.kubernetes.io/revision": "2"}
    unmanaged["metadata"]["resourceVersion"] = "11"
    unmanaged["status"] = {}
    assert fingerprint(unmanaged, desired) == base
    edited = copy.deepcopy(live)
    edited["spec"]["template"]["spec"]["containers"][0]["image"] = "tgi:2"
    assert fingerprint(edited, desired) != base
    relabelled = copy.deepcopy(live)
    relabelled["metadata"]["labels"]["a"] = "2"
    assert fingerprint(relabelled, desired) != base
    grown = copy.deepcopy(live)
    grown["spec"]["template"]["spec"]["containers"].append({"name": "sidecar"})
    assert fingerprint(grown, desired) != base
    deleting = copy.deepcopy(live)
    deleting["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert fingerprint(deleting, desired) != base


def test_projection_keeps_only_desired_paths() -> None:
    assert project({"a": 1, "b": {"c": 2, "d": 3}}, {"b": {"c": 0}}) == {"b": {"c": 2}}
    assert project({"l": [{"x": 1, "y": 2}]}, {"l": [{"x": 0}]}) == {"l": [{"x": 1}]}
    assert project({"l": [1, 2]}, {"l": [1]}) == {"l": [1, 2]}, "a list that changed length is kept whole"
    assert project({}, {"missing": {"x": 1}}) == {"missing": None}


def test_hpa_fingerprint_tracks_replica_counts_for_the_status() -> None:
    desired = {"kind": "HorizontalPodAutoscaler", "metadata": {"name": "h"}, "spec": {"maxReplicas": 4}}
    hpa = {**desired, "status": {}}
    scaled = {**desired, "status": {"currentReplicas": 3, "desiredReplicas": 3}}
    assert fingerprint(hpa, desired) != fingerprint(scaled, desired)
