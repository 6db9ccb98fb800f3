"""The kube-state-metrics based alerts on real series: real HPA, real Deployment, real exporter.

kube-state-metrics (built from its Go module) watches the local control plane and is scraped by the
test Prometheus, which loads the service's rendered rules with short ``for`` durations. The HPA has
``minReplicas: 3`` over a Deployment created with one replica: the HPA controller raises the
Deployment to 3, but with no kubelet no pod ever becomes available: exactly "pods not starting".
Its External metric has no adapter behind it in this namespace, so the HPA also reports
``ScalingActive=False``. The test waits until Prometheus reports both alerts (pending or firing) for
this service and checks that the alerts whose condition does not hold stay silent, and that the
dashboard's replica panel returns data on these series.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import register_component
from tgi_autoscaler.config.observability import AlertsSpec
from tgi_autoscaler.render.alerts import rule_groups
from tgi_autoscaler.render.dashboard import SeriesSource, panel_defs
from tgi_autoscaler_dev.localstack.controlplane import ControlPlane
from tgi_autoscaler_dev.localstack.kube_state_metrics import KubeStateMetrics
from tgi_autoscaler_dev.localstack.process import wait_for
from tgi_autoscaler_dev.localstack.prometheus import PrometheusServer, ScrapeJob

pytestmark = pytest.mark.e2e

SERVICE = "llama"
FAST = AlertsSpec.model_validate(
    {
        "hpaAtMax": {"for": "5s"},
        "replicasNotStarting": {"for": "5s"},
        "scalingInactive": {"for": "5s"},
        "scalingMetricAbsent": {"for": "5s"},
    }
)


@pytest.fixture(scope="module")
async def kube_state_metrics(
    control_plane: ControlPlane, prometheus: PrometheusServer, stack_dir: Path, pytestconfig: pytest.Config
) -> AsyncIterator[KubeStateMetrics]:
    ksm = KubeStateMetrics(stack_dir / "kube-state-metrics", control_plane.kubeconfig)
    register_component(pytestconfig, ksm.process)
    if not prometheus.running:
        await prometheus.start()
    await ksm.start()
    try:
        # honor_labels: the exporter's own namespace label is the object's, as in kube-prometheus.
        await prometheus.add_scrape_job(
            ScrapeJob(name="kube-state-metrics", targets=[ksm.address], honor_labels=True)
        )
        yield ksm
    finally:
        await ksm.stop()


def _deployment(namespace: str) -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": "tgi", "app.kubernetes.io/instance": SERVICE}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": SERVICE, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [{"name": "tgi", "image": "ghcr.io/huggingface/text-generation-inference"}]
                },
            },
        },
    }


def _hpa(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": SERVICE, "namespace": namespace},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": SERVICE},
            "minReplicas": 3,
            "maxReplicas": 5,
            "metrics": [
                {
                    "type": "External",
                    "external": {
                        "metric": {
                            "name": "tgi_queue_size",
                            "selector": {"matchLabels": {"app.kubernetes.io/instance": SERVICE}},
                        },
                        "target": {"type": "AverageValue", "averageValue": "10"},
                    },
                }
            ],
        },
    }


async def _alert_states(prometheus: PrometheusServer, namespace: str) -> dict[str, str]:
    result = await prometheus.query(f'ALERTS{{namespace="{namespace}", service="{SERVICE}"}}')
    return {r["metric"]["alertname"]: r["metric"]["alertstate"] for r in result}


async def test_replicas_not_starting_and_scaling_inactive_alerts_on_real_kube_state_metrics(
    control_plane: ControlPlane,
    prometheus: PrometheusServer,
    kube_state_metrics: KubeStateMetrics,
    namespace: str,
    tmp_path: Path,
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": rule_groups(SERVICE, namespace, FAST)}, sort_keys=False))
    previous = list(prometheus.rule_files)
    await prometheus.set_rule_files([*previous, rules])
    try:
        for obj, plural, group in (
            (_deployment(namespace), "deployments", "/apis/apps/v1"),
            (_hpa(namespace), "horizontalpodautoscalers", "/apis/autoscaling/v2"),
        ):
            status, body = await control_plane.request(
                "POST", f"{group}/namespaces/{namespace}/{plural}", body=obj
            )
            assert status == 201, body

        async def desired_three_available_zero() -> bool:
            desired = await prometheus.query(
                f'kube_horizontalpodautoscaler_status_desired_replicas{{namespace="{namespace}"}} == 3'
            )
            available = await prometheus.query(
                f'kube_deployment_status_replicas_available{{namespace="{namespace}"}} == 0'
            )
            return bool(desired) and bool(available)

        await wait_for(
            desired_three_available_zero, timeout=120, what="HPA desired=3 with 0 available replicas"
        )

        seen: dict[str, str] = {}

        async def both_alerts_active() -> bool:
            seen.update(await _alert_states(prometheus, namespace))
            return {"TGIReplicasNotStarting", "TGIScalingInactive"} <= set(seen)

        await wait_for(both_alerts_active, timeout=120, what="TGIReplicasNotStarting and TGIScalingInactive")

        # Firing after their 5s "for", with this service's labels and the HPA's desired count.
        async def not_starting_fires() -> bool:
            return (await _alert_states(prometheus, namespace)).get("TGIReplicasNotStarting") == "firing"

        await wait_for(not_starting_fires, timeout=60, what="TGIReplicasNotStarting firing")
        (alert,) = await prometheus.query(
            f'ALERTS{{alertname="TGIReplicasNotStarting", namespace="{namespace}", alertstate="firing"}}'
        )
        assert alert["metric"]["horizontalpodautoscaler"] == SERVICE
        assert alert["metric"]["severity"] == "critical"

        # Conditions that do not hold here stay silent: 3 replicas < max 5, and no replica is
        # available, so a missing queue metric is not (yet) a broken scaling signal.
        states = await _alert_states(prometheus, namespace)
        assert "TGIAutoscalerAtMaxReplicas" not in states, states
        assert "TGIScalingMetricAbsent" not in states, states

        # The dashboard's replica panel reads the same series.
        now = time.time()
        for panel in panel_defs("tgi"):
            for query in panel.queries:
                if query.source is not SeriesSource.KUBE_STATE_METRICS:
                    continue
                expr = query.expr.replace("$namespace", namespace).replace("$service", SERVICE)
                assert await prometheus.query(expr), (panel.title, query.legend, expr, now)
    finally:
        await prometheus.set_rule_files(previous)
