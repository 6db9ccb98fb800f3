"""Discovery, OpenAPI, version and health endpoints.

Discovery and OpenAPI documents are derived from the current definitions and rebuilt only when the
definitions' generation changes, so the aggregator's frequent polling costs a dictionary lookup.
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from tgi_autoscaler import __version__
from tgi_autoscaler.adapter.definitions import DefinitionStore
from tgi_autoscaler.adapter.discovery import (
    AGGREGATED_V2,
    AGGREGATED_V2BETA1,
    PLAIN_JSON,
    MediaType,
    aggregated_discovery,
    api_group,
    api_group_list,
    api_resource_list,
    discovery_etag,
    negotiate,
)
from tgi_autoscaler.adapter.errors import NotAcceptable
from tgi_autoscaler.adapter.handlers import METRICS_KEY, REQUEST_INFO_KEY
from tgi_autoscaler.adapter.openapi import content_hash, openapi_v2, openapi_v3, openapi_v3_index
from tgi_autoscaler.adapter.status import json_response

__all__ = ["DOCUMENTS_KEY", "READINESS_KEY", "Documents", "routes"]

ReadinessCheck = Callable[[], Sequence[str]]


@dataclass
class Documents:
    """Documents for one generation of definitions, built on first use."""

    store: DefinitionStore
    _generation: int = -1
    _cache: dict[str, Any] = field(default_factory=dict)

    def get(self, name: str) -> Any:
        generation = self.store.snapshot.generation
        if generation != self._generation:
            self._cache.clear()
            self._generation = generation
        if name not in self._cache:
            self._cache[name] = self._build(name)
        return self._cache[name]

    def _build(self, name: str) -> Any:
        definitions = self.store.snapshot.definitions
        if name == "resources":
            return api_resource_list(definitions)
        if name in ("aggregated:v2", "aggregated:v2beta1"):
            media = AGGREGATED_V2 if name.endswith(":v2") else AGGREGATED_V2BETA1
            document = aggregated_discovery(definitions, media)
            return document, discovery_etag(document)
        if name == "openapi:v2":
            return openapi_v2(definitions, f"v{__version__}")
        if name == "openapi:v3":
            document = openapi_v3(definitions, f"v{__version__}")
            return document, content_hash(document)
        raise KeyError(name)


DOCUMENTS_KEY: Final = web.AppKey("tgi_autoscaler.documents", Documents)
READINESS_KEY: Final[web.AppKey[ReadinessCheck]] = web.AppKey("tgi_autoscaler.readiness")


def _mark(request: web.Request, endpoint: str) -> None:
    info = request.get(REQUEST_INFO_KEY)
    if info is not None:
        info.endpoint = endpoint


def _require(request: web.Request, offers: Sequence[MediaType]) -> MediaType:
    chosen = negotiate(request.headers.get("Accept"), offers)
    if chosen is None:
        raise NotAcceptable(PLAIN_JSON.mime)
    return chosen


async def apis(request: web.Request) -> web.Response:
    _mark(request, "discovery")
    chosen = _require(request, (AGGREGATED_V2, AGGREGATED_V2BETA1, PLAIN_JSON))
    if chosen.gvk is None:
        return json_response(api_group_list())
    name = "aggregated:v2" if chosen is AGGREGATED_V2 else "aggregated:v2beta1"
    document, etag = request.app[DOCUMENTS_KEY].get(name)
    headers = {"ETag": etag, "Vary": "Accept", "Cache-Control": "public"}
    if request.headers.get("If-None-Match") == etag:
        return web.Response(status=304, headers=headers)
    return json_response(document, content_type=chosen.content_type, headers=headers)


async def group(request: web.Request) -> web.Response:
    _mark(request, "discovery")
    _require(request, (PLAIN_JSON,))
    return json_response(api_group())


async def group_version(request: web.Request) -> web.Response:
    _mark(request, "discovery")
    _require(request, (PLAIN_JSON,))
    return json_response(request.app[DOCUMENTS_KEY].get("resources"))


async def openapi_v2_handler(request: web.Request) -> web.Response:
    _mark(request, "openapi")
    _require(request, (PLAIN_JSON,))
    return json_response(request.app[DOCUMENTS_KEY].get("openapi:v2"))


async def openapi_v3_index_handler(request: web.Request) -> web.Response:
    _mark(request, "openapi")
    _require(request, (PLAIN_JSON,))
    _, digest = request.app[DOCUMENTS_KEY].get("openapi:v3")
    return json_response(openapi_v3_index(digest))


async def openapi_v3_group_version(request: web.Request) -> web.StreamResponse:
    _mark(request, "openapi")
    _require(request, (PLAIN_JSON,))
    document, digest = request.app[DOCUMENTS_KEY].get("openapi:v3")
    asked = request.query.get("hash")
    if asked is not None and asked != digest:
        # kube-openapi sends an outdated hash to the current document.
        return web.Response(status=301, headers={"Location": f"{request.path}?hash={digest}"})
    headers = {"ETag": f'"{digest}"', "Vary": "Accept"}
    headers["Cache-Control"] = "public, immutable" if asked == digest else "no-cache, private"
    if request.headers.get("If-None-Match") == headers["ETag"]:
        return web.Response(status=304, headers=headers)
    return json_response(document, headers=headers)


def version_info() -> dict[str, str]:
    """``/version`` in ``k8s.io/apimachinery/pkg/version.Info`` form."""
    major, _, rest = __version__.partition(".")
    minor = rest.partition(".")[0]
    return {
        "major": major,
        "minor": minor,
        "gitVersion": f"v{__version__}",
        "gitCommit": "",
        "gitTreeState": "",
        "buildDate": "",
        "goVersion": "",
        "compiler": f"cpython-{platform.python_version()}",
        "platform": f"{sys.platform}/{platform.machine().lower()}",
    }


async def version(request: web.Request) -> web.Response:
    _mark(request, "version")
    return json_response(version_info())


async def healthz(request: web.Request) -> web.Response:
    _mark(request, "health")
    return web.Response(text="ok", content_type="text/plain")


async def readyz(request: web.Request) -> web.Response:
    _mark(request, "health")
    failing = list(request.app[READINESS_KEY]())
    if not failing:
        return web.Response(text="ok", content_type="text/plain")
    # kube-apiserver's format: one line per failed check, reasons withheld from anonymous probes.
    lines = [f"[-]{name} failed: reason withheld" for name in failing]
    return web.Response(
        status=500, text="\n".join([*lines, "readyz check failed", ""]), content_type="text/plain"
    )


async def metrics(request: web.Request) -> web.Response:
    _mark(request, "metrics")
    body = generate_latest(request.app[METRICS_KEY].registry)
    response = web.Response(body=body)
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


def routes() -> list[web.RouteDef]:
    return [
        web.get("/apis", apis),
        web.get("/apis/", apis),
        web.get("/apis/external.metrics.k8s.io", group),
        web.get("/apis/external.metrics.k8s.io/", group),
        web.get("/apis/external.metrics.k8s.io/v1beta1", group_version),
        web.get("/apis/external.metrics.k8s.io/v1beta1/", group_version),
        web.get("/openapi/v2", openapi_v2_handler),
        web.get("/openapi/v3", openapi_v3_index_handler),
        web.get("/openapi/v3/apis/external.metrics.k8s.io/v1beta1", openapi_v3_group_version),
        web.get("/version", version),
        web.get("/version/", version),
        web.get("/healthz", healthz),
        web.get("/livez", healthz),
        web.get("/readyz", readyz),
        web.get("/metrics", metrics),
    ]
