"""Reflector: list then watch, resume from the last resourceVersion, bookmarks, re-list on 410 Gone."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from tests.unit.kube_fakes import ScriptedClient, configmap
from tgi_autoscaler.kube.client import KubeObject, ObjectList, WatchEvent
from tgi_autoscaler.kube.errors import ApiError, TransportError
from tgi_autoscaler.kube.resources import CONFIGMAP
from tgi_autoscaler.kube.retry import Backoff
from tgi_autoscaler.kube.watch import ObjectKey, Reflector, Store, WatchPolicy

pytestmark = pytest.mark.unit


def cm(name: str, rv: str, namespace: str = "ns", data: str = "") -> KubeObject:
    return configmap(name, rv, namespace=namespace, data={"k": data})


async def _run(reflector: Reflector, client: ScriptedClient) -> None:
    task = asyncio.create_task(reflector.run())
    try:
        await asyncio.wait_for(client.idle.wait(), 5)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _reflector(client: ScriptedClient, seen: list[tuple[str, str]], **kwargs: Any) -> Reflector:
    return Reflector(
        client,
        CONFIGMAP,
        handler=lambda change, obj, old: seen.append((change, obj["metadata"]["name"])),
        policy=WatchPolicy(backoff=Backoff(initial_s=0.001, max_s=0.002)),
        **kwargs,
    )


async def test_lists_then_watches_from_the_list_version_and_resumes_where_it_stopped() -> None:
    client = ScriptedClient(
        lists=[ObjectList([cm("a", "5")], "10")],
        watches=[
            [
                WatchEvent(type="ADDED", object=cm("b", "11")),
                WatchEvent(type="MODIFIED", object=cm("a", "12")),
            ],
            [WatchEvent(type="DELETED", object=cm("b", "13"))],
        ],
    )
    seen: list[tuple[str, str]] = []
    reflector = _reflector(client, seen)
    await _run(reflector, client)
    assert client.watch_versions == ["10", "12", "13"], "each watch resumes from the last version seen"
    assert client.list_calls == 1, "a watch that simply ended must not cause a re-list"
    assert seen == [("ADDED", "a"), ("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "b")]
    assert reflector.store.object_keys() == [ObjectKey("ns", "a")]
    assert reflector.synced.is_set()


async def test_bookmarks_advance_the_resume_point_without_events() -> None:
    bookmark = {"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"resourceVersion": "99"}}
    client = ScriptedClient(
        lists=[ObjectList([], "10")], watches=[[WatchEvent(type="BOOKMARK", object=bookmark)]]
    )
    seen: list[tuple[str, str]] = []
    await _run(_reflector(client, seen), client)
    assert client.watch_versions == ["10", "99"]
    assert seen == []


async def test_gone_relists_and_reports_what_changed_meanwhile_including_deletions() -> None:
    client = ScriptedClient(
        lists=[
            ObjectList([cm("a", "5"), cm("b", "6")], "10"),
            ObjectList([cm("a", "5"), cm("c", "40")], "50"),  # b deleted, c created while we were away
        ],
        watches=[ApiError(410, "Expired", "too old resource version: 10 (30)")],
    )
    seen: list[tuple[str, str]] = []
    reflector = _reflector(client, seen)
    await _run(reflector, client)
    assert client.list_calls == 2
    assert client.watch_versions == ["10", "50"]
    assert seen == [("ADDED", "a"), ("ADDED", "b"), ("ADDED", "c"), ("DELETED", "b")]
    assert reflector.relists == 2


async def test_connection_errors_back_off_and_resume_without_relisting() -> None:
    client = ScriptedClient(
        lists=[ObjectList([], "10")],
        watches=[TransportError("reset"), ApiError(503, "ServiceUnavailable", "busy")],
    )
    seen: list[tuple[str, str]] = []
    await _run(_reflector(client, seen), client)
    assert client.list_calls == 1
    assert client.watch_versions == ["10", "10", "10"]


async def test_a_failing_handler_does_not_stop_the_cache() -> None:
    client = ScriptedClient(
        lists=[ObjectList([], "1")],
        watches=[
            [WatchEvent(type="ADDED", object=cm("a", "2")), WatchEvent(type="ADDED", object=cm("b", "3"))]
        ],
    )

    def explode(*_: Any) -> None:
        raise RuntimeError("handler bug")

    reflector = Reflector(client, CONFIGMAP, handler=explode)
    await _run(reflector, client)
    assert len(reflector.store) == 2


async def test_relist_of_one_namespace_leaves_other_namespaces_in_a_shared_store() -> None:
    store = Store()
    store.put(cm("other", "1", namespace="elsewhere"))
    client = ScriptedClient(lists=[ObjectList([cm("a", "2")], "5")], watches=[])
    seen: list[tuple[str, str]] = []
    await _run(_reflector(client, seen, store=store, namespace="ns"), client)
    assert sorted(store.object_keys()) == [ObjectKey("elsewhere", "other"), ObjectKey("ns", "a")]


def test_store_index_follows_updates_and_removals() -> None:
    store = Store(index=lambda obj: obj["data"]["k"] or None)
    store.put(cm("a", "1", data="x"))
    store.put(cm("b", "1", data="x"))
    assert [o["metadata"]["name"] for o in store.by_index("x")] == ["a", "b"]
    store.put(cm("a", "2", data="y"))
    assert [o["metadata"]["name"] for o in store.by_index("x")] == ["b"]
    store.remove(ObjectKey("ns", "b"))
    assert store.by_index("x") == []
    assert [o["metadata"]["name"] for o in store.by_index("y")] == ["a"]


async def test_an_unexpected_watch_failure_restarts_from_a_fresh_list() -> None:
    client = ScriptedClient(
        lists=[ObjectList([cm("a", "1")], "10"), ObjectList([cm("a", "1")], "20")],
        watches=[RuntimeError("decoder bug")],
    )
    seen: list[tuple[str, str]] = []
    reflector = _reflector(client, seen)
    await _run(reflector, client)
    assert client.list_calls == 2
    assert client.watch_versions == ["10", "20"]
    assert seen == [("ADDED", "a")], "an unchanged object is not reported again after the re-list"


async def test_a_failed_async_handler_is_retried_with_the_change_delivered_again() -> None:
    # The change is taken back out of the cache, so the relist after the pause reports it again.
    client = ScriptedClient(
        lists=[ObjectList([cm("a", "1")], "10"), ObjectList([cm("a", "11", data="new")], "20")],
        watches=[[WatchEvent(type="MODIFIED", object=cm("a", "11", data="new"))]],
    )
    failures = [RuntimeError("cannot apply yet")]
    applied: list[tuple[str, str]] = []

    async def apply(change: str, obj: KubeObject, _old: KubeObject | None) -> None:
        if obj["data"]["k"] == "new" and failures:
            raise failures.pop()
        applied.append((change, obj["data"]["k"]))

    reflector = Reflector(
        client,
        CONFIGMAP,
        handler=apply,
        field_selector="metadata.name=a",
        policy=WatchPolicy(backoff=Backoff(initial_s=0.001, max_s=0.002), retry_failed_handlers=True),
    )
    await _run(reflector, client)
    assert applied == [("ADDED", ""), ("MODIFIED", "new")]
    assert client.list_calls == 2
    assert client.watch_versions == ["10", "20"]
    assert client.field_selectors == ["metadata.name=a", "metadata.name=a"]


async def test_after_each_list_the_listed_hook_sees_the_store() -> None:
    client = ScriptedClient(lists=[ObjectList([], "3")], watches=[])
    sizes: list[int] = []
    reflector = Reflector(
        client, CONFIGMAP, handler=lambda *_: None, on_listed=lambda s: sizes.append(len(s))
    )
    await _run(reflector, client)
    assert sizes == [0]
    assert reflector.synced.is_set()
