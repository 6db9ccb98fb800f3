"""kwok's fake GPU nodes and pod stages, as objects (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tgi_autoscaler_dev.localstack.kwok import (
    GPU_RESOURCE,
    MANAGED_ANNOTATION,
    POOL_LABEL,
    READY_DELAY_ANNOTATION,
    UNPULLABLE_IMAGE,
    GpuNodePool,
    KwokSettings,
    gpu_node,
    kwok_config,
    pod_stages,
)


def test_a_gpu_node_has_gpu_capacity_the_gpu_taint_and_gpu_labels() -> None:
    pool = GpuNodePool(name="a100", count=3, gpus_per_node=8)
    node = gpu_node(pool, 2)
    assert node["metadata"]["name"] == "a100-2"
    assert node["metadata"]["annotations"] == {MANAGED_ANNOTATION: "fake"}
    labels = node["metadata"]["labels"]
    assert labels["nvidia.com/gpu.product"] == "NVIDIA-A100-SXM4-80GB"
    assert labels["nvidia.com/gpu.count"] == "8"
    assert labels["node.kubernetes.io/instance-type"] == "p4d.24xlarge"
    assert labels[POOL_LABEL] == "a100"
    assert node["spec"]["taints"] == [{"key": GPU_RESOURCE, "effect": "NoSchedule"}]
    assert node["status"]["capacity"][GPU_RESOURCE] == "8"
    assert node["status"]["allocatable"] == node["status"]["capacity"]


def test_a_dedicated_pool_is_tainted_with_its_name_and_its_tolerations_match() -> None:
    pool = GpuNodePool(name="mine", count=1, gpus_per_node=1, dedicated=True)
    assert {"key": POOL_LABEL, "value": "mine", "effect": "NoSchedule"} in gpu_node(pool, 0)["spec"]["taints"]
    assert pool.node_selector == {POOL_LABEL: "mine"}
    keys = {(t["key"], t.get("value")) for t in pool.tolerations}
    assert keys == {(GPU_RESOURCE, None), (POOL_LABEL, "mine")}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"count": -1}, "GpuNodePool.count"),
        ({"gpus_per_node": 65}, "GpuNodePool.gpus_per_node"),
        ({"count": 1.5}, "GpuNodePool.count"),
    ],
)
def test_a_pool_rejects_bad_sizes_naming_the_field(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GpuNodePool(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("field", ["start_delay_s", "ready_delay_s", "termination_delay_s"])
def test_settings_reject_negative_delays_naming_the_field(field: str) -> None:
    with pytest.raises(ValueError, match=f"KwokSettings.{field}"):
        KwokSettings(**{field: -1.0})


def test_pod_stages_carry_the_configured_delays() -> None:
    stages = {s["metadata"]["name"]: s["spec"] for s in pod_stages(KwokSettings(2.0, 7.5, 0.5))}
    assert list(stages) == ["pod-running", "pod-image-pull-failed", "pod-ready", "pod-delete"]
    assert stages["pod-running"]["delay"] == {"durationMilliseconds": 2000}
    ready = stages["pod-ready"]["delay"]
    assert ready["durationMilliseconds"] == 7500
    assert READY_DELAY_ANNOTATION in ready["durationFrom"]["expressionFrom"]
    delete = stages["pod-delete"]
    assert delete["delay"]["durationMilliseconds"] == 500
    # Never later than the pod's grace period: kwok takes the shorter of the two.
    assert delete["delay"]["jitterDurationFrom"] == {"expressionFrom": ".metadata.deletionTimestamp"}
    assert delete["next"] == {"delete": True}
    assert "delay" not in pod_stages(KwokSettings(start_delay_s=0))[0]["spec"]


def test_exactly_one_of_running_and_image_pull_failed_takes_a_new_pod() -> None:
    stages = {
        s["metadata"]["name"]: s["spec"]["selector"]["matchExpressions"] for s in pod_stages(KwokSettings())
    }
    image = [e for e in stages["pod-running"] if e["key"].endswith(".image")]
    assert image == [{"key": ".spec.containers.[0].image", "operator": "NotIn", "values": [UNPULLABLE_IMAGE]}]
    failed = [e for e in stages["pod-image-pull-failed"] if e["key"].endswith(".image")]
    assert failed == [{"key": ".spec.containers.[0].image", "operator": "In", "values": [UNPULLABLE_IMAGE]}]


def test_the_config_file_holds_the_node_stages_then_the_pod_stages(tmp_path: Path) -> None:
    node_stage = tmp_path / "node-initialize.yaml"
    node_stage.write_text(
        "apiVersion: kwok.x-k8s.io/v1alpha1\nkind: Stage\nmetadata:\n  name: node-initialize\n"
    )
    docs = list(yaml.safe_load_all(kwok_config(KwokSettings(), [node_stage])))
    assert [d["metadata"]["name"] for d in docs] == [
        "node-initialize",
        "pod-running",
        "pod-image-pull-failed",
        "pod-ready",
        "pod-delete",
    ]
