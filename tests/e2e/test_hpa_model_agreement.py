"""The pure HPA model (``tgi_autoscaler.hpa``) agrees with the real HorizontalPodAutoscaler.

``what-if`` and the scaling docs are only worth reading if their arithmetic is the cluster's. Each
case here holds a fixed queue in Prometheus (a static exporter published through file_sd, so the
value cannot drift), lets the real HPA controller read it through the aggregation layer and our
adapter, and compares the replica count it settles on with what ``hpa.step`` computes for the same
spec, the same reading and the same starting replicas.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.e2e.conftest import RunningAdapter
from tgi_autoscaler.hpa import Behavior, HpaSpec, HpaState, PolicyType, ScalingPolicy, ScalingRules, step
from tgi_autoscaler.hpa.spec_input import behavior_to_manifest
from tgi_autoscaler_dev.localstack.controlplane import ControlPlane
from tgi_autoscaler_dev.localstack.process import wait_for
from tgi_autoscaler_dev.localstack.prometheus import PrometheusServer

pytestmark = pytest.mark.e2e

SERVICE = "model-check"
LABELS = {"app.kubernetes.io/name": "tgi", "app.kubernetes.io/instance": SERVICE}


@dataclass(frozen=True)
class Case:
    id: str
    queue: float
    target: float
    min_replicas: int
    max_replicas: int
    behavior: Behavior | None


def _policies(*policies: tuple[PolicyType, int, int]) -> tuple[ScalingPolicy, ...]:
    return tuple(ScalingPolicy(type=t, value=v, period_seconds=p) for t, v, p in policies)


CASES = [
    # No behavior: the legacy scale-up limit max(2 x current, 4) caps 1 -> 8 at 4.
    Case("no-behavior-legacy-limit", queue=75, target=10, min_replicas=1, max_replicas=10, behavior=None),
    # Pods policy: at most 2 pods per 60 s, so 1 -> 3 and it stays there for the period.
    Case(
        "pods-policy",
        queue=75,
        target=10,
        min_replicas=1,
        max_replicas=10,
        behavior=Behavior(
            scale_up=ScalingRules(
                stabilization_window_seconds=0, policies=_policies((PolicyType.PODS, 2, 60))
            )
        ),
    ),
    # Percent policy, selectPolicy Max over Pods 1: 200% of 1 = +2 -> 3.
    Case(
        "percent-policy",
        queue=75,
        target=10,
        min_replicas=1,
        max_replicas=10,
        behavior=Behavior(
            scale_up=ScalingRules(
                stabilization_window_seconds=0,
                policies=_policies((PolicyType.PERCENT, 200, 60), (PolicyType.PODS, 1, 60)),
            )
        ),
    ),
    # Within tolerance: 10.5 against a target of 10 is a ratio of 1.05 < 1.1: no change.
    Case("within-tolerance", queue=10.5, target=10, min_replicas=1, max_replicas=10, behavior=None),
    # Clamped at maxReplicas.
    Case(
        "clamped-at-max",
        queue=500,
        target=10,
        min_replicas=1,
        max_replicas=3,
        behavior=Behavior(scale_up=ScalingRules(stabilization_window_seconds=0)),
    ),
]


@contextlib.asynccontextmanager
async def static_queue(prometheus: PrometheusServer, namespace: str, value: float) -> AsyncIterator[None]:
    """One fake pod whose ``tgi_queue_size`` is fixed, scraped with the labels a real pod's has."""

    async def metrics(_: web.Request) -> web.Response:
        text = f"# TYPE tgi_queue_size gauge\ntgi_queue_size {value}\n"
        return web.Response(text=text, content_type="text/plain")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    labels = {"namespace": namespace, "pod": f"{SERVICE}-0"}
    labels.update({k.replace(".", "_").replace("/", "_"): v for k, v in LABELS.items()})
    sd_file: Path = prometheus.file_sd_dir / f"model-check-{uuid.uuid4().hex[:6]}.json"
    tmp = sd_file.with_suffix(".tmp")
    tmp.write_text(json.dumps([{"targets": [f"127.0.0.1:{port}"], "labels": labels}]))
    tmp.replace(sd_file)
    try:
        yield
    finally:
        await asyncio.to_thread(sd_file.unlink, missing_ok=True)
        await runner.cleanup()


def _objects(namespace: str, case: Case) -> list[dict[str, Any]]:
    hpa_spec: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": SERVICE},
        "minReplicas": case.min_replicas,
        "maxReplicas": case.max_replicas,
        "metrics": [
            {
                "type": "External",
                "external": {
                    "metric": {
                        "name": "tgi_queue_size",
                        "selector": {"matchLabels": {"app.kubernetes.io/instance": SERVICE}},
                    },
                    "target": {"type": "AverageValue", "averageValue": str(case.target)},
                },
            }
        ],
    }
    if case.behavior is not None:
        hpa_spec["behavior"] = behavior_to_manifest(case.behavior)
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": SERVICE, "namespace": namespace},
            "spec": {
                "replicas": case.min_replicas,
                "selector": {"matchLabels": LABELS},
                "template": {
                    "metadata": {"labels": LABELS},
                    "spec": {"containers": [{"name": "tgi", "image": "registry.invalid/tgi:1"}]},
                },
            },
        },
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": SERVICE, "namespace": namespace},
            "spec": hpa_spec,
        },
    ]


