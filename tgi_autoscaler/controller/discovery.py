"""Does this cluster serve prometheus-operator's PrometheusRule and PodMonitor, and does KEDA scale it?

Applying a PrometheusRule to a cluster without the CRD fails with 404 on every reconcile, so the
controller asks the API discovery document first and renders the fallback (``prometheus.io/*``
scrape annotations, no alert rules) when the CRDs are missing. The answer is re-checked
periodically because the operator is often installed after the controller.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import structlog

from tgi_autoscaler.kube.client import KubeClient
from tgi_autoscaler.kube.resources import (
    APISERVICE,
    KEDA_GROUP_VERSION,
    MONITORING_GROUP_VERSION,
    PODMONITOR,
    PROMETHEUSRULE,
    SCALEDOBJECT,
)

__all__ = [
    "EXTERNAL_METRICS_APISERVICE",
    "AutoscalerMode",
    "KedaDiscovery",
    "PrometheusOperatorDiscovery",
    "keda_owns",
]

log = structlog.get_logger(__name__)


class PrometheusOperatorDiscovery:
    def __init__(self, client: KubeClient) -> None:
        self._client = client
        self.available: bool | None = None  # None until the first successful check

    async def refresh(self) -> bool:
        """Re-check; returns True when the answer changed (including the first answer).

        Errors propagate (the caller keeps the previous answer and retries later) rather than being
        read as "absent", which would strip PodMonitors from every service during an API blip.
        """
        document = await self._client.get_path(f"/apis/{MONITORING_GROUP_VERSION}")
        served = {str(r.get("name")) for r in (document or {}).get("resources", [])}
        available = PROMETHEUSRULE.plural in served and PODMONITOR.plural in served
        changed = available != self.available
        if changed:
            log.info("discovery.prometheus_operator", available=available)
        self.available = available
        return changed


EXTERNAL_METRICS_APISERVICE = "v1beta1.external.metrics.k8s.io"
AutoscalerMode = Literal["hpa", "keda", "auto"]


def keda_owns(apiservice: Mapping[str, Any] | None) -> bool:
    """Does this ``v1beta1.external.metrics.k8s.io`` APIService route to KEDA's metrics server?

    KEDA's manifests and Helm chart label it ``app.kubernetes.io/part-of: keda-operator`` and point
    it at a ``keda-*metrics-apiserver`` Service; either is taken as KEDA's.
    """
    if not apiservice:
        return False
    labels = (apiservice.get("metadata") or {}).get("labels") or {}
    service = ((apiservice.get("spec") or {}).get("service") or {}).get("name") or ""
    return labels.get("app.kubernetes.io/part-of") == "keda-operator" or (
        str(service).startswith("keda-") and str(service).endswith("metrics-apiserver")
    )


class KedaDiscovery:
    """Which autoscaler the services get: our HPA, or a KEDA ScaledObject.

    ``hpa`` never asks. ``keda`` and ``auto`` check that KEDA's ScaledObject CRD is served (so it
    can be watched and pruned); ``auto`` also reads who owns the external metrics APIService, since
    only one server can (KEDA issue 470): KEDA's means our adapter is not reachable and the services
    must scale through KEDA. As with the operator's CRDs, an error keeps the previous answer.
    """

    def __init__(self, client: KubeClient, mode: AutoscalerMode) -> None:
        self._client = client
        self.mode: AutoscalerMode = mode
        self.crds: bool | None = False if mode == "hpa" else None
        self.keda_owns_external_metrics: bool | None = False if mode == "hpa" else None

    @property
    def known(self) -> bool:
        return self.crds is not None and self.keda_owns_external_metrics is not None

    @property
    def use_keda(self) -> bool:
        """Render ScaledObjects (``keda``; ``auto`` once KEDA is installed and owns external metrics)."""
        if self.mode == "keda":
            return True
        return self.mode == "auto" and bool(self.crds) and bool(self.keda_owns_external_metrics)

    async def refresh(self) -> bool:
        """Re-check; returns True when the answer changed (including the first answer)."""
        if self.mode == "hpa":
            return False
        before = (self.crds, self.use_keda)
        document = await self._client.get_path(f"/apis/{KEDA_GROUP_VERSION}")
        served = {str(r.get("name")) for r in (document or {}).get("resources", [])}
        crds = SCALEDOBJECT.plural in served
        owns = False
        if self.mode == "auto":
            owns = keda_owns(
                await self._client.get_path(APISERVICE.item_path(None, EXTERNAL_METRICS_APISERVICE))
            )
        self.crds, self.keda_owns_external_metrics = crds, owns
        changed = before != (self.crds, self.use_keda)
        if changed:
            log.info(
                "discovery.keda",
                mode=self.mode,
                crds=crds,
                keda_owns_external_metrics=owns,
                use_keda=self.use_keda,
            )
        return changed
