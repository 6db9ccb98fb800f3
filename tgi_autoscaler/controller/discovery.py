"""Which optional APIs does this cluster serve: prometheus-operator's, Gateway API's and its
Inference Extension's, Envoy Gateway's?

Applying an object whose CRD is missing fails with 404 on every reconcile, so the controller asks
the API discovery documents first. Without prometheus-operator it renders the fallback
(``prometheus.io/*`` scrape annotations, no alert rules); a spec whose routing needs an API that is
not served fails to render, naming the field. The answer is re-checked periodically because these
CRDs are often installed after the controller.
"""

from __future__ import annotations

from collections.abc import Iterable

import structlog

from tgi_autoscaler.kube.client import KubeClient
from tgi_autoscaler.kube.resources import ResourceType

__all__ = ["ApiDiscovery"]

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