SYNC_PERIOD_S = 2.0  # the test control plane's --horizontal-pod-autoscaler-sync-period
SYNCS = 5


def _model_rescales(case: Case) -> list[int]:
    """The sizes the model's HPA rescales to over ``SYNCS`` syncs with a constant reading."""
    spec = HpaSpec(
        min_replicas=case.min_replicas,
        max_replicas=case.max_replicas,
        target_average_value=case.target,
        behavior=case.behavior,
    )
    state = HpaState(current_replicas=case.min_replicas)
    sizes: list[int] = []
    for i in range(SYNCS):
        state, decision = step(state, i * SYNC_PERIOD_S, case.queue, spec)
        if decision.rescale and decision.desired_replicas != decision.current_replicas:
            sizes.append(decision.desired_replicas)
    return sizes


async def _elapsed(since: float, seconds: float) -> bool:
    return time.monotonic() - since >= seconds


async def _rescale_sizes(control_plane: ControlPlane, namespace: str) -> list[int]:
    """The sizes of the real HPA's SuccessfulRescale events, oldest first."""
    _, events = await control_plane.request(
        "GET",
        f"/api/v1/namespaces/{namespace}/events"
        "?fieldSelector=involvedObject.kind%3DHorizontalPodAutoscaler,reason%3DSuccessfulRescale",
    )
    items = sorted(
        events["items"],
        key=lambda e: (
            e.get("firstTimestamp") or e["metadata"]["creationTimestamp"],
            int(e["metadata"]["resourceVersion"]),
        ),
    )
    return [int(e["message"].split(";")[0].removeprefix("New size: ")) for e in items]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_real_hpa_rescales_exactly_as_the_model_says(
    case: Case,
    adapter: RunningAdapter,
    control_plane: ControlPlane,
    running_prometheus: PrometheusServer,
    namespace: str,
) -> None:
    expected = _model_rescales(case)
    final = expected[-1] if expected else case.min_replicas
    async with static_queue(running_prometheus, namespace, case.queue):
        # The adapter must see the value before the HPA exists, so its first sync reads it.
        async def visible() -> bool:
            status, body = await control_plane.request(
                "GET",
                f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{namespace}/tgi_queue_size"
                f"?labelSelector=app.kubernetes.io%2Finstance%3D{SERVICE}",
            )
            return status == 200 and bool(body["items"])

        await wait_for(visible, timeout=30, what="the static queue through the aggregation layer")
        deployment_obj, hpa_obj = _objects(namespace, case)
        deployment_path = f"/apis/apps/v1/namespaces/{namespace}/deployments"
        status, body = await control_plane.request("POST", deployment_path, body=deployment_obj)
        assert status == 201, body

        # The real HPA divides an AverageValue target by the scale's status.replicas, not its spec:
        # a first sync that sees status.replicas == 0 (the ReplicaSet has not reported its pods yet)
        # gets an infinite ratio, skips the tolerance and scales to ceil(queue / target). The model
        # starts from replicas that exist, so the HPA is created once the Deployment reports them.
        async def pods_reported() -> bool:
            _, live = await control_plane.request("GET", f"{deployment_path}/{SERVICE}")
            return int(live.get("status", {}).get("replicas", 0)) == case.min_replicas

        await wait_for(pods_reported, timeout=30, what="the Deployment to report its pods")
        status, body = await control_plane.request(
            "POST", f"/apis/autoscaling/v2/namespaces/{namespace}/horizontalpodautoscalers", body=hpa_obj
        )
        assert status == 201, body

        hpa_path = f"/apis/autoscaling/v2/namespaces/{namespace}/horizontalpodautoscalers/{SERVICE}"

        async def read_metric() -> bool:
            _, hpa = await control_plane.request("GET", hpa_path)
            return bool(hpa.get("status", {}).get("currentMetrics"))

        await wait_for(read_metric, timeout=60, what="the HPA to read the metric")
        seen: list[list[int]] = []

        async def rescaled_as_modelled() -> bool:
            seen.append(await _rescale_sizes(control_plane, namespace))
            return seen[-1] == expected

        try:
            await wait_for(
                rescaled_as_modelled, timeout=60, what=f"rescale events {expected} (model) for {case.id}"
            )
        except TimeoutError as exc:
            # The message is built once the wait is over, so it shows what the real HPA did.
            last = seen[-1] if seen else "no event list could be read"
            raise AssertionError(f"{exc}; the real HPA's rescales: {last}") from exc
        # And nothing more happens over the model's window of syncs.
        settled_at = time.monotonic()
        await wait_for(
            lambda: _elapsed(settled_at, SYNCS * SYNC_PERIOD_S),
            timeout=SYNCS * SYNC_PERIOD_S + 5,
            what="the model's window of syncs",
        )
        assert await _rescale_sizes(control_plane, namespace) == expected
        _, deployment = await control_plane.request(
            "GET", f"/apis/apps/v1/namespaces/{namespace}/deployments/{SERVICE}"
        )
        assert deployment["spec"]["replicas"] == final
