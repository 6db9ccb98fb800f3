"""``manifests/adapter`` is accepted by a real kube-apiserver: every object validates server-side."""

from __future__ import annotations

import json

import pytest

from tests.e2e.conftest import REPO, RunningAdapter
from tgi_autoscaler_dev.localstack.controlplane import ControlPlane

pytestmark = pytest.mark.e2e


async def test_every_adapter_manifest_passes_server_side_validation(
    adapter: RunningAdapter, control_plane: ControlPlane
) -> None:
    # The adapter fixture has applied the namespace and RBAC; the rest is validated without persisting.
    result = await control_plane.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--dry-run=server",
        "-k",
        str(REPO / "manifests" / "adapter"),
    )
    assert result.returncode == 0, result.stderr
    kinds = {line.split("/")[0] for line in result.stdout.split() if "/" in line}
    assert {
        "deployment.apps",
        "poddisruptionbudget.policy",
        "service",
        "apiservice.apiregistration.k8s.io",
        "clusterrole.rbac.authorization.k8s.io",
    } <= kinds, result.stdout


async def test_the_deployment_runs_two_hardened_replicas(adapter: RunningAdapter) -> None:
    deployment = next(o for o in adapter.manifests if o["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert deployment["spec"]["replicas"] == 2
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]
    probes = {k: container[k]["httpGet"]["path"] for k in ("livenessProbe", "readinessProbe")}
    assert probes == {"livenessProbe": "/livez", "readinessProbe": "/readyz"}
    pdb = next(o for o in adapter.manifests if o["kind"] == "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert json.dumps(pdb["spec"]["selector"]) == json.dumps(deployment["spec"]["selector"])
