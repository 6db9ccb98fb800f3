"""Definition reloads: valid edits replace, invalid ones keep the last good set and say why."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from tests.unit.kube_fakes import CONFIGMAP_REF, ScriptedClient, configmap_event, configmap_list
from tgi_autoscaler.adapter.definitions import DefinitionStore, watch_configmap, watch_file
from tgi_autoscaler.adapter.own_metrics import AdapterMetrics
from tgi_autoscaler.kube.errors import ApiError

pytestmark = pytest.mark.unit

GOOD = "includeDefaults: false\nmetrics:\n  - {name: first, query: 'sum(a{$matchers})'}\n"
BETTER = "includeDefaults: false\nmetrics:\n  - {name: second, query: 'sum(b{$matchers})'}\n"
BROKEN = "includeDefaults: false\nmetrics:\n  - {name: third, query: 'sum(b)'}\n"


def _store() -> tuple[DefinitionStore, AdapterMetrics]:
    metrics = AdapterMetrics(CollectorRegistry())
    return DefinitionStore(metrics=metrics), metrics


def _reloads(metrics: AdapterMetrics, result: str) -> float:
    return float(metrics.config_reloads.labels(result=result)._value.get())


def test_an_invalid_edit_keeps_the_last_good_definitions() -> None:
    store, metrics = _store()
    assert not store.loaded
    assert store.apply_text(GOOD, source="t")
    assert store.names() == ["first"]
    generation = store.snapshot.generation
    assert not store.apply_text(BROKEN, source="t")
    assert store.names() == ["first"]
    assert store.snapshot.generation == generation
    assert metrics.config_last_reload_success._value.get() == 0
    assert (_reloads(metrics, "success"), _reloads(metrics, "failure")) == (1, 1)
    assert store.apply_text(BETTER, source="t")
    assert store.names() == ["second"]
    assert metrics.config_last_reload_success._value.get() == 1
    assert metrics.definitions._value.get() == 1


async def test_file_edits_are_picked_up_and_bad_ones_rejected(tmp_path: Path) -> None:
    path = tmp_path / "metrics.yaml"
    path.write_text(GOOD)
    store, metrics = _store()
    stop = asyncio.Event()
    task = asyncio.create_task(watch_file(store, path, interval_s=0.01, stop=stop))
    try:
        assert await store.wait_for_change(0, timeout=5)
        assert store.names() == ["first"]
        path.write_text(BROKEN + "\n# edited\n")
        assert await store.wait_for_attempts(2, timeout=5)
        assert _reloads(metrics, "failure") == 1
        assert store.names() == ["first"]
        path.write_text(BETTER)
        assert await store.wait_for_change(1, timeout=5)
        assert store.names() == ["second"]
    finally:
        stop.set()
        await task


async def _no_wait(seconds: float) -> None:
    await asyncio.sleep(0)


async def test_configmap_list_then_watch_resumes_and_relists_after_gone() -> None:
    source = ScriptedClient(
        lists=[configmap_list({"metrics.yaml": GOOD}, "10"), configmap_list({"metrics.yaml": BETTER}, "40")],
        watches=[
            [configmap_event("MODIFIED", {"metrics.yaml": BROKEN}, "11")],  # invalid edit: kept
            [configmap_event("BOOKMARK", None, "20")],  # a watch that ends after a bookmark
            ApiError(410, "Expired", "too old resource version"),
        ],
    )
    store, metrics = _store()
    task = asyncio.create_task(watch_configmap(store, source, CONFIGMAP_REF, sleep=_no_wait))
    try:
        assert await store.wait_for_change(1, timeout=5)
        assert store.names() == ["second"]
        assert store.snapshot.generation == 2  # GOOD, then (BROKEN rejected) BETTER after the relist
        assert source.watch_versions[:3] == ["10", "11", "20"]
        assert source.list_calls == 2
        assert _reloads(metrics, "failure") == 1
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_a_deleted_configmap_keeps_serving_the_last_definitions() -> None:
    source = ScriptedClient(
        lists=[configmap_list({"metrics.yaml": GOOD}, "1")],
        watches=[[configmap_event("DELETED", {"metrics.yaml": GOOD}, "2")]],
    )
    store, metrics = _store()
    task = asyncio.create_task(watch_configmap(store, source, CONFIGMAP_REF, sleep=_no_wait))
    try:
        assert await store.wait_for_attempts(2, timeout=5)
        assert _reloads(metrics, "failure") == 1
        assert store.names() == ["first"]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_api_errors_back_off_and_retry() -> None:
    source = ScriptedClient(
        lists=[configmap_list({"metrics.yaml": GOOD}, "1"), configmap_list({"metrics.yaml": BETTER}, "5")],
        watches=[ConnectionError("apiserver restarting")],
    )
    delays: list[float] = []

    async def sleep(seconds: float) -> None:
        delays.append(seconds)

    store, _ = _store()
    task = asyncio.create_task(watch_configmap(store, source, CONFIGMAP_REF, sleep=sleep))
    try:
        assert await store.wait_for_change(1, timeout=5)
        assert store.names() == ["second"]
        assert delays == [1.0]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
