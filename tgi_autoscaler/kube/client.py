"""A small typed Kubernetes client: the handful of verbs both servers need, on plain dicts.

kubernetes_asyncio's generated APIs deserialize into model classes and cannot send server-side
apply patches for custom resources; its ``Watch`` helper hides bookmarks and retries 410 Gone on
its own. The watch loop in :mod:`.watch` needs exact control over both, so this module sends raw
requests through ``ApiClient.call_api`` (which keeps kubeconfig auth, TLS and token refresh) and
works on JSON dicts. Every non-2xx answer becomes an :class:`~.errors.ApiError` with the server's
status, reason and message; a request without an answer becomes a :class:`~.errors.TransportError`.

Everything above this module depends on the ``KubeClient`` protocol only, so unit tests drive the
controller and the adapter with in-memory fakes and e2e tests with the real API server.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypedDict

import aiohttp

from tgi_autoscaler.kube.errors import ApiError, TransportError, api_error_from_status
from tgi_autoscaler.kube.resources import WELL_KNOWN_KINDS, ResourceType, kind_of

__all__ = [
    "ApiKubeClient",
    "KubeClient",
    "KubeObject",
    "ListWatchClient",
    "ObjectList",
    "WatchEvent",
]

KubeObject = dict[str, Any]
WatchEventType = Literal["ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"]


class WatchEvent(TypedDict):
    type: WatchEventType
    object: KubeObject


@dataclass(frozen=True)
class ObjectList:
    items: list[KubeObject]
    resource_version: str


class ListWatchClient(Protocol):
    """The two verbs the watch loop needs, so its unit tests can script just these."""

    async def list(
        self,
        rt: ResourceType,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> ObjectList: ...

    def watch(
        self,
        rt: ResourceType,
        *,
        resource_version: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout_s: int = 300,
    ) -> AsyncGenerator[WatchEvent, None]: ...


class KubeClient(ListWatchClient, Protocol):
    """The API verbs the servers use. Objects are plain JSON dicts."""

    async def get(self, rt: ResourceType, namespace: str | None, name: str) -> KubeObject | None: ...

    async def apply(
        self, obj: Mapping[str, Any], *, field_manager: str, force: bool = True, dry_run: bool = False
    ) -> KubeObject: ...

    async def merge_patch(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        patch: Mapping[str, Any],
        *,
        field_manager: str,
    ) -> KubeObject: ...

    async def create(self, rt: ResourceType, namespace: str | None, obj: Mapping[str, Any]) -> KubeObject: ...

    async def replace(
        self, rt: ResourceType, namespace: str | None, name: str, obj: Mapping[str, Any]
    ) -> KubeObject: ...

    async def delete(
        self, rt: ResourceType, namespace: str | None, name: str, *, uid: str | None = None
    ) -> bool: ...

    async def get_path(self, path: str) -> KubeObject | None: ...


_REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=30, sock_connect=10)


class ApiKubeClient:
    """``KubeClient`` over a kubernetes_asyncio ``ApiClient`` (created and closed by the caller).

    ``kinds`` are the resource types :meth:`apply` can find the REST path of from an object's
    ``apiVersion`` and ``kind``.
    """

    def __init__(
        self,
        api_client: Any,
        *,
        request_timeout: aiohttp.ClientTimeout = _REQUEST_TIMEOUT,
        kinds: Sequence[ResourceType] = WELL_KNOWN_KINDS,
    ) -> None:
        self._api = api_client
        self._timeout = request_timeout
        self._kinds = tuple(kinds)

    async def _request(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        body: Any = None,
        content_type: str = "application/json",
        timeout: aiohttp.ClientTimeout | None = None,
    ) -> aiohttp.ClientResponse:
        try:
            response: aiohttp.ClientResponse = await self._api.call_api(
                path,
                method,
                query_params=list(query),
                header_params={"Accept": "application/json", "Content-Type": content_type},
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=timeout or self._timeout,
            )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise TransportError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        return response

    async def _json(self, response: aiohttp.ClientResponse) -> KubeObject:
        try:
            raw = await response.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise TransportError(f"reading response: {type(exc).__name__}: {exc}") from exc
        finally:
            response.release()
        try:
            decoded = json.loads(raw) if raw else {}
        except ValueError:
            decoded = {"message": raw[:500].decode("utf-8", "replace")}
        if not isinstance(decoded, dict):
            decoded = {"message": str(decoded)[:500]}
        if not 200 <= response.status < 300:
            raise api_error_from_status(response.status, decoded, response.headers.get("Retry-After"))
        return decoded

    async def get(self, rt: ResourceType, namespace: str | None, name: str) -> KubeObject | None:
        try:
            return await self._json(await self._request("GET", rt.item_path(namespace, name)))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def get_path(self, path: str) -> KubeObject | None:
        try:
            return await self._json(await self._request("GET", path))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def list(
        self,
        rt: ResourceType,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> ObjectList:
        query = _selectors(label_selector, field_selector)
        body = await self._json(await self._request("GET", rt.collection_path(namespace), query=query))
        items = body.get("items") or []
        # List responses omit apiVersion/kind on items; restore them so items look like watch objects.
        for item in items:
            item.setdefault("apiVersion", rt.api_version)
            item.setdefault("kind", rt.kind)
        return ObjectList(
            items=items, resource_version=str(body.get("metadata", {}).get("resourceVersion", ""))
        )

    async def watch(
        self,
        rt: ResourceType,
        *,
        resource_version: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout_s: int = 300,
    ) -> AsyncGenerator[WatchEvent, None]:
        """Stream watch events from ``resource_version`` until the server closes the watch.

        An ``ERROR`` event (e.g. 410 Gone when the version was compacted) is raised as ``ApiError``
        so the caller decides whether to re-list.
        """
        query = [
            ("watch", "true"),
            ("allowWatchBookmarks", "true"),
            ("resourceVersion", resource_version),
            ("timeoutSeconds", str(timeout_s)),
            *_selectors(label_selector, field_selector),
        ]
        response = await self._request(
            "GET",
            rt.collection_path(namespace),
            query=query,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=timeout_s + 30),
        )
        try:
            if not 200 <= response.status < 300:
                await self._json(response)  # raises ApiError with the server's reason
            while True:
                try:
                    line = await response.content.readline()
                except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                    raise TransportError(f"watch {rt}: {type(exc).__name__}: {exc}") from exc
                if not line:
                    return
                if not line.strip():
                    continue
                try:
                    event = json.loads(line)
                except ValueError as exc:
                    raise TransportError(f"watch {rt}: undecodable event: {exc}") from exc
                if event.get("type") == "ERROR":
                    obj = event.get("object") or {}
                    raise api_error_from_status(int(obj.get("code") or 500), obj, None)
                yield WatchEvent(type=event["type"], object=event["object"])
        finally:
            response.close()

    async def apply(
        self, obj: Mapping[str, Any], *, field_manager: str, force: bool = True, dry_run: bool = False
    ) -> KubeObject:
        rt = kind_of(obj, self._kinds)
        meta = obj.get("metadata") or {}
        query = [("fieldManager", field_manager), ("force", "true" if force else "false")]
        if dry_run:
            query.append(("dryRun", "All"))
        response = await self._request(
            "PATCH",
            rt.item_path(meta.get("namespace"), str(meta["name"])),
            query=query,
            body=dict(obj),
            content_type="application/apply-patch+yaml",
        )
        return await self._json(response)

    async def merge_patch(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        patch: Mapping[str, Any],
        *,
        field_manager: str,
    ) -> KubeObject:
        response = await self._request(
            "PATCH",
            rt.item_path(namespace, name),
            query=[("fieldManager", field_manager)],
            body=dict(patch),
            content_type="application/merge-patch+json",
        )
        return await self._json(response)

    async def create(self, rt: ResourceType, namespace: str | None, obj: Mapping[str, Any]) -> KubeObject:
        response = await self._request("POST", rt.collection_path(namespace), body=dict(obj))
        return await self._json(response)

    async def replace(
        self, rt: ResourceType, namespace: str | None, name: str, obj: Mapping[str, Any]
    ) -> KubeObject:
        response = await self._request("PUT", rt.item_path(namespace, name), body=dict(obj))
        return await self._json(response)

    async def delete(
        self, rt: ResourceType, namespace: str | None, name: str, *, uid: str | None = None
    ) -> bool:
        """Delete with background propagation; ``uid`` guards against deleting a re-created object.

        Returns False when the object was already gone.
        """
        body: dict[str, Any] = {
            "kind": "DeleteOptions",
            "apiVersion": "v1",
            "propagationPolicy": "Background",
        }
        if uid is not None:
            body["preconditions"] = {"uid": uid}
        try:
            await self._json(await self._request("DELETE", rt.item_path(namespace, name), body=body))
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True


def _selectors(label_selector: str | None, field_selector: str | None) -> list[tuple[str, str]]:
    query: list[tuple[str, str]] = []
    if label_selector:
        query.append(("labelSelector", label_selector))
    if field_selector:
        query.append(("fieldSelector", field_selector))
    return query
