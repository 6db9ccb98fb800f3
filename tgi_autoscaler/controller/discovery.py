"""Does this cluster serve prometheus-operator's PrometheusRule and PodMonitor?

Applying a PrometheusRule to a cluster without the CRD fails with 404 on every reconcile, so the
controller asks the API discovery document first and renders the fallback (``prometheus.io/*``
scrape annotations, no alert rules) when the CRDs are missing. The answer is re-checked
periodically because the operator is often installed after the controller.
"""

from __future__ import annotations

import structlog

from tgi_autoscaler.kube.client import KubeClient
from tgi_autoscaler.kube.resources import MONITORING_GROUP_VERSION, PODMONITOR, PROMETHEUSRULE

__all__ = ["PrometheusOperatorDiscovery"]

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
