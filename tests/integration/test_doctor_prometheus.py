"""doctor's Prometheus edge against the real Prometheus: series found by the HPA's selector with their
sample times, series without the selected label still seen in the namespace, the rules API, and a
stopped Prometheus read as unreadable (never as "no series")."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
import yaml

from tests.support.polling import eventually
from tgi_autoscaler.doctor.collect import prometheus_snapshot
from tgi_autoscaler.doctor.snapshot import PrometheusSnapshot, Unreadable
from tgi_autoscaler_dev.localstack.prometheus import PrometheusServer
from tgi_autoscaler_dev.sim import Fleet
from tgi_autoscaler_dev.sim.filesd import write_file_sd

pytestmark = pytest.mark.integration


async def test_the_selected_series_their_age_and_the_loaded_rule_groups(
    running_prometheus: PrometheusServer, tmp_path: Path
) -> None:
    service = f"doc-{uuid.uuid4().hex[:6]}"
    rules = tmp_path / "rules.yml"
    rules.write_text(
        yaml.safe_dump(
            {"groups": [{"name": f"{service}.slo", "rules": [{"record": "x", "expr": "vector(1)"}]}]}
        )
    )
    await running_prometheus.set_rule_files([rules])
    try:
        async with Fleet(
            service, namespace="doc-it", replicas=2, file_sd_dir=running_prometheus.file_sd_dir
        ) as fleet:

            async def snapshot() -> PrometheusSnapshot | Unreadable:
                return await prometheus_snapshot(
                    running_prometheus.url,
                    "doc-it",
                    "tgi_queue_size",
                    f"app.kubernetes.io/instance={service}",
                )

            def complete(s: PrometheusSnapshot | Unreadable) -> bool:
                return (
                    isinstance(s, PrometheusSnapshot)
                    and not isinstance(s.selected, Unreadable)
                    and len(s.selected) == 2
                    and not isinstance(s.rule_groups, Unreadable)
                    and f"{service}.slo" in s.rule_groups
                )

            found = await eventually(
                snapshot, complete, timeout=30, what="both pods' series and the rule group"
            )
            assert isinstance(found, PrometheusSnapshot)
            assert not isinstance(found.selected, Unreadable)
            assert found.matchers == f'namespace="doc-it",app_kubernetes_io_instance="{service}"'
            assert sorted(s.labels["pod"] for s in found.selected) == sorted(p.name for p in fleet.replicas)
            for sample in found.selected:
                # timestamp() gives the scrape time of the newest sample: within a few scrape intervals.
                assert 0 <= time.time() - sample.timestamp < 10, sample
    finally:
        await running_prometheus.set_rule_files([])


async def test_series_without_the_selected_label_are_seen_in_the_namespace(
    running_prometheus: PrometheusServer,
) -> None:
    service = f"doc-{uuid.uuid4().hex[:6]}"
    async with Fleet(service, namespace="doc-nolabel", replicas=1) as fleet:
        path = running_prometheus.file_sd_dir / f"doc-nolabel_{service}.json"
        [pod] = fleet.replicas
        write_file_sd(
            path, [{"targets": [pod.address], "labels": {"namespace": "doc-nolabel", "pod": pod.name}}]
        )
        try:

            async def snapshot() -> PrometheusSnapshot | Unreadable:
                return await prometheus_snapshot(
                    running_prometheus.url,
                    "doc-nolabel",
                    "tgi_queue_size",
                    f"app.kubernetes.io/instance={service}",
                )

            def seen_unlabelled(s: PrometheusSnapshot | Unreadable) -> bool:
                return (
                    isinstance(s, PrometheusSnapshot)
                    and not isinstance(s.in_namespace, Unreadable)
                    and len(s.in_namespace) == 1
                )

            found = await eventually(snapshot, seen_unlabelled, timeout=30, what="the unlabelled series")
            assert isinstance(found, PrometheusSnapshot)
            assert found.selected == []
            assert not isinstance(found.in_namespace, Unreadable)
            assert found.in_namespace[0].labels["pod"] == pod.name
            assert "app_kubernetes_io_instance" not in found.in_namespace[0].labels
        finally:
            path.unlink()


async def test_a_stopped_prometheus_is_unreadable_not_empty(running_prometheus: PrometheusServer) -> None:
    await running_prometheus.stop()
    try:
        found = await prometheus_snapshot(running_prometheus.url, "doc-it", "tgi_queue_size", "app=x")
    finally:
        await running_prometheus.start()
    assert isinstance(found, Unreadable)
    assert running_prometheus.url in found.source
    assert "Connect" in found.error or "refused" in found.error, found.error


async def test_no_url_is_unreadable_and_says_how_to_give_one() -> None:
    found = await prometheus_snapshot(None, "doc-it", "tgi_queue_size", "app=x")
    assert isinstance(found, Unreadable)
    assert "--prometheus-url" in found.error
