"""A model switch (blue-green rollout) with the KEDA backend, through KEDA's real operator.

The controller runs with ``--autoscaler keda``; KEDA v2.21's operator and metrics API server (the
``keda`` fixture) turn its ScaledObject into the HPA ``keda-hpa-<service>``. The service's pods are
real (kube-scheduler, kwok GPU nodes) and simulated replicas follow them and export their queue to
Prometheus, which KEDA's ``prometheus`` trigger reads; clients go through a front routing as the live
Service selects (``service_front`` of ``test_controller_rollout_e2e``). Load makes KEDA scale the
first Deployment above ``minReplicas``, then the model is changed: the candidate ``<service>-<hash>``
starts at the serving Deployment's size, and once Ready the controller switches, in one apply, the
Service selector and the ScaledObject's ``scaleTargetRef``. Asserted on the real objects: KEDA's
HPA is updated in place (same uid) to target the candidate, the ScaledObject's status still names a
Deployment and stays Ready, the previous Deployment's replica count is not touched again until it
is deleted after its grace period, KEDA then scales the new Deployment on the metric (up to
``maxReplicas`` under more load, down to ``minReplicas`` without it), and no request failed.

What KEDA's operator does with a changed ``scaleTargetRef`` (kedacore/keda read at 8b4f083, the
development branch after v2.20.2, and compared with the v2.21.0 module the binaries are built from:
``scaledobject_controller.go``, ``hpa.go``, ``gvkr_types.go`` and ``fallback.go`` are identical there,
the executor, resolver and webhook differ only in timeouts, error reporting and warnings):

- ``controllers/keda/scaledobject_controller.go``: the controller watches ScaledObjects with
  ``predicate.GenerationChangedPredicate``, so our apply of a new ``scaleTargetRef.name`` (a spec
  change, a new generation) triggers ``reconcileScaledObject``. ``checkTargetResourceIsScalable``
  reads the new target's ``/scale``; it rewrites ``status.scaleTargetKind``/``scaleTargetGVKR``
  only when the group/version/kind differ: ``GroupVersionKindResource``
  (``apis/keda/v1alpha1/gvkr_types.go``) has no name, so from one Deployment to another the status
  is unchanged by design; the name lives only in ``spec.scaleTargetRef``.
- ``ensureHPAForScaledObjectExists`` finds the existing HPA (same ``advanced...name``, so not
  ``isHpaRenamed``) and calls ``updateHPAIfNeeded`` (``controllers/keda/hpa.go``): the HPA is
  rebuilt by ``newHPAForScaledObject``, whose ``scaleTargetRef.name`` is the ScaledObject's, and
  ``equality.Semantic.DeepDerivative`` sees the changed name, so ``Client.Update`` rewrites the HPA
  in place; then ``scaledObjectGenerationChanged`` restarts the scale loop with the new object
  (``pkg/scaling/scale_handler.go``, ``HandleScalableObject``; ``checkScalers`` also re-reads the
  ScaledObject on every poll).
- The scale loop (``pkg/scaling/executor/scale_scaledobjects.go``, ``RequestScale``, and
  ``pkg/scaling/resolver/scale_resolvers.go``, ``GetCurrentReplicas``) and the ``currentReplicas``
  fallback (``pkg/fallback/fallback.go``) read the target by ``spec.scaleTargetRef.name`` each time,
  so nothing keeps addressing the old Deployment; ``status.originalReplicaCount`` stays the first
  target's, used only on deletion with ``restoreToOriginalReplicaCount`` (not set by us).
- Not exercised here: KEDA's admission webhook (``apis/keda/v1alpha1/scaledobject_webhook.go``) is
  not run by the local stack; on an update it rejects a ``scaleTargetRef`` already managed by
  another ScaledObject or by an HPA it does not own, neither of which a switch creates (the KEDA
  backend renders no HPA of ours).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from kubernetes_asyncio import client as k8s_client

from tests.e2e.conftest import GpuNodes
from tests.e2e.controller_harness import events_for, status_of
from tests.e2e.test_controller_rollout_e2e import (
    NAME,
    NEW_MODEL,
    OLD_MODEL,
    _deployment,
    _edit,
    service_front,
    serving_service,
    spec,
)
from tgi_autoscaler.config.service import parse_service_yaml
from tgi_autoscaler.kube.client import ApiKubeClient, KubeObject
from tgi_autoscaler.kube.resources import HPA, SCALEDOBJECT
from tgi_autoscaler.render import KedaOptions
from tgi_autoscaler.render.keda import keda_hpa_name
from tgi_autoscaler.render.rollout import candidate_name, model_hash
from tgi_autoscaler_dev.localstack.controlplane import ControlPlane
from tgi_autoscaler_dev.localstack.process import background, wait_for
from tgi_autoscaler_dev.localstack.prometheus import PrometheusServer
from tgi_autoscaler_dev.sim.model import ReplicaConfig

# Needs KEDA's binaries (`localstack build --with-keda`); fails, naming that build, without them.
pytestmark = [pytest.mark.e2e, pytest.mark.keda]

MAX_REPLICAS = 4
AUTOSCALING = f"""\
  minReplicas: 1
  maxReplicas: {MAX_REPLICAS}
  signal: queue
  queue:
    targetPerReplica: 2
  scaleDown:
    stabilizationWindowSeconds: 10
    policies: [{{type: Pods, value: 4, periodSeconds: 1}}]
