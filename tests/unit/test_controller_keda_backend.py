"""The reconciler with the KEDA backend: a ScaledObject instead of the HPA, and KEDA's own HPA left alone."""

from __future__ import annotations

import pytest

from tests.unit.controller_fakes import FakeKube
from tests.unit.test_controller_reconciler import KEY, FakeCaches, _service_configmap
from tgi_autoscaler.controller.events import EventRecorder
from tgi_autoscaler.controller.reconciler import Reconciler
from tgi_autoscaler.render import KedaOptions, render_service, source_from_configmap

pytestmark = pytest.mark.unit


def _reconciler(kube: FakeKube, keda: list[KedaOptions | None]) -> Reconciler:
    return Reconciler(
        kube,
        FakeCaches(kube),
        EventRecorder(kube, instance="test"),
        build_source=source_from_configmap,
        render=render_service,
        prometheus_operator=lambda: True,
        keda=lambda: keda[0],
    )


async def test_switching_to_keda_replaces_the_hpa_with_a_scaled_object() -> None:
    kube = FakeKube()
    kube.put(_service_configmap())
    backend: list[KedaOptions | None] = [None]
    reconciler = _reconciler(kube, backend)
    await reconciler.reconcile(KEY)
    assert kube.find("HorizontalPodAutoscaler", "llm", "llama") is not None
    assert kube.find("ScaledObject", "llm", "llama") is None

    backend[0] = KedaOptions(prometheus_url="http://prometheus:9090")
    outcome = await reconciler.reconcile(KEY)
    assert outcome.result == "applied"  # the options are part of what was applied
    assert kube.find("HorizontalPodAutoscaler", "llm", "llama") is None
    assert "deleted HorizontalPodAutoscaler/llm/llama" in outcome.changed
    scaled = kube.find("ScaledObject", "llm", "llama")
    assert scaled is not None
    assert scaled["spec"]["triggers"][0]["metadata"]["serverAddress"] == "http://prometheus:9090"


async def test_kedas_hpa_with_the_labels_keda_copies_is_not_pruned() -> None:
    kube = FakeKube()
    kube.put(_service_configmap())
    reconciler = _reconciler(kube, [KedaOptions(prometheus_url="http://prometheus:9090")])
    await reconciler.reconcile(KEY)
    scaled = kube.find("ScaledObject", "llm", "llama")
    assert scaled is not None
    # What KEDA's operator creates: the ScaledObject's labels minus the excluded ones.
    excluded = set(scaled["metadata"]["annotations"]["scaledobject.keda.sh/hpa-excluded-labels"].split(","))
    labels = {k: v for k, v in scaled["metadata"]["labels"].items() if k not in excluded}
    labels["app.kubernetes.io/managed-by"] = "keda-operator"
    kube.put(
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {
                "name": "keda-hpa-llama",
                "namespace": "llm",
                "labels": labels,
                "ownerReferences": [
                    {
                        "apiVersion": "keda.sh/v1alpha1",
                        "kind": "ScaledObject",
                        "name": "llama",
                        "controller": True,
                    }
                ],
            },
            "spec": {},
        }
    )
    edited = kube.find("ConfigMap", "llm", "llama")
    assert edited is not None
    edited["data"]["service.yaml"] += "  scaleDown:\n    stabilizationWindowSeconds: 60\n"
    kube.put(edited)
    outcome = await reconciler.reconcile(KEY)
    assert outcome.result == "applied"
    assert kube.find("HorizontalPodAutoscaler", "llm", "keda-hpa-llama") is not None
