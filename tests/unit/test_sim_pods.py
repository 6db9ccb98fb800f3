"""Pod names, labels and file_sd files of simulated replicas; the load generator's target guard."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tgi_autoscaler_dev.sim.filesd import write_file_sd
from tgi_autoscaler_dev.sim.loadgen import LoadGenerator, LoadSpec, ensure_loopback
from tgi_autoscaler_dev.sim.pods import (
    pod_labels,
    pod_name,
    sanitize_label_name,
    target_group,
    target_labels,
)
from tgi_autoscaler_dev.sim.traces import Constant

pytestmark = pytest.mark.unit


def test_label_keys_are_sanitized_like_prometheus_labelmap() -> None:
    assert sanitize_label_name("app.kubernetes.io/instance") == "app_kubernetes_io_instance"
    assert sanitize_label_name("team-name") == "team_name"
    assert sanitize_label_name("plain_key9") == "plain_key9"


def test_pod_names_look_like_replicaset_pods_and_are_never_reused() -> None:
    names = [pod_name("demo", "llama", n) for n in range(50)]
    safe = "[bcdfghjklmnpqrstvwxz2456789]"
    assert all(re.fullmatch(rf"llama-{safe}{{10}}-{safe}{{5}}", n) for n in names)
    assert len(set(names)) == 50
    assert len({n.rsplit("-", 1)[0] for n in names}) == 1  # one template hash per service


def test_pod_name_rejects_a_service_that_is_not_a_dns_label() -> None:
    with pytest.raises(ValueError, match="service"):
        pod_name("demo", "Llama_7B", 0)


def test_series_labels_carry_namespace_pod_and_sanitized_pod_labels() -> None:
    labels = target_labels("demo", "llama-abc-xyz", pod_labels("llama", {"team": "nlp"}))
    assert labels == {
        "namespace": "demo",
        "pod": "llama-abc-xyz",
        "app_kubernetes_io_name": "tgi",
        "app_kubernetes_io_instance": "llama",
        "app_kubernetes_io_managed_by": "tgi-autoscaler",
        "app_kubernetes_io_component": "server",
        "team": "nlp",
    }


def test_file_sd_is_written_whole_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "sd" / "demo_llama.json"
    groups = [target_group("127.0.0.1:8080", {"pod": "a"}), target_group("127.0.0.1:8081", {"pod": "b"})]
    write_file_sd(path, groups)
    write_file_sd(path, groups[:1])
    assert json.loads(path.read_text()) == [{"targets": ["127.0.0.1:8080"], "labels": {"pod": "a"}}]
    assert [p.name for p in path.parent.iterdir()] == ["demo_llama.json"]


def test_file_sd_refuses_a_name_prometheus_would_not_read(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\.json"):
        write_file_sd(tmp_path / "targets.yaml", [])


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080", "http://localhost:1/", "http://[::1]:9000", "http://127.3.2.1"]
)
def test_loopback_targets_are_accepted(url: str) -> None:
    assert ensure_loopback(url) == url.rstrip("/")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://10.0.0.1:8080", "'10.0.0.1' is not a loopback address"),
        ("https://example.com", "'example.com' is not a loopback address"),
        ("ftp://127.0.0.1", "scheme must be http or https"),
    ],
)
def test_other_targets_are_refused_before_sending_anything(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LoadGenerator(url, LoadSpec(Constant(1.0), duration_s=1.0, max_requests=1))


def test_load_spec_bounds_are_checked() -> None:
    with pytest.raises(ValueError, match="duration_s"):
        LoadSpec(Constant(1.0), duration_s=0.0, max_requests=1)
    with pytest.raises(ValueError, match="max_new_tokens"):
        LoadSpec(Constant(1.0), duration_s=1.0, max_requests=1, max_new_tokens=0)