"""
# One sequence at a time (0.5 s for a client's 5 tokens): with C clients in a closed loop, R
# replicas keep about C - R requests waiting, and KEDA's HPA asks for ceil((C - R) / 2): the 2
# clients sending all along settle at 1 replica, 6 at 2 or 3 (never 4), 12 at 4.
CONFIG = ReplicaConfig(max_batch_size=1, token_rate=10.0)
CLIENTS = 2
LOAD_BEFORE, LOAD_AFTER = 4, 6  # more clients from before the edit; more again after the switch


@dataclass(frozen=True)
class Sample:
    """What the switch moves, as the API server has it at one instant (event loop clock)."""

    at: float
    scaled_object_target: str | None
    keda_hpa_target: str | None
    old_replicas: int | None  # None: the previous Deployment is gone
    new_replicas: int | None  # None: no candidate yet


def _target(obj: KubeObject | None) -> str | None:
    return None if obj is None else str(obj["spec"]["scaleTargetRef"]["name"])


def _replicas(deployment: KubeObject | None) -> int | None:
    return None if deployment is None else int(deployment["spec"].get("replicas", 1))


async def _record(admin: ApiKubeClient, namespace: str, candidate: str, samples: list[Sample]) -> None:
    clock = asyncio.get_running_loop().time
    while True:
        scaled = await admin.get(SCALEDOBJECT, namespace, NAME)
        hpa = await admin.get(HPA, namespace, keda_hpa_name(NAME))
        old = await _deployment(admin, namespace, NAME)
        new = await _deployment(admin, namespace, candidate)
        samples.append(Sample(clock(), _target(scaled), _target(hpa), _replicas(old), _replicas(new)))
        await asyncio.sleep(0.25)


def _first(samples: list[Sample], what: str, predicate: Callable[[Sample], bool]) -> Sample:
    found = next((s for s in samples if predicate(s)), None)
    assert found is not None, f"never observed: {what}"
    return found


@pytest.mark.timeout(900)
async def test_a_model_switch_moves_kedas_hpa_to_the_new_deployment_which_keda_then_scales(
    control_plane: ControlPlane,
    keda: None,
    running_prometheus: PrometheusServer,
    kube_api: k8s_client.ApiClient,
    gpu_nodes: GpuNodes,
    namespace: str,
) -> None:
    admin = ApiKubeClient(kube_api)
    clock = asyncio.get_running_loop().time
    pool = await gpu_nodes(count=2, gpus_per_node=MAX_REPLICAS)  # both Deployments at maxReplicas
    old_spec = spec(pool, OLD_MODEL, autoscaling=AUTOSCALING, ready_timeout_s=120)
    new_spec = spec(pool, NEW_MODEL, autoscaling=AUTOSCALING, ready_timeout_s=120)
    new_hash = model_hash(parse_service_yaml(new_spec, source="test"))
    candidate = candidate_name(NAME, new_hash)
    hpa_name = keda_hpa_name(NAME)
    options = KedaOptions(prometheus_url=running_prometheus.url, polling_interval_s=2, failure_threshold=3)

    async def replicas(name: str) -> int | None:
        return _replicas(await _deployment(admin, namespace, name))

    async def keda_hpa() -> KubeObject | None:
        return await admin.get(HPA, namespace, hpa_name)

    async def scaled_object() -> KubeObject | None:
        return await admin.get(SCALEDOBJECT, namespace, NAME)

    samples: list[Sample] = []
    async with serving_service(
        control_plane,
        admin,
        namespace,
        old_spec,
        pods=1,
        config=CONFIG,
        file_sd_dir=running_prometheus.file_sd_dir,
        autoscaler="keda",
        keda=options,
    ) as fleet:

        async def keda_hpa_on_first() -> bool:
            return _target(await keda_hpa()) == NAME

        await wait_for(keda_hpa_on_first, timeout=120, what="KEDA to create its HPA for the first Deployment")
        hpa_before = await keda_hpa()
        scaled_before = await scaled_object()
        assert hpa_before is not None
        assert scaled_before is not None
        assert await admin.get(HPA, namespace, NAME) is None  # no HPA of ours beside KEDA's

        async with service_front(fleet, admin, namespace, new_hash, users=CLIENTS) as traffic:
            async with service_front(fleet, admin, namespace, new_hash, users=LOAD_BEFORE) as before:

                async def above_min() -> bool:
                    return (await replicas(NAME) or 0) >= 2

                await wait_for(
                    above_min, timeout=180, interval=0.5, what="KEDA to scale the first Deployment"
                )
                serving_before = await replicas(NAME)
                edited = clock()
                await _edit(admin, namespace, new_spec)
                async with background(_record(admin, namespace, candidate, samples), "record-switch"):

                    async def switched() -> bool:
                        return traffic.switched_at is not None

                    await wait_for(switched, timeout=120, interval=0.1, what="the Service to switch")

                    async def keda_hpa_on_candidate() -> bool:
                        return _target(await keda_hpa()) == candidate

                    await wait_for(
                        keda_hpa_on_candidate, timeout=60, interval=0.1, what="KEDA's HPA to follow"
                    )
                    async with service_front(fleet, admin, namespace, new_hash, users=LOAD_AFTER) as later:

                        async def at_max() -> bool:
                            hpa = await keda_hpa() or {}
                            desired = (hpa.get("status") or {}).get("desiredReplicas")
                            return desired == MAX_REPLICAS and await replicas(candidate) == MAX_REPLICAS

                        await wait_for(
                            at_max, timeout=180, interval=0.5, what="KEDA to scale the new Deployment up"
                        )
                        scaled_up = clock()

                        async def old_deleted() -> bool:
                            return await _deployment(admin, namespace, NAME) is None

                        await wait_for(
                            old_deleted, timeout=60, interval=0.5, what="the previous Deployment's deletion"
                        )
                    await asyncio.sleep(1)  # a last sample after the deletion

            async def at_min() -> bool:
                hpa = await keda_hpa() or {}
                desired = (hpa.get("status") or {}).get("desiredReplicas")
                return desired == 1 and await replicas(candidate) == 1

            await wait_for(at_min, timeout=240, interval=0.5, what="KEDA to scale the new Deployment down")
            scaled_down = clock()

        # No failed request, and the Service's switch is the model's (every client, load included).
        assert traffic.switched_at is not None
        answers = traffic.answers + before.answers + later.answers
        failed = [a for a in answers if a.error is not None]
        assert not failed, f"{len(failed)} of {len(answers)} requests failed: {failed[:3]}"
        assert {a.model for a in answers if a.sent < edited} == {OLD_MODEL}
        after = [a for a in answers if a.sent > traffic.switched_at]
        assert later.answers, "no request from the clients added after the switch"
        assert {a.model for a in after + later.answers} == {NEW_MODEL}, (
            "the old model answered after the switch"
        )

        # The switch on the real objects: the ScaledObject first (our apply), then KEDA's HPA.
        so_moved = _first(samples, "the ScaledObject's switch", lambda s: s.scaled_object_target == candidate)
        hpa_moved = _first(samples, "KEDA's HPA's switch", lambda s: s.keda_hpa_target == candidate)
        assert so_moved.at <= hpa_moved.at
        assert {s.keda_hpa_target for s in samples if s.at < so_moved.at} <= {NAME}
        assert {s.keda_hpa_target for s in samples if s.at >= hpa_moved.at} == {candidate}, "HPA moved back"
        assert {s.scaled_object_target for s in samples if s.at >= so_moved.at} == {candidate}
        size_at_switch = so_moved.new_replicas
        assert size_at_switch is not None
        assert 2 <= size_at_switch < MAX_REPLICAS, (
            f"candidate started at {size_at_switch}: the load before the edit must leave room to scale up"
        )

        # The previous Deployment is left as it was from the switch until its deletion.
        old_after = [s.old_replicas for s in samples if s.at >= so_moved.at]
        assert old_after[-1] is None, "the previous Deployment was not deleted"
        assert {r for r in old_after if r is not None} == {so_moved.old_replicas}, (
            f"the previous Deployment was rescaled after the switch: {old_after}"
        )

        hpa_after = await keda_hpa()
        assert hpa_after is not None
        assert hpa_after["metadata"]["uid"] == hpa_before["metadata"]["uid"], "KEDA replaced its HPA"
        assert hpa_after["spec"]["scaleTargetRef"] == {
            **hpa_before["spec"]["scaleTargetRef"],
            "name": candidate,
        }
        scaled_after = await scaled_object()
        assert scaled_after is not None
        assert scaled_after["spec"]["scaleTargetRef"]["name"] == candidate
        status = scaled_after["status"]
        # Group/version/kind/resource only (no name), as before the switch.
        assert status["scaleTargetGVKR"] == scaled_before["status"]["scaleTargetGVKR"]
        assert status["scaleTargetGVKR"] == {
            "group": "apps",
            "version": "v1",
            "kind": "Deployment",
            "resource": "deployments",
        }
        assert status["scaleTargetKind"] == "apps/v1.Deployment"
        assert status.get("hpaName") == hpa_name
        conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
        assert conditions.get("Ready") == "True", status

        service_status = await status_of(admin, namespace, NAME)
        assert service_status is not None
        assert service_status["servingDeployment"] == candidate
        assert service_status["rolloutPhase"] == "Stable"
        reasons = {e["reason"] for e in await events_for(admin, namespace, NAME)}
        assert {"RolloutStarted", "Switched"} <= reasons

        # KEDA's update lands between the last sample before the ScaledObject's and its own.
        lag_bound = hpa_moved.at - max(s.at for s in samples if s.at < so_moved.at)
        old_gone = _first(
            samples,
            "the previous Deployment's deletion",
            lambda s: s.at > so_moved.at and s.old_replicas is None,
        )
        print(
            f"KEDA rollout: first Deployment at {serving_before} replicas when edited; Service switched "
            f"{traffic.switched_at - edited:.1f}s after the edit, ScaledObject seen "
            f"{so_moved.at - traffic.switched_at:+.1f}s from it, "
            f"KEDA's HPA within {lag_bound:.2f}s of it (same uid); candidate at {size_at_switch} at the "
            f"switch, at {MAX_REPLICAS} {scaled_up - traffic.switched_at:.1f}s after it, at 1 "
            f"{scaled_down - traffic.switched_at:.1f}s after it; previous Deployment held at "
            f"{so_moved.old_replicas} until deleted {old_gone.at - traffic.switched_at:.1f}s after the "
            f"switch; {len(answers)} requests, {len(after)} after the switch, 0 failed"
        )
