"""Ownership labels, cross-namespace ownerReferences, owner lookup and drift fingerprints."""

from __future__ import annotations

from typing import Any

import pytest

from tgi_autoscaler.controller.apply import fingerprint, owner_of, prepare
from tgi_autoscaler.controller.watch import ObjectKey

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


def test_fingerprint_ignores_status_and_bookkeeping_but_sees_spec_and_labels() -> None:
    base = _obj(generation=3, resourceVersion="10", labels={"a": "1"})
    same = _obj(generation=3, resourceVersion="11", labels={"a": "1"})
    same["status"] = {"readyReplicas": 2}
    assert fingerprint(base) == fingerprint(same)
    assert fingerprint(base) != fingerprint(_obj(generation=4, labels={"a": "1"}))
    assert fingerprint(base) != fingerprint(_obj(generation=3, labels={"a": "2"}))


def test_fingerprint_of_kinds_without_generation_covers_the_body() -> None:
    a = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}]}}
    b = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"ports": [{"port": 81}]}}
    assert fingerprint(a) != fingerprint(b)


def test_hpa_fingerprint_tracks_replica_counts_for_the_status() -> None:
    hpa = {"kind": "HorizontalPodAutoscaler", "metadata": {"name": "h", "generation": 1}, "status": {}}
    scaled = {**hpa, "status": {"currentReplicas": 3, "desiredReplicas": 3}}
    assert fingerprint(hpa) != fingerprint(scaled)
