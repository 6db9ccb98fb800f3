"""Optional API-key protection: a small nginx Deployment + Service in front of the server's Service.

A request passes when it carries one of the keys from a Secret, either as ``Authorization: Bearer
<key>`` (what OpenAI-compatible clients send) or as ``X-API-Key: <key>``; anything else gets a 401
with a JSON error body and a ``WWW-Authenticate: Bearer`` challenge, as OpenAI-style clients expect.
The key headers are stripped before the request reaches the server, and the access log records
neither headers nor query strings, so keys never end up in logs.

The Secret holds one key per line. An init container validates the keys (a restricted alphabet, so
no key can inject nginx configuration) and writes them as exact, case-sensitive regex entries of an
nginx ``map``; nginx itself never sees the Secret. Keys are read when a proxy pod starts: after
rotating them, restart the proxy Deployment.
"""

from __future__ import annotations

import hashlib
import json

from tgi_autoscaler.config.constants import ANNOTATION_CONFIG_HASH, COMPONENT_AUTH_PROXY
from tgi_autoscaler.render.activator import ACTIVATOR_SERVICE_PORT
from tgi_autoscaler.render.meta import (
    HTTP_PORT_NAME,
    Manifest,
    activator_name,
    auth_proxy_name,
    labels,
    object_meta,
    selector_labels,
)
from tgi_autoscaler.render.source import ServiceSource

__all__ = ["PROXY_PORT", "PROXY_SERVICE_PORT", "nginx_conf", "render_auth_proxy"]

PROXY_PORT = 8080  # the unprivileged nginx image cannot bind below 1024
PROXY_SERVICE_PORT = 80  # what the Ingress (by name) and the HTTPRoute (by number) send to
_UID = 101  # the nginx user of the unprivileged image
_KEYS_MAP = "/etc/nginx/auth/keys.map"

# Runs in the init container (busybox sh from the nginx alpine image). Never prints a key.
LOAD_KEYS_SCRIPT = r"""#!/bin/sh
# Turn the API keys Secret (one key per line) into nginx map entries that match a key exactly.
set -eu
src=${API_KEYS_FILE:-/run/api-keys/keys}
out=${KEYS_MAP_FILE:-/etc/nginx/auth/keys.map}
: > "$out.tmp"
count=0
lineno=0
while IFS= read -r line || [ -n "$line" ]; do
  lineno=$((lineno + 1))
  key=$(printf '%s' "$line" | tr -d '\r' | sed -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//')
  case "$key" in
    '' | '#'*) continue ;;
  esac
  if ! printf '%s' "$key" | grep -Eq '^[A-Za-z0-9._~+/=-]{8,256}$'; then
    echo "api key on line $lineno rejected: use 8-256 characters from A-Z a-z 0-9 . _ ~ + / = -" >&2
    exit 1
  fi
  escaped=$(printf '%s' "$key" | sed -e 's/[._~+/=-]/\\&/g')
  printf '"~^%s$" 1;\n' "$escaped" >> "$out.tmp"
  count=$((count + 1))
done < "$src"
if [ "$count" -eq 0 ]; then
  echo "no api keys found in the secret; refusing to start a proxy that admits nobody" >&2
  exit 1
fi
mv "$out.tmp" "$out"
echo "loaded $count api keys"
"""


def nginx_conf(source: ServiceSource) -> str:
    """nginx.conf of the proxy: key check, then a streaming pass-through to the server Service."""
    spec = source.spec
    # With scale to zero the activator holds requests while the server has no replica.
    upstream = (
        f"{activator_name(source.name)}.{source.namespace}.svc:{ACTIVATOR_SERVICE_PORT}"
        if spec.scales_to_zero
        else f"{source.name}.{source.namespace}.svc:{spec.service.port}"
    )
    ingress = spec.ingress
    return f"""worker_processes auto;
pid /tmp/nginx.pid;
error_log /dev/stderr warn;

events {{
  worker_connections 4096;
}}

http {{
  client_body_temp_path /tmp/client_temp;
  proxy_temp_path /tmp/proxy_temp;
  fastcgi_temp_path /tmp/fastcgi_temp;
  uwsgi_temp_path /tmp/uwsgi_temp;
  scgi_temp_path /tmp/scgi_temp;
  server_tokens off;

  # $uri has no query string and no header is logged: keys never reach the log.
  log_format requests '$remote_addr "$request_method $uri" $status $body_bytes_sent $request_time';
  access_log /dev/stdout requests;

  map $http_authorization $bearer_key {{
    default "";
    "~^Bearer\\s+(?<key>\\S+)$" $key;
  }}
  map $bearer_key $bearer_ok {{
    default 0;
    include {_KEYS_MAP};
  }}
  map $http_x_api_key $header_ok {{
    default 0;
    include {_KEYS_MAP};
  }}
  map "$bearer_ok$header_ok" $authorized {{
    default 1;
    "00" 0;
  }}

  upstream server {{
    server {upstream};
    keepalive 32;
  }}

  server {{
    listen {PROXY_PORT};
    client_max_body_size {ingress.proxy_body_size};

    location = /healthz {{
      access_log off;
      default_type text/plain;
      return 200 "ok\\n";
    }}

    location / {{
      # Inside "if" nginx allows little besides "return": @unauthorized writes the 401. Without
      # proxy_intercept_errors, a 401 from the server itself passes through unchanged.
      error_page 401 @unauthorized;
      if ($authorized = 0) {{
        return 401;
      }}
      proxy_pass http://server;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header Authorization "";
      proxy_set_header X-API-Key "";
      # Tokens are streamed as server-sent events: pass them on as they arrive.
      proxy_buffering off;
      proxy_read_timeout {ingress.proxy_read_timeout_seconds}s;
      proxy_send_timeout {ingress.proxy_send_timeout_seconds}s;
    }}

    location @unauthorized {{
      add_header WWW-Authenticate 'Bearer realm="{source.name}"' always;
      default_type application/json;
      return 401 '{{"error":"missing or invalid API key"}}';
    }}
  }}
}}
"""


