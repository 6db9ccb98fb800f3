"""Gateway API exposure: an HTTPRoute to a named Gateway, to a Service or to an InferencePool.

ingress-nginx, which the Ingress renderer's annotations target, is retired; Gateway API is its
successor and its HTTPRoute carries what streamed generation needs without annotations (a rule's
``timeouts.request``). Certificates belong to the Gateway's listeners, so the route only names the
Gateway (and optionally a listener). Rate limiting is not in core Gateway API: the one policy
rendered here is Envoy Gateway's ``BackendTrafficPolicy`` (a local, per-client-IP limit).

With ``backend: InferencePool`` the route's backend is an InferencePool
(``inference.networking.k8s.io/v1``) selecting the server pods, and the gateway asks the endpoint
picker the user names which pod gets each request (by queue depth and KV-cache use). The pool
reaches the pods directly, so it cannot sit behind the API-key proxy (the spec rejects that).

A cluster without these CRDs would answer every apply with 404; rendering for such a cluster (the
controller discovers which APIs are served) fails with a ``ConfigError`` naming the field instead,
and the controller keeps the last good objects running.
"""

from __future__ import annotations

from tgi_autoscaler.config.constants import COMPONENT_AUTH_PROXY, COMPONENT_SERVER
from tgi_autoscaler.config.errors import ConfigError, ConfigIssue
from tgi_autoscaler.render.activator import ACTIVATOR_SERVICE_PORT
from tgi_autoscaler.render.auth_proxy import PROXY_SERVICE_PORT
from tgi_autoscaler.render.meta import Manifest, activator_name, auth_proxy_name, object_meta, selector_labels
from tgi_autoscaler.render.source import RenderOptions, ServiceSource

__all__ = ["render_routing"]

_GATEWAY_GROUP = "gateway.networking.k8s.io"
_INFERENCE_GROUP = "inference.networking.k8s.io"
_ENVOY_GATEWAY_GROUP = "gateway.envoyproxy.io"
# Every client address, IPv4 and IPv6: with type Distinct each address gets its own bucket.
_ALL_CLIENTS = ("0.0.0.0/0", "::/0")


def _missing(source: ServiceSource, path: str, what: str) -> ConfigError:
    return ConfigError(
        f"service {source.namespace}/{source.name}",
        [ConfigIssue(path, f"{what} not served by this cluster: install its CRDs or change {path}")],
    )


def _check_served(source: ServiceSource, options: RenderOptions) -> None:
    routing = source.spec.routing
    if not options.gateway_api:
        raise _missing(source, "routing.enabled", f"Gateway API (httproutes.{_GATEWAY_GROUP}/v1) is")
    if routing.backend == "InferencePool" and not options.inference_extension:
        raise _missing(
            source,
            "routing.backend",
            f"the Gateway API Inference Extension (inferencepools.{_INFERENCE_GROUP}/v1) is",
        )
    if routing.envoy_gateway_rate_limit is not None and not options.envoy_gateway:
        raise _missing(
            source,
            "routing.envoyGatewayRateLimit",
            f"Envoy Gateway's BackendTrafficPolicy ({_ENVOY_GATEWAY_GROUP}/v1alpha1) is",
        )


def _inference_pool(source: ServiceSource) -> Manifest:
    pool = source.spec.routing.inference_pool
    assert pool is not None  # the spec requires it with backend: InferencePool
    picker = pool.endpoint_picker
    return {
        "apiVersion": f"{_INFERENCE_GROUP}/v1",
        "kind": "InferencePool",
        "metadata": object_meta(source.name, source.namespace, source.name, COMPONENT_SERVER),
        "spec": {
            # The server pods only: never the API-key proxy's, which share the instance label.
            "selector": {"matchLabels": selector_labels(source.name, COMPONENT_SERVER)},
            "targetPorts": [{"number": source.spec.engine.effective_port}],
            "endpointPickerRef": {
                "group": "",
                "kind": "Service",
                "name": picker.name,
                "port": {"number": picker.port},
                "failureMode": picker.failure_mode,
            },
        },
    }


def _backend_ref(source: ServiceSource) -> Manifest:
    spec = source.spec
    if spec.routing.backend == "InferencePool":
        return {"group": _INFERENCE_GROUP, "kind": "InferencePool", "name": source.name}
    if spec.auth.enabled:
        # The proxy forwards to the activator itself when the service scales to zero.
        name, port = auth_proxy_name(source.name), PROXY_SERVICE_PORT
    elif spec.scales_to_zero:
        # The activator holds requests while no replica is Ready and counts them as demand.
        name, port = activator_name(source.name), ACTIVATOR_SERVICE_PORT
    else:
        name, port = source.name, spec.service.port
    return {"group": "", "kind": "Service", "name": name, "port": port}


def _http_route(source: ServiceSource) -> Manifest:
    spec = source.spec
    routing = spec.routing
    gateway = routing.gateway
    assert gateway is not None  # the spec requires it when routing is enabled
    parent: Manifest = {"group": _GATEWAY_GROUP, "kind": "Gateway", "name": gateway.name}
    if gateway.namespace is not None:
        parent["namespace"] = gateway.namespace
    if gateway.section_name is not None:
        parent["sectionName"] = gateway.section_name
    route_spec: Manifest = {"parentRefs": [parent]}
    if routing.hostnames:
        route_spec["hostnames"] = list(routing.hostnames)
    route_spec["rules"] = [
        {
            "matches": [{"path": {"type": "PathPrefix", "value": routing.path}}],
            "backendRefs": [_backend_ref(source)],
            # The whole request, response stream included: a generation streams for minutes.
            "timeouts": {"request": f"{routing.request_timeout_seconds}s"},
        }
    ]
    through_proxy = routing.backend == "Service" and spec.auth.enabled
    component = COMPONENT_AUTH_PROXY if through_proxy else COMPONENT_SERVER
    return {
        "apiVersion": f"{_GATEWAY_GROUP}/v1",
        "kind": "HTTPRoute",
        "metadata": object_meta(source.name, source.namespace, source.name, component),
        "spec": route_spec,
    }


def _rate_limit_policy(source: ServiceSource) -> Manifest | None:
    limit = source.spec.routing.envoy_gateway_rate_limit
    if limit is None:
        return None
    return {
        "apiVersion": f"{_ENVOY_GATEWAY_GROUP}/v1alpha1",
        "kind": "BackendTrafficPolicy",
        "metadata": object_meta(source.name, source.namespace, source.name, COMPONENT_SERVER),
        "spec": {
            "targetRefs": [{"group": _GATEWAY_GROUP, "kind": "HTTPRoute", "name": source.name}],
            "rateLimit": {
                "type": "Local",
                "local": {
                    "rules": [
                        {
                            "clientSelectors": [{"sourceCIDR": {"type": "Distinct", "value": cidr}}],
                            "limit": {"requests": limit.requests_per_second, "unit": "Second"},
                        }
                        for cidr in _ALL_CLIENTS
                    ]
                },
            },
        },
    }


def render_routing(source: ServiceSource, options: RenderOptions) -> list[Manifest]:
    """InferencePool (when chosen), HTTPRoute and rate-limit policy; empty when routing is off.

    Raises ``ConfigError`` when ``options`` say the cluster does not serve an API the spec needs.
    """
    routing = source.spec.routing
    if not routing.enabled:
        return []
    _check_served(source, options)
    objects: list[Manifest | None] = []
    if routing.backend == "InferencePool":
        objects.append(_inference_pool(source))
    objects.append(_http_route(source))
    objects.append(_rate_limit_policy(source))
    return [obj for obj in objects if obj is not None]
