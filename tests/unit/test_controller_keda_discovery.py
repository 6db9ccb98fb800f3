"""Choosing the autoscaler: --autoscaler hpa|keda|auto, and who owns the external metrics APIService."""

from __future__ import annotations

import asyncio

import pytest

from tests.unit.controller_fakes import FakeKube
from tgi_autoscaler.controller.discovery import KedaDiscovery, keda_owns
from tgi_autoscaler.kube.errors import TransportError

pytestmark = pytest.mark.unit

APISERVICE_PATH = "/apis/apiregistration.k8s.io/v1/apiservices/v1beta1.external.metrics.k8s.io"
KEDA_GROUP = {"resources": [{"name": "scaledobjects"}, {"name": "scaledobjects/status"}]}
KEDA_APISERVICE = {
    "metadata": {
        "name": "v1beta1.external.metrics.k8s.io",
        "labels": {"app.kubernetes.io/part-of": "keda-operator"},
    },
    "spec": {"service": {"name": "keda-metrics-apiserver", "namespace": "keda"}},
}
OUR_APISERVICE = {
    "metadata": {"name": "v1beta1.external.metrics.k8s.io"},
    "spec": {"service": {"name": "tgi-autoscaler-adapter", "namespace": "tgi-autoscaler"}},
}


def test_keda_owns_by_label_or_by_helm_service_name() -> None:
    assert keda_owns(KEDA_APISERVICE)
    helm = {"metadata": {}, "spec": {"service": {"name": "keda-operator-metrics-apiserver"}}}
    assert keda_owns(helm)
    assert not keda_owns(OUR_APISERVICE)
    assert not keda_owns(None)
    assert not keda_owns({"spec": {"service": {"name": "prometheus-adapter"}}})


def _discover(mode: str, documents: dict[str, object]) -> tuple[KedaDiscovery, bool]:
    kube = FakeKube()
    kube.discovery.update(documents)  # type: ignore[arg-type]
    discovery = KedaDiscovery(kube, mode)  # type: ignore[arg-type]
    changed = asyncio.run(discovery.refresh())
    return discovery, changed


def test_hpa_mode_never_asks_and_never_uses_keda() -> None:
    discovery, changed = _discover(
        "hpa", {"/apis/keda.sh/v1alpha1": KEDA_GROUP, APISERVICE_PATH: KEDA_APISERVICE}
    )
    assert (discovery.known, discovery.use_keda, changed) == (True, False, False)


def test_auto_uses_keda_only_where_keda_owns_external_metrics() -> None:
    keda, changed = _discover(
        "auto", {"/apis/keda.sh/v1alpha1": KEDA_GROUP, APISERVICE_PATH: KEDA_APISERVICE}
    )
    assert (keda.known, keda.crds, keda.use_keda, changed) == (True, True, True, True)
    ours, _ = _discover("auto", {"/apis/keda.sh/v1alpha1": KEDA_GROUP, APISERVICE_PATH: OUR_APISERVICE})
    assert (ours.crds, ours.use_keda) == (True, False)
    # KEDA's APIService but its CRDs gone: a ScaledObject could not be applied, keep the HPA.
    no_crd, _ = _discover("auto", {APISERVICE_PATH: KEDA_APISERVICE})
    assert (no_crd.crds, no_crd.use_keda) == (False, False)


def test_keda_mode_uses_keda_and_reports_missing_crds() -> None:
    discovery, _ = _discover("keda", {})
    assert (discovery.known, discovery.crds, discovery.use_keda) == (True, False, True)


def test_an_error_keeps_the_previous_answer() -> None:
    kube = FakeKube()
    kube.discovery.update({"/apis/keda.sh/v1alpha1": KEDA_GROUP, APISERVICE_PATH: KEDA_APISERVICE})
    discovery = KedaDiscovery(kube, "auto")
    assert asyncio.run(discovery.refresh())
    kube.fail["get_path"] = [TransportError("connection refused")]
    with pytest.raises(TransportError):
        asyncio.run(discovery.refresh())
    assert discovery.use_keda
    assert not asyncio.run(discovery.refresh())  # unchanged answer once the API answers again
