"""The running controller on an in-memory API: watches drive reconciles, retries, shutdown, leadership."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from tests.support.polling import eventually
from tests.unit.controller_fakes import FakeKube
from tgi_autoscaler.controller.leader import LeaderElectionConfig
from tgi_autoscaler.controller.manager import Controller, ControllerSettings
from tgi_autoscaler.controller.own_metrics import ControllerMetrics
from tgi_autoscaler.kube.client import KubeObject
from tgi_autoscaler.kube.errors import ApiError
from tgi_autoscaler.kube.retry import Backoff, RetryPolicy
from tgi_autoscaler.render import render_service, source_from_configmap

pytestmark = pytest.mark.unit

SPEC = "model:\n  id: meta-llama/Llama-2-7b-chat-hf\nautoscaling:\n  maxReplicas: 4\n"


def _kube() -> FakeKube:
    kube = FakeKube()
    kube.discovery["/apis/monitoring.coreos.com/v1"] = {
        "resources": [{"name": "podmonitors"}, {"name": "prometheusrules"}]
    }
    kube.put(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "svc", "namespace": "ns", "labels": {"tgi-autoscaler.io/service": "true"}},
            "data": {"service.yaml": SPEC},
        }
    )
    return kube


def _controller(kube: FakeKube, **settings: Any) -> tuple[Controller, CollectorRegistry]:
    registry = CollectorRegistry()
    retry = RetryPolicy(backoff=Backoff(initial_s=0.01, max_s=0.05))
    controller = Controller(
        kube,
        ControllerSettings(retry=retry, **settings),
        metrics=ControllerMetrics.create(registry),
        build_source=source_from_configmap,
        render=render_service,
    )
    return controller, registry


@contextlib.asynccontextmanager
async def _running(controller: Controller) -> AsyncIterator[asyncio.Event]:
    stop = asyncio.Event()
    task = asyncio.create_task(controller.run(stop))
    try:
        yield stop
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


def _phase(kube: FakeKube) -> str | None:
    cm = kube.find("ConfigMap", "ns", "svc")
    raw = ((cm or {}).get("metadata", {}).get("annotations") or {}).get("tgi-autoscaler.io/status")
    return None if raw is None else str(json.loads(raw)["phase"])


def _count(registry: CollectorRegistry, result: str) -> float:
    value = registry.get_sample_value("tgi_autoscaler_controller_reconciles_total", {"result": result})
    return value or 0.0


async def test_watch_events_drive_apply_and_drift_repair() -> None:
    kube = _kube()
    controller, registry = _controller(kube)
    async with _running(controller):
        await eventually(lambda: _phase(kube) == "Ready", what="the service to become Ready")
        assert kube.find("PodMonitor", "ns", "svc") is not None
        hpa = kube.find("HorizontalPodAutoscaler", "ns", "svc")
        assert hpa is not None
        hpa["spec"]["maxReplicas"] = 40
        kube.put(hpa)  # someone else's edit, seen through the watch

        def repaired() -> bool:
            current = kube.find("HorizontalPodAutoscaler", "ns", "svc")
            return current is not None and current["spec"]["maxReplicas"] == 4

        await eventually(repaired, what="the HPA edit to be reverted")
        await eventually(lambda: _count(registry, "repaired") >= 1, what="a repaired reconcile to be counted")
        assert registry.get_sample_value("tgi_autoscaler_controller_leader") == 1
        assert registry.get_sample_value("tgi_autoscaler_controller_last_success_timestamp_seconds")


async def test_own_writes_do_not_cause_reconcile_loops() -> None:
    kube = _kube()
    controller, registry = _controller(kube)
    async with _running(controller):
        await eventually(lambda: _phase(kube) == "Ready", what="the service to become Ready")
        await asyncio.sleep(0.3)  # give any echo-triggered reconcile the chance to happen
        settled = sum(_count(registry, r) for r in ("applied", "unchanged", "repaired"))
        await asyncio.sleep(0.3)
        assert sum(_count(registry, r) for r in ("applied", "unchanged", "repaired")) == settled
        assert settled <= 3, f"{settled} reconciles for one service creation: echoes are not filtered"


async def test_transient_errors_are_retried_until_they_succeed() -> None:
    kube = _kube()
    kube.fail["dry-run"] = [
        ApiError(503, "ServiceUnavailable", "etcd"),
        ApiError(429, "TooManyRequests", "slow"),
    ]
    controller, registry = _controller(kube)
    async with _running(controller):
        await eventually(lambda: _phase(kube) == "Ready", what="the service to become Ready after retries")
    assert _count(registry, "retry") >= 1
    assert [verb for verb, _ in kube.calls].count("dry-run") > 5, "the failed dry runs were not retried"


async def test_permanent_errors_are_reported_not_retried() -> None:
    kube = _kube()
    kube.fail["dry-run"] = [ApiError(403, "Forbidden", "deployments.apps is forbidden")]
    controller, registry = _controller(kube)
    async with _running(controller):
        await eventually(lambda: _phase(kube) == "Error", what="the Error status")
        await asyncio.sleep(0.2)
        assert _count(registry, "error") == 1
        assert _count(registry, "retry") == 0
    events = [o for (kind, _, _), o in kube.objects.items() if kind == "Event"]
    assert [e["reason"] for e in events] == ["ReconcileFailed"]
    assert "forbidden" in events[0]["message"]


async def test_shutdown_lets_the_reconcile_in_flight_finish() -> None:
    kube = _kube()
    gate = asyncio.Event()
    entered = asyncio.Event()
    real_apply = kube.apply

    async def slow_apply(obj: Any, **kwargs: Any) -> KubeObject:
        entered.set()
        await gate.wait()
        return await real_apply(obj, **kwargs)

    kube.apply = slow_apply  # type: ignore[method-assign]
    controller, _ = _controller(kube)
    stop = asyncio.Event()
    task = asyncio.create_task(controller.run(stop))
    await asyncio.wait_for(entered.wait(), 10)
    stop.set()
    await asyncio.sleep(0.1)
    assert not task.done(), "shutdown did not wait for the reconcile in flight"
    gate.set()
    await asyncio.wait_for(task, 10)
    assert _phase(kube) == "Ready"


async def test_only_the_lease_holder_reconciles_and_a_clean_stop_hands_over() -> None:
    kube = _kube()

    def election(identity: str) -> LeaderElectionConfig:
        return LeaderElectionConfig(
            lease_namespace="ns",
            identity=identity,
            lease_duration_s=2.0,
            renew_deadline_s=1.5,
            retry_period_s=0.2,
        )

    first, first_registry = _controller(kube, leader_election=election("a"), identity="a")
    second, second_registry = _controller(kube, leader_election=election("b"), identity="b")
    async with _running(first) as stop_first:
        await eventually(lambda: _phase(kube) == "Ready", what="the first controller to apply")
        async with _running(second):
            await eventually(lambda: second.ready, what="the standby's caches")
            assert first.leading
            assert not second.leading
            assert sum(_count(second_registry, r) for r in ("applied", "unchanged", "repaired")) == 0
            stop_first.set()
            await eventually(
                lambda: second.leading, what="the standby to take over after the release", timeout=5
            )
            hpa = kube.find("HorizontalPodAutoscaler", "ns", "svc")
            assert hpa is not None
            hpa["spec"]["maxReplicas"] = 40
            kube.put(hpa)

            def repaired() -> bool:
                current = kube.find("HorizontalPodAutoscaler", "ns", "svc")
                return current is not None and current["spec"]["maxReplicas"] == 4

            await eventually(repaired, what="the new leader to repair drift")
    assert first_registry.get_sample_value("tgi_autoscaler_controller_leader") == 0


ROUTED = SPEC + "routing:\n  enabled: true\n  gateway: {name: gw}\n"


async def test_routing_waits_for_the_gateway_api_then_its_objects_are_watched_and_pruned() -> None:
    kube = _kube()
    configmap = kube.find("ConfigMap", "ns", "svc")
    assert configmap is not None
    configmap["data"]["service.yaml"] = ROUTED
    kube.put(configmap)
    controller, _ = _controller(kube, discovery_period_s=0.5)
    async with _running(controller):
        await eventually(lambda: _phase(kube) == "Invalid", what="a routed spec without Gateway API")
        assert kube.find("HTTPRoute", "ns", "svc") is None
        # The CRDs arrive: the next discovery check re-renders the service and watches routes.
        kube.discovery["/apis/gateway.networking.k8s.io/v1"] = {"resources": [{"name": "httproutes"}]}
        await eventually(lambda: kube.find("HTTPRoute", "ns", "svc") is not None, what="the HTTPRoute")
        await eventually(lambda: _phase(kube) == "Ready", what="the service to become Ready")
        configmap = kube.find("ConfigMap", "ns", "svc")
        assert configmap is not None
        configmap["data"]["service.yaml"] = SPEC
        kube.put(configmap)
        await eventually(lambda: kube.find("HTTPRoute", "ns", "svc") is None, what="the route to be pruned")
        assert kube.find("Deployment", "ns", "svc") is not None