def _config_hash(data: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def render_auth_proxy(source: ServiceSource) -> list[Manifest]:
    """ConfigMap, Deployment and Service of the proxy; empty when auth is disabled."""
    auth = source.spec.auth
    if not auth.enabled or auth.api_keys_secret is None:
        return []
    name = auth_proxy_name(source.name)
    data = {"nginx.conf": nginx_conf(source), "load-keys.sh": LOAD_KEYS_SCRIPT}
    configmap: Manifest = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": object_meta(name, source.namespace, source.name, COMPONENT_AUTH_PROXY),
        "data": data,
    }
    restricted: Manifest = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    resources: Manifest = {
        "requests": {"cpu": auth.cpu_request, "memory": auth.memory_request},
        "limits": {"memory": auth.memory_limit},
    }
    probe: Manifest = {"httpGet": {"path": "/healthz", "port": HTTP_PORT_NAME}, "periodSeconds": 10}
    pod_spec: Manifest = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": _UID,
            "runAsGroup": _UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "initContainers": [
            {
                "name": "load-keys",
                "image": auth.image,
                "command": ["/bin/sh", "/etc/nginx/scripts/load-keys.sh"],
                "resources": resources,
                "securityContext": restricted,
                "volumeMounts": [
                    {"name": "api-keys", "mountPath": "/run/api-keys", "readOnly": True},
                    {"name": "scripts", "mountPath": "/etc/nginx/scripts", "readOnly": True},
                    {"name": "auth", "mountPath": "/etc/nginx/auth"},
                ],
            }
        ],
        "containers": [
            {
                "name": "nginx",
                "image": auth.image,
                "ports": [{"name": HTTP_PORT_NAME, "containerPort": PROXY_PORT, "protocol": "TCP"}],
                "resources": resources,
                "readinessProbe": probe,
                "livenessProbe": probe,
                "securityContext": restricted,
                "volumeMounts": [
                    {
                        "name": "config",
                        "mountPath": "/etc/nginx/nginx.conf",
                        "subPath": "nginx.conf",
                        "readOnly": True,
                    },
                    {"name": "auth", "mountPath": "/etc/nginx/auth", "readOnly": True},
                    {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - nginx pid and buffers, read-only root
                ],
            }
        ],
        "volumes": [
            {
                "name": "api-keys",
                "secret": {
                    "secretName": auth.api_keys_secret.name,
                    "items": [{"key": auth.api_keys_secret.key, "path": "keys"}],
                },
            },
            {
                "name": "config",
                "configMap": {"name": name, "items": [{"key": "nginx.conf", "path": "nginx.conf"}]},
            },
            {
                "name": "scripts",
                "configMap": {"name": name, "items": [{"key": "load-keys.sh", "path": "load-keys.sh"}]},
            },
            {"name": "auth", "emptyDir": {"sizeLimit": "1Mi"}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
        ],
    }
    deployment: Manifest = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": object_meta(name, source.namespace, source.name, COMPONENT_AUTH_PROXY),
        "spec": {
            # Not autoscaled: nginx passing requests through is never the bottleneck of an LLM.
            "replicas": auth.replicas,
            "selector": {"matchLabels": selector_labels(source.name, COMPONENT_AUTH_PROXY)},
            "template": {
                "metadata": {
                    "labels": labels(source.name, COMPONENT_AUTH_PROXY),
                    # nginx.conf is mounted from the ConfigMap: roll the pods when it changes.
                    "annotations": {ANNOTATION_CONFIG_HASH: _config_hash(data)},
                },
                "spec": pod_spec,
            },
        },
    }
    service: Manifest = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_meta(name, source.namespace, source.name, COMPONENT_AUTH_PROXY),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(source.name, COMPONENT_AUTH_PROXY),
            "ports": [
                {
                    "name": HTTP_PORT_NAME,
                    "port": PROXY_SERVICE_PORT,
                    "targetPort": HTTP_PORT_NAME,
                    "protocol": "TCP",
                }
            ],
        },
    }
    return [configmap, deployment, service]
