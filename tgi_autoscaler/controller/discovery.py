"""Which optional APIs does this cluster serve: prometheus-operator's, Gateway API's and its
Inference Extension's, Envoy Gateway's, KEDA's?

Applying an object whose CRD is missing fails with 404 on every reconcile, so the controller asks
the API discovery documents first. Without prometheus-operator it renders the fallback
(``prometheus.io/*`` scrape annotations, no alert rules); a spec whose routing needs an API that is
not served fails to render, naming the field. The answer is re-checked periodically because these
CRDs are often installed after the controller.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

import structlog

from tgi_autoscaler.kube.client import KubeClient
from tgi_autoscaler.kube.resources import APISERVICE, KEDA_GROUP_VERSION, SCALEDOBJECT, ResourceType

__all__ = [
    "EXTERNAL_METRICS_APISERVICE",
    "ApiDiscovery",
    "AutoscalerMode",
    "KedaDiscovery",
    "keda_owns",
]

log = structlog.get_logger(__name__)


class ApiDiscovery:
    """Which of ``kinds`` (custom resources) the API server serves, from its discovery documents."""

    def __init__(self, client: KubeClient, kinds: Iterable[ResourceType]) -> None:
        self._client = client
        self._kinds = tuple(kinds)
        self.served: frozenset[ResourceType] | None = None  # None until the first successful check

    def serves(self, *kinds: ResourceType) -> bool:
        return self.served is not None and all(rt in self.served for rt in kinds)

    async def refresh(self) -> bool:
        """Re-check; returns True when the answer changed (including the first answer).

        Errors propagate (the caller keeps the previous answer and retries later) rather than being
        read as "absent", which would strip PodMonitors from every service during an API blip.
        """
        served: set[ResourceType] = set()
        for group_version in sorted({rt.api_version for rt in self._kinds}):
            document = await self._client.get_path(f"/apis/{group_version}")
            plurals = {str(r.get("name")) for r in (document or {}).get("resources", [])}
            served |= {rt for rt in self._kinds if rt.api_version == group_version and rt.plural in plurals}
        found = frozenset(served)
        changed = found != self.served
        if changed:
            log.info("discovery.apis", served=sorted(str(rt) for rt in found))
        self.served = found
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
