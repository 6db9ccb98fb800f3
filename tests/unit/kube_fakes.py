"""A scripted list-and-watch API server for the watch loop's unit tests (controller and adapter).

Each ``list`` call answers with the next scripted result; each ``watch`` call plays the next
script: events (an exception among them is raised mid-stream), or an exception raised at once.
With no script left, a watch stays open and quiet and ``idle`` is set, which is when a test looks
at what happened.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Literal

from tgi_autoscaler.kube.client import KubeObject, ObjectList, WatchEvent
from tgi_autoscaler.kube.resources import ResourceType

__all__ = ["CONFIGMAP_REF", "Script", "ScriptedClient", "configmap", "configmap_event", "configmap_list"]

Script = Sequence[WatchEvent | BaseException] | BaseException


def configmap(name: str, rv: str, *, namespace: str = "ns", data: dict[str, str] | None = None) -> KubeObject:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "resourceVersion": rv},
        "data": data if data is not None else {},
    }


CONFIGMAP_REF = ("ns", "cm")  # the one ConfigMap the adapter's followers are pointed at in tests


def configmap_list(data: Mapping[str, str] | None, rv: str) -> ObjectList:
    """A list answer holding the followed ConfigMap at ``rv`` (``data=None``: it does not exist)."""
    namespace, name = CONFIGMAP_REF
    items = [] if data is None else [configmap(name, rv, namespace=namespace, data=dict(data))]
    return ObjectList(items, rv)


def configmap_event(
    kind: Literal["ADDED", "MODIFIED", "DELETED", "BOOKMARK"], data: Mapping[str, str] | None, rv: str
) -> WatchEvent:
    """A watch event on the followed ConfigMap; a bookmark carries only its resourceVersion."""
    namespace, name = CONFIGMAP_REF
    if kind == "BOOKMARK":
        return WatchEvent(type=kind, object={"kind": "ConfigMap", "metadata": {"resourceVersion": rv}})
    return WatchEvent(type=kind, object=configmap(name, rv, namespace=namespace, data=dict(data or {})))


class ScriptedClient:
    """Serves scripted list results and watch streams; records where each watch resumed."""

    def __init__(self, lists: list[ObjectList | BaseException], watches: list[Script]) -> None:
        self.lists = lists
        self.watches = watches
        self.watch_versions: list[str] = []
        self.field_selectors: list[str | None] = []
        self.list_calls = 0
        self.idle = asyncio.Event()

    async def list(
        self,
        rt: ResourceType,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> ObjectList:
        self.list_calls += 1
        self.field_selectors.append(field_selector)
        answer = self.lists.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

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
        self.watch_versions.append(resource_version)
        if not self.watches:
            self.idle.set()
            await asyncio.Event().wait()  # a quiet, open watch
        script = self.watches.pop(0)
        if isinstance(script, BaseException):
            raise script
        for item in script:
            if isinstance(item, BaseException):
                raise item
            yield item
