"""The reconciler against an in-memory API store, with the real spec parser and renderer."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.unit.controller_fakes import FakeKube
from tgi_autoscaler.controller.apply import ObjectRef, owner_of
from tgi_autoscaler.controller.events import EventRecorder
from tgi_autoscaler.controller.reconciler import Reconciler, ReconcilerSettings
from tgi_autoscaler.kube.client import KubeObject
from tgi_autoscaler.kube.errors import ApiError, FieldCause
from tgi_autoscaler.kube.watch import ObjectKey
from tgi_autoscaler.render import render_service, source_from_configmap

pytestmark = pytest.mark.unit

KEY = ObjectKey("llm", "llama")
SPEC = """\
model:
  id: meta-llama/Llama-2-7b-chat-hf
autoscaling:
  minReplicas: 1
  maxReplicas: 4
  queue:
    targetPerReplica: 10
"""


class FakeCaches:
    """Perfectly synced caches: a view of the fake API store."""

    def __init__(self, kube: FakeKube) -> None:
        self.kube = kube

    def service(self, key: ObjectKey) -> KubeObject | None:
        obj = self.kube.find("ConfigMap", key.namespace, key.name)
        labels = (obj or {}).get("metadata", {}).get("labels") or {}
        return obj if labels.get("tgi-autoscaler.io/service") == "true" else None

    def owned(self, key: ObjectKey) -> list[KubeObject]:
        return [copy.deepcopy(o) for o in self.kube.objects.values() if owner_of(o) == key]

    def cached(self, ref: ObjectRef) -> KubeObject | None:
        return self.kube.find(ref.kind, ref.namespace, ref.name)

    def remember_service(self, configmap: KubeObject) -> None:
        """Nothing to do: this view is never stale."""


def _service_configmap(spec: str = SPEC) -> KubeObject:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "llama", "namespace": "llm", "labels": {"tgi-autoscaler.io/service": "true"}},
        "data": {"service.yaml": spec},
    }


def _reconciler(
    kube: FakeKube,
    *,
    operator: bool = True,
    settings: ReconcilerSettings | None = None,
    wall_clock: Callable[[], float] = time.time,
) -> tuple[Reconciler, EventRecorder]:
    recorder = EventRecorder(kube, instance="test")
    reconciler = Reconciler(
        kube,
        FakeCaches(kube),
        recorder,
        build_source=source_from_configmap,
        render=render_service,
        prometheus_operator=lambda: operator,
        settings=settings,
        wall_clock=wall_clock,
    )
    return reconciler, recorder


def _status(kube: FakeKube) -> dict[str, Any]:
    cm = kube.find("ConfigMap", "llm", "llama")
    assert cm is not None
    return dict(json.loads(cm["metadata"]["annotations"]["tgi-autoscaler.io/status"]))


def _edit_spec(kube: FakeKube, spec: str) -> None:
    cm = kube.find("ConfigMap", "llm", "llama")
    assert cm is not None
    cm["data"]["service.yaml"] = spec
    kube.put(cm)


async def test_valid_spec_is_dry_run_then_applied_and_reported() -> None:
    kube = FakeKube()
    kube.put(_service_configmap())
    reconciler, recorder = _reconciler(kube)
    outcome = await reconciler.reconcile(KEY)
    assert outcome.result == "applied"
    kinds = {k for (k, ns, _) in kube.objects if ns == "llm"}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodMonitor", "PrometheusRule"} <= kinds
    verbs = [verb for verb, _ in kube.calls if verb in ("dry-run", "apply")]
    first_apply = verbs.index("apply")
    assert set(verbs[:first_apply]) == {"dry-run"}, "every object is validated before any is changed"
    assert verbs.count("dry-run") == verbs.count("apply")
    deployment = kube.find("Deployment", "llm", "llama")
    assert deployment is not None
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    assert deployment["metadata"]["labels"]["tgi-autoscaler.io/owner-name"] == "llama"
    status = _status(kube)
    assert status["phase"] == "Ready"
    assert status["minReplicas"] == 1
    assert status["maxReplicas"] == 4
    assert status["queueMetric"] == "tgi_request_demand"  # the metric the HPA scales on
    assert "HorizontalPodAutoscaler/llm/llama" in status["objects"]
    assert [(e.type, e.reason) for e in recorder.recorded] == [("Normal", "Applied")]


async def test_unchanged_spec_reconciles_without_writes() -> None:
    kube = FakeKube()
    kube.put(_service_configmap())
    reconciler, recorder = _reconciler(kube)
    await reconciler.reconcile(KEY)
    kube.calls.clear()
    events_before = len(recorder.recorded)
    outcome = await reconciler.reconcile(KEY)
    assert outcome.result == "unchanged"
    assert kube.writes() == [], "the caches prove every object is as applied: nothing to send"
    assert len(recorder.recorded) == events_before


async def test_unchanged_spec_is_re_applied_once_the_verify_period_has_passed() -> None:
    kube = FakeKube()
    kube.put(_service_configmap())
    reconciler, _ = _reconciler(kube, settings=ReconcilerSettings(verify_period_s=0.0))
    await reconciler.reconcile(KEY)
    kube.calls.clear()
    outcome = await reconciler.reconcile(KEY)
    assert outcome.result == "unchanged"
    assert {verb for verb, _ in kube.writes()} == {"apply"}, "a full apply, without dry run or status write"


async def test_invalid_edit_changes_nothing_and_names_the_field() -> None:
    kube = FakeKube()
    kube.put(_service_configmap())
    reconciler, recorder = _reconciler(kube)
    await reconciler.reconcile(KEY)
    before = copy.deepcopy({k: v for k, v in kube.objects.items() if k[0] not in ("ConfigMap", "Event")})
    _edit_spec(kube, SPEC.replace("minReplicas: 1", "minReplicas: 9"))
    kube.calls.clear()
    outcome = await reconciler.reconcile(KEY)
    assert outcome.result == "invalid"
    assert [c for c in kube.writes() if c[0] in ("apply", "dry-run", "delete")] == []
    assert {k: v for k, v in kube.objects.items() if k[0] not in ("ConfigMap", "Event")} == before
    warning = recorder.recorded[-1]
    assert (warning.type, warning.reason) == ("Warning", "InvalidSpec")
    assert "autoscaling" in warning.message
    assert "minReplicas" in warning.message
    status = _status(kube)
    assert status["phase"] == "Invalid"
    assert "minReplicas" in status["message"]
    assert "keeps running" in status["message"]
    assert status["maxReplicas"] == 4, "the status still describes what runs"


async def test_spec_that_is_not_yaml_is_invalid_not_a_crash() -> None:
    kube = FakeKube()
    kube.put(_service_configmap("model: [unclosed"))
    reconciler, _ = _reconciler(kube)
    outcome = await reconciler.reconcile(KEY)
    assert outcome.result == "invalid"
    assert "YAML" in _status(kube)["message"]


async def test_object_rejected_by_the_api_server_in_the_dry_run_changes_nothing() -> None:
    kube = FakeKube()
    kube.put(_service_configmap())
    reconciler, recorder = _reconciler(kube)
    rejection = ApiError(
        422,
        "Invalid",
        "PodMonitor is invalid",
        causes=(FieldCause("spec.podMetricsEndpoints[0].interval", "FieldValueInvalid", "bad duration"),),
    )
    original_apply = kube.apply

    async def reject_pod_monitor(obj: Any, **kwargs: Any) -> KubeObject:
        if obj["kind"] == "PodMonitor" and kwargs.get("dry_run"):
            raise rejection
        return await original_apply(obj, **kwargs)

    kube.apply = reject_pod_monitor  # type: ignore[method-assign]
    outcome = await reconciler.reconcile(KEY)
    assert outcome.result == "invalid"
    assert [k for k in kube.objects if k[0] not in ("ConfigMap", "Event")] == []
    status = _status(kube)
    assert "PodMonitor llm/llama rejected" in status["message"]
    assert "spec.podMetricsEndpoints[0].interval" in status["message"]
    assert recorder.recorded[-1].reason == "ApplyRejected"


async def test_an_hpa_refused_for_min_replicas_zero_names_the_scale_to_zero_requirement() -> None:
    kube = FakeKube()
    kube.put(
        _service_configmap(
            SPEC.replace("minReplicas: 1", "minReplicas: 0").replace(
                "  queue:\n    targetPerReplica: 10\n", ""
            )
        )
    )
    kube.discovery["/version"] = {"major": "1", "minor": "36", "gitVersion": "v1.36.3"}
    reconciler, recorder = _reconciler(kube)
    # What kube-apiserver answers with HPAScaleToZero off (declarative validation of minReplicas).
    rejection = ApiError(
        422,
        "Invalid",
        'HorizontalPodAutoscaler.autoscaling "llama" is invalid',
        causes=(FieldCause("spec.minReplicas", "FieldValueInvalid", "must be greater than or equal to 1"),),
    )
    original_apply = kube.apply

    async def refuse_zero(obj: Any, **kwargs: Any) -> KubeObject:
        if obj["kind"] == "HorizontalPodAutoscaler" and obj["spec"]["minReplicas"] == 0:
            raise rejection
        return await original_apply(obj, **kwargs)

    kube.apply = refuse_zero  # type: ignore[method-assign]
    outcome = await reconciler.reconcile(KEY)
    assert outcome.result == "invalid"
    assert [k for k in kube.objects if k[0] not in ("ConfigMap", "Event")] == []
    message = _status(kube)["message"]
    assert message.startswith("autoscaling.minReplicas: 0 needs the HPA's native scale to zero")
    assert "(v1.36.3)" in message
    assert recorder.recorded[-1].reason == "ScaleToZeroUnsupported"


async def test_manual_change_to_a_managed_object_is_repaired_and_reported() -> None:
    kube = FakeKube()
    kube.put(_service_configmap())
    reconciler, recorder = _reconciler(kube)
    await reconciler.reconcile(KEY)
    hpa = kube.find("HorizontalPodAutoscaler", "llm", "llama")
    assert hpa is not None
    hpa["spec"]["maxReplicas"] = 99
    kube.put(hpa)
    outcome = await reconciler.reconcile(KEY)
    assert outcome.result == "repaired"
    repaired = kube.find("HorizontalPodAutoscaler", "llm", "llama")
    assert repaired is not None
    assert repaired["spec"]["maxReplicas"] == 4
    assert recorder.recorded[-1].reason == "DriftRepaired"
    assert "HorizontalPodAutoscaler/llm/llama" in recorder.recorded[-1].message


async def test_objects_no_longer_rendered_are_pruned() -> None:
    kube = FakeKube()
    with_ingress = SPEC + "ingress:\n  enabled: true\n  host: llm.example.com\n"
    kube.put(_service_configmap(with_ingress))
    reconciler, _ = _reconciler(kube)
    await reconciler.reconcile(KEY)
    assert kube.find("Ingress", "llm", "llama") is not None
    _edit_spec(kube, SPEC)
    outcome = await reconciler.reconcile(KEY)
    assert kube.find("Ingress", "llm", "llama") is None
    assert "deleted Ingress/llm/llama" in outcome.changed


async def test_without_prometheus_operator_pods_get_scrape_annotations_and_a_warning() -> None:
    kube = FakeKube()
    kube.put(_service_configmap())
    reconciler, recorder = _reconciler(kube, operator=False)
    await reconciler.reconcile(KEY)
    assert not any(k[0] in ("PodMonitor", "PrometheusRule") for k in kube.objects)
    deployment = kube.find("Deployment", "llm", "llama")
    assert deployment is not None
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    warnings = [e for e in recorder.recorded if e.type == "Warning"]
    assert [e.reason for e in warnings] == ["PrometheusOperatorMissing"]
    assert _status(kube)["prometheusOperator"] is False


async def test_deleted_configmap_leaves_in_namespace_objects_to_the_garbage_collector() -> None:
    kube = FakeKube()
    kube.put(_service_configmap())
    reconciler, _ = _reconciler(kube)
    await reconciler.reconcile(KEY)
    dashboard = kube.put(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "llm-llama-dashboard",
                "namespace": "grafana",
                "labels": {
                    "tgi-autoscaler.io/owner-namespace": "llm",
                    "tgi-autoscaler.io/owner-name": "llama",
                },
            },
        }
    )
    del kube.objects[("ConfigMap", "llm", "llama")]
    outcome = await reconciler.reconcile(KEY)
    assert outcome.result == "deleted"
    assert kube.find("ConfigMap", "grafana", dashboard["metadata"]["name"]) is None
    assert kube.find("Deployment", "llm", "llama") is not None, "left to the garbage collector"


async def test_configmap_that_lost_its_service_label_is_no_longer_managed() -> None:
    kube = FakeKube()
    kube.put(_service_configmap())
    reconciler, _ = _reconciler(kube)
    await reconciler.reconcile(KEY)
    cm = kube.find("ConfigMap", "llm", "llama")
    assert cm is not None
    cm["metadata"]["labels"] = {}
    kube.put(cm)
    await reconciler.reconcile(KEY)
    assert [k for k in kube.objects if k[0] != "Event" and k != ("ConfigMap", "llm", "llama")] == []


async def test_transient_errors_propagate_for_the_retry_policy() -> None:
    kube = FakeKube()
    kube.put(_service_configmap())
    reconciler, _ = _reconciler(kube)
    kube.fail["apply"] = [ApiError(503, "ServiceUnavailable", "etcd leader changed")]
    with pytest.raises(ApiError) as raised:
        await reconciler.reconcile(KEY)
    assert raised.value.status == 503


async def test_our_own_writes_are_recognised_as_echoes() -> None:
    kube = FakeKube()
    kube.put(_service_configmap())
    reconciler, _ = _reconciler(kube)
    await reconciler.reconcile(KEY)
    hpa = kube.find("HorizontalPodAutoscaler", "llm", "llama")
    assert hpa is not None
    assert reconciler.expectations.matches(hpa)
    hpa["status"] = {"conditions": [{"type": "AbleToScale", "status": "True"}]}
    assert reconciler.expectations.matches(hpa), "a status change is not drift"
    hpa["spec"]["maxReplicas"] = 40
    assert not reconciler.expectations.matches(hpa)
