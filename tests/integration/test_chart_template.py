"""The Helm chart renders what ``manifests/`` holds, object for object, and rejects bad values.

One source of truth for two install paths: ``helm template`` with default values must produce the
objects of ``kubectl kustomize manifests/adapter`` and ``manifests/controller`` exactly, with two
differences that are the point of the chart and are checked here too: no Namespace (``helm install
--create-namespace`` makes it) and a generated serving certificate, whose CA fills the APIService
``caBundle`` that kustomize leaves empty. The other certificate modes and the self-monitoring
objects are held to their kustomizations the same way. The binaries are the real helm (built from
its Go module) and kubectl.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.support.chart import CHART_DIR, Key, by_key, helm, helm_template, kustomize, set_flags
from tgi_autoscaler.render.cli import keda_options

pytestmark = pytest.mark.integration

NAMESPACE: Key = ("v1", "Namespace", "", "tgi-autoscaler")
SECRET: Key = ("v1", "Secret", "tgi-autoscaler", "tgi-autoscaler-adapter-serving-cert")
APISERVICE: Key = ("apiregistration.k8s.io/v1", "APIService", "", "v1beta1.external.metrics.k8s.io")
BASE = ("manifests/adapter", "manifests/controller")


def _without_namespace(objects: list[dict[str, Any]]) -> dict[Key, dict[str, Any]]:
    keyed = by_key(objects)
    assert keyed.pop(NAMESPACE)["kind"] == "Namespace"
    return keyed


def _assert_same_objects(chart: dict[Key, dict[str, Any]], kustomized: dict[Key, dict[str, Any]]) -> None:
    assert sorted(chart) == sorted(kustomized), "the chart and the kustomization name different objects"
    for key, expected in kustomized.items():
        assert chart[key] == expected, f"{key} differs between helm template and kubectl kustomize"


def test_helm_lint_strict_passes() -> None:
    result = helm("lint", "--strict", str(CHART_DIR))
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout, result.stdout


def test_default_values_render_the_kustomized_objects_plus_a_generated_certificate() -> None:
    chart = by_key(helm_template())
    kustomized = _without_namespace(kustomize(*BASE))
    secret = chart.pop(SECRET)
    ca_bundle = chart[APISERVICE]["spec"].pop("caBundle")
    assert kustomized[APISERVICE]["spec"].pop("caBundle") == ""
    _assert_same_objects(chart, kustomized)

    # The Secret is a kubernetes.io/tls Secret for the Service's DNS name, signed by the caBundle's CA.
    assert secret["type"] == "kubernetes.io/tls"
    assert secret["data"]["ca.crt"] == ca_bundle
    ca = x509.load_pem_x509_certificate(base64.b64decode(ca_bundle))
    cert = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    cert.verify_directly_issued_by(ca)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(names.get_values_for_type(x509.DNSName)) == {
        "tgi-autoscaler-adapter.tgi-autoscaler.svc",
        "tgi-autoscaler-adapter.tgi-autoscaler.svc.cluster.local",
    }
    key = serialization.load_pem_private_key(base64.b64decode(secret["data"]["tls.key"]), password=None)
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    assert key.public_key().public_bytes(
        serialization.Encoding.PEM, public
    ) == cert.public_key().public_bytes(serialization.Encoding.PEM, public)


def test_certificate_mode_secret_renders_exactly_the_kustomized_objects() -> None:
    chart = by_key(helm_template({"certificate.mode": "secret"}))
    _assert_same_objects(chart, _without_namespace(kustomize(*BASE)))


def test_certificate_mode_cert_manager_renders_exactly_the_cert_manager_overlay() -> None:
    chart = by_key(helm_template({"certificate.mode": "certManager"}))
    kustomized = _without_namespace(kustomize("manifests/adapter/cert-manager", "manifests/controller"))
    assert any(kind == "Certificate" for _, kind, _, _ in kustomized)
    _assert_same_objects(chart, kustomized)


def test_self_monitoring_renders_exactly_manifests_monitoring() -> None:
    plain = by_key(helm_template({"certificate.mode": "secret"}))
    monitored = by_key(
        helm_template(
            {
                "certificate.mode": "secret",
                "selfMonitoring.prometheusRule.enabled": "true",
                "selfMonitoring.dashboard.enabled": "true",
            }
        )
    )
    added = {key: obj for key, obj in monitored.items() if key not in plain}
    expected = by_key(kustomize("manifests/monitoring"))
    assert {kind for _, kind, _, _ in expected} == {"PrometheusRule", "ConfigMap"}
    _assert_same_objects(added, expected)


def test_another_release_namespace_moves_every_namespaced_object_and_reference() -> None:
    objects = helm_template(
        {"selfMonitoring.prometheusRule.enabled": "true", "selfMonitoring.dashboard.enabled": "true"},
        namespace="autoscaling-system",
    )
    text = yaml.safe_dump_all(objects)
    assert "chart-release-namespace" not in text
    for obj in objects:
        namespace = obj["metadata"].get("namespace")
        if obj["kind"] == "RoleBinding" and obj["metadata"]["name"] == "tgi-autoscaler-adapter-auth-reader":
            assert namespace == "kube-system"
        elif namespace is not None:
            assert namespace == "autoscaling-system", obj["metadata"]
        for subject in obj.get("subjects", []):
            if subject["name"].startswith("tgi-autoscaler-"):
                assert subject["namespace"] == "autoscaling-system"
    keyed = by_key(objects)
    assert keyed[APISERVICE]["spec"]["service"]["namespace"] == "autoscaling-system"
    rule = next(o for o in objects if o["kind"] == "PrometheusRule")
    exprs = [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]
    assert all('namespace="autoscaling-system"' in e for e in exprs if "namespace=" in e)
    assert any('namespace="autoscaling-system"' in e for e in exprs)
    secret = keyed[("v1", "Secret", "autoscaling-system", "tgi-autoscaler-adapter-serving-cert")]
    cert = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "tgi-autoscaler-adapter.autoscaling-system.svc" in names.get_values_for_type(x509.DNSName)


def test_values_reach_the_objects_they_name() -> None:
    digest = "sha256:" + "ab" * 32
    keyed = by_key(
        helm_template(
            {
                "adapter.replicas": "3",
                "adapter.prometheusUrl": "https://prometheus.example:9091/prom",
                "adapter.cacheTtlSeconds": "2",
                "adapter.extraArgs[0]": "--prometheus-timeout=4",
                "adapter.service.port": "8443",
                "adapter.service.externalName": "adapter.example",
                "controller.workers": "8",
                "controller.leaderElection.leaseDurationSeconds": "15",
                "image.tag": "0.2.0",
                "image.digest": digest,
                "logFormat": "console",
            }
        )
    )
    adapter = keyed[("apps/v1", "Deployment", "tgi-autoscaler", "tgi-autoscaler-adapter")]
    assert adapter["spec"]["replicas"] == 3
    container = adapter["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == f"ghcr.io/tgi-autoscaler/tgi-autoscaler:0.2.0@{digest}"
    assert container["args"][0] == "--log-format=console"
    assert "--prometheus-url=https://prometheus.example:9091/prom" in container["args"]
    assert "--cache-ttl=2" in container["args"]
    assert container["args"][-1] == "--prometheus-timeout=4"
    service = keyed[("v1", "Service", "tgi-autoscaler", "tgi-autoscaler-adapter")]
    assert service["spec"] == {
        "type": "ExternalName",
        "externalName": "adapter.example",
        "ports": [{"name": "https", "port": 8443, "protocol": "TCP"}],
    }
    assert keyed[APISERVICE]["spec"]["service"]["port"] == 8443
    controller = keyed[("apps/v1", "Deployment", "tgi-autoscaler", "tgi-autoscaler-controller")]
    args = controller["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--workers=8" in args
    assert "--lease-duration=15" in args


def test_metric_definitions_in_values_become_the_adapter_configmap(tmp_path: Path) -> None:
    metrics = {
        "includeDefaults": False,
        "metrics": [{"name": "vllm_waiting", "query": "sum(vllm:num_requests_waiting{$matchers})"}],
    }
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"adapter": {"metrics": metrics}}))
    keyed = by_key(helm_template(extra=["--values", str(values)]))
    configmap = keyed[("v1", "ConfigMap", "tgi-autoscaler", "tgi-autoscaler-adapter-metrics")]
    assert yaml.safe_load(configmap["data"]["metrics.yaml"]) == metrics


# (values, the key path helm must name, what it must say about it)
BAD_VALUES: list[tuple[dict[str, str], str, str]] = [
    ({"adapter.replicas": "0"}, "/adapter/replicas", "minimum"),
    ({"adapter.replicas": "two"}, "/adapter/replicas", "integer"),
    ({"adapter.prometheusUrl": "prometheus:9090"}, "/adapter/prometheusUrl", "does not match pattern"),
    ({"adapter.replica": "2"}, "/adapter", "replica"),
    ({"adapter.resources.limits.memory": "lots"}, "/adapter/resources/limits/memory", "lots"),
    ({"adapter.metrics.metrics[0].name": "x"}, "/adapter/metrics/metrics/0", "query"),
    ({"certificate.mode": "manual"}, "/certificate/mode", "must be one of 'generate'"),
    ({"controller.shutdownGraceSeconds": "60"}, "/controller/shutdownGraceSeconds", "maximum"),
    ({"image.digest": "latest"}, "/image/digest", "does not match pattern"),
    ({"adapter.service.port": "70000"}, "/adapter/service/port", "maximum"),
    ({"controller.autoscaler": "kpa"}, "/controller/autoscaler", "must be one of 'hpa'"),
    ({"controller.kedaPrometheusUrl": "prometheus:9090"}, "/controller/kedaPrometheusUrl", "pattern"),
]


@pytest.mark.parametrize(
    ("values", "path", "says"), BAD_VALUES, ids=[next(iter(v)) for v, _, _ in BAD_VALUES]
)
def test_bad_values_fail_before_rendering_and_name_the_key(
    values: dict[str, str], path: str, says: str
) -> None:
    result = helm("template", "t", str(CHART_DIR), *set_flags(values), check=False)
    assert result.returncode != 0, result.stdout[:500]
    assert "values don't meet the specifications of the schema" in result.stderr, result.stderr
    assert f"'{path}'" in result.stderr, result.stderr
    assert says in result.stderr, result.stderr


def test_helm_lint_rejects_values_the_schema_rejects(tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"controller": {"workers": 0}}))
    result = helm("lint", "--strict", str(CHART_DIR), "--values", str(values), check=False)
    assert result.returncode != 0
    assert "/controller/workers" in result.stdout + result.stderr


@pytest.mark.parametrize("autoscaler", ["keda", "auto"])
def test_keda_backend_values_drop_the_adapter_and_feed_the_controller_its_definitions(
    autoscaler: str, tmp_path: Path
) -> None:
    """Where KEDA owns the APIService the chart must not claim it, and the controller's triggers
    must run the same metric definitions the adapter would have served."""
    keyed = by_key(
        helm_template(
            {
                "adapter.enabled": "false",
                "adapter.prometheusUrl": "http://prometheus.monitoring.svc:9090",
                "controller.autoscaler": autoscaler,
            }
        )
    )
    kinds = {(key[1], key[3]) for key in keyed}
    assert ("APIService", "v1beta1.external.metrics.k8s.io") not in kinds
    assert ("Deployment", "tgi-autoscaler-adapter") not in kinds
    assert ("ServiceAccount", "tgi-autoscaler-adapter") not in kinds
    assert not [k for k in kinds if k[0] == "Secret"], "no serving certificate without the adapter"
    assert ("ConfigMap", "tgi-autoscaler-adapter-metrics") in kinds
    controller = keyed[("apps/v1", "Deployment", "tgi-autoscaler", "tgi-autoscaler-controller")]
    pod = controller["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert f"--autoscaler={autoscaler}" in container["args"]
    assert "--keda-prometheus-url=http://prometheus.monitoring.svc:9090" in container["args"]
    assert "--metrics-file=/etc/tgi-autoscaler/metrics/metrics.yaml" in container["args"]
    assert {"name": "metrics", "mountPath": "/etc/tgi-autoscaler/metrics", "readOnly": True} in container[
        "volumeMounts"
    ]
    assert {"name": "metrics", "configMap": {"name": "tgi-autoscaler-adapter-metrics"}} in pod["spec"][
        "volumes"
    ]
    assert len(pod["metadata"]["annotations"]["tgi-autoscaler.io/metrics-checksum"]) == 64
    # What the chart mounts is what the controller's flags accept.
    mounted = tmp_path / "metrics.yaml"
    configmap = keyed[("v1", "ConfigMap", "tgi-autoscaler", "tgi-autoscaler-adapter-metrics")]
    mounted.write_text(configmap["data"]["metrics.yaml"])
    options = keda_options("keda", "http://prometheus.monitoring.svc:9090", str(mounted))
    assert options is not None
    assert options.definitions


def test_keda_prometheus_url_overrides_the_adapters_and_a_definitions_edit_rolls_the_controller(
    tmp_path: Path,
) -> None:
    def controller(values: dict[str, str], extra: list[str] | None = None) -> dict[str, Any]:
        keyed = by_key(helm_template(values, extra=extra or []))
        return keyed[("apps/v1", "Deployment", "tgi-autoscaler", "tgi-autoscaler-controller")]

    base = {"controller.autoscaler": "keda", "controller.kedaPrometheusUrl": "https://thanos.example/prom"}
    before = controller(base)
    args = before["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--keda-prometheus-url=https://thanos.example/prom" in args
    metrics = tmp_path / "metrics.yaml"
    metrics.write_text(
        yaml.safe_dump(
            {
                "adapter": {
                    "metrics": {
                        "includeDefaults": False,
                        "metrics": [
                            {"name": "waiting", "query": "sum(vllm:num_requests_waiting{$matchers})"}
                        ],
                    }
                }
            }
        )
    )
    after = controller(base, ["--values", str(metrics)])
    key = "tgi-autoscaler.io/metrics-checksum"
    assert (
        before["spec"]["template"]["metadata"]["annotations"][key]
        != (after["spec"]["template"]["metadata"]["annotations"][key])
    )


def test_the_default_hpa_backend_passes_no_keda_flags() -> None:
    keyed = by_key(helm_template({}))
    controller = keyed[("apps/v1", "Deployment", "tgi-autoscaler", "tgi-autoscaler-controller")]
    args = controller["spec"]["template"]["spec"]["containers"][0]["args"]
    assert not [a for a in args if a.startswith(("--autoscaler", "--keda-", "--metrics-file"))]
