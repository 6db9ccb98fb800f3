"""Rendering a service spec into Kubernetes objects: structure, ownership, scraping, scaling, exposure."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from tgi_autoscaler.config.constants import (
    ANNOTATION_CONFIG_HASH,
    LABEL_INSTANCE,
    LABEL_MANAGED_BY,
    LABEL_OWNER_NAME,
    LABEL_OWNER_NAMESPACE,
    SERVICE_CONFIGMAP_KEY,
)
from tgi_autoscaler.config.errors import ConfigError
from tgi_autoscaler.config.service import parse_service_yaml
from tgi_autoscaler.render import (
    RenderOptions,
    ServiceSource,
    apply_ownership,
    render_service,
    source_from_configmap,
    to_yaml,
)
from tgi_autoscaler.render.autoscaling import format_quantity

pytestmark = pytest.mark.unit

EXAMPLES = sorted((Path(__file__).parents[2] / "manifests" / "examples").glob("*.yaml"))
UID = "5f0c3e2a-8d1b-4c55-9a57-2f4f3c1d0e99"


def _source(
    text: str, *, name: str = "llm", namespace: str = "serving", uid: str | None = None
) -> ServiceSource:
    spec = parse_service_yaml(textwrap.dedent(text), source="test")
    return ServiceSource(name=name, namespace=namespace, spec=spec, owner_uid=uid)


def _render(text: str, **options: Any) -> list[dict[str, Any]]:
    return render_service(_source(text), RenderOptions(**options))


def _one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def _kinds(objects: list[dict[str, Any]]) -> list[str]:
    return [f"{o['kind']}/{o['metadata']['name']}" for o in objects]


def _container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    deployment = _one(objects, "Deployment", "llm")
    containers: list[dict[str, Any]] = deployment["spec"]["template"]["spec"]["containers"]
    (container,) = containers
    return container


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container["env"]}


def _example_sources() -> list[ServiceSource]:
    sources = []
    for path in EXAMPLES:
        for doc in yaml.safe_load_all(path.read_text()):
            sources.append(source_from_configmap(doc))
    return sources


@pytest.mark.parametrize("operator", [True, False])
@pytest.mark.parametrize("source", _example_sources(), ids=lambda s: s.name)
def test_every_object_is_a_named_namespaced_managed_kubernetes_object(
    source: ServiceSource, operator: bool
) -> None:
    objects = render_service(source, RenderOptions(prometheus_operator=operator))
    assert objects
    for obj in objects:
        assert set(obj) >= {"apiVersion", "kind", "metadata"}
        assert obj["apiVersion"]
        assert obj["kind"]
        meta = obj["metadata"]
        assert meta["name"]
        assert meta["namespace"] == source.namespace
        assert meta["labels"][LABEL_MANAGED_BY] == "tgi-autoscaler"
        assert meta["labels"][LABEL_INSTANCE] == source.name
    keys = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert len(keys) == len(set(keys)), "duplicate objects"


@pytest.mark.parametrize("source", _example_sources(), ids=lambda s: s.name)
def test_server_deployment_never_sets_replicas(source: ServiceSource) -> None:
    deployment = _one(render_service(source, RenderOptions()), "Deployment", source.name)
    assert "replicas" not in deployment["spec"]


def test_minimal_service_renders_workload_scaling_and_monitoring_in_order() -> None:
    objects = _render("model: {id: m}")
    assert _kinds(objects) == [
        "Deployment/llm",
        "Service/llm",
        "HorizontalPodAutoscaler/llm",
        "PodMonitor/llm",
        "PrometheusRule/llm",
        "ConfigMap/tgi-dashboard-serving-llm",
    ]


def test_rendering_is_deterministic() -> None:
    text = Path(EXAMPLES[0]).read_text()
    first = [source_from_configmap(d) for d in yaml.safe_load_all(text)]
    second = [source_from_configmap(d) for d in yaml.safe_load_all(text)]
    assert to_yaml(render_service(first[0])) == to_yaml(render_service(second[0]))


def test_rendered_objects_share_no_mutable_parts() -> None:
    objects = _render("model: {id: m}\nauth: {enabled: true, apiKeysSecret: {name: keys, key: keys}}")
    proxy = _one(objects, "Deployment", "llm-auth-proxy")
    pod = proxy["spec"]["template"]["spec"]
    pod["containers"][0]["resources"]["requests"]["cpu"] = "9"
    assert pod["initContainers"][0]["resources"]["requests"]["cpu"] == "100m"


def test_owner_uid_gives_every_object_a_controller_reference_to_the_configmap() -> None:
    source = _source("model: {id: m}\ningress: {enabled: true, host: llm.example.com}", uid=UID)
    for obj in render_service(source):
        assert obj["metadata"]["ownerReferences"] == [
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "name": "llm",
                "uid": UID,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]


def test_without_owner_uid_objects_have_no_owner_references() -> None:
    for obj in _render("model: {id: m}"):
        assert "ownerReferences" not in obj["metadata"]


def test_object_in_another_namespace_is_labelled_with_its_owner_instead_of_referencing_it() -> None:
    source = _source("model: {id: m}", uid=UID)
    foreign = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "llm-dashboard", "namespace": "grafana", "labels": {}},
    }
    result = apply_ownership(foreign, source)
    assert "ownerReferences" not in result["metadata"]
    assert result["metadata"]["labels"][LABEL_OWNER_NAMESPACE] == "serving"
    assert result["metadata"]["labels"][LABEL_OWNER_NAME] == "llm"
    assert result["metadata"]["labels"][LABEL_INSTANCE] == "llm"


def test_hf_token_comes_from_the_secret_reference_only() -> None:
    objects = _render(
        "model: {id: meta-llama/Llama-2-7b-chat-hf, hfTokenSecret: {name: huggingface-token, key: token}}"
    )
    env = _env(_container(objects))
    assert env["HF_TOKEN"] == {"secretKeyRef": {"name": "huggingface-token", "key": "token"}}
    assert env["MODEL_ID"] == "meta-llama/Llama-2-7b-chat-hf"


def test_tgi_env_carries_the_launcher_settings() -> None:
    objects = _render(
        """
        model: {id: m, revision: abc123, trustRemoteCode: true}
        engine:
          quantize: gptq
          maxConcurrentRequests: 128
          maxInputTokens: 3000
          maxTotalTokens: 4096
          maxBatchPrefillTokens: 4096
          maxBatchTotalTokens: 8192
          env: [{name: USAGE_STATS, value: "off"}, {name: EXTRA, secretKeyRef: {name: s, key: k}}]
        """
    )
    env = _env(_container(objects))
    assert env["REVISION"] == "abc123"
    assert env["QUANTIZE"] == "gptq"
    assert env["TRUST_REMOTE_CODE"] == "true"
    assert env["NUM_SHARD"] == "1"
    assert env["MAX_CONCURRENT_REQUESTS"] == "128"
    assert env["MAX_INPUT_TOKENS"] == "3000"
    assert env["MAX_TOTAL_TOKENS"] == "4096"
    assert env["MAX_BATCH_PREFILL_TOKENS"] == "4096"
    assert env["MAX_BATCH_TOTAL_TOKENS"] == "8192"
    assert env["HUGGINGFACE_HUB_CACHE"] == "/data"
    assert env["HOSTNAME"] == "0.0.0.0"  # noqa: S104 - asserting the rendered listen address
    assert env["PORT"] == "8080"
    assert env["USAGE_STATS"] == "off"
    assert env["EXTRA"] == {"secretKeyRef": {"name": "s", "key": "k"}}


def test_unset_token_limits_are_left_to_the_server() -> None:
    env = _env(_container(_render("model: {id: m}")))
    assert not {"MAX_INPUT_TOKENS", "MAX_TOTAL_TOKENS", "MAX_BATCH_TOTAL_TOKENS", "QUANTIZE"} & set(env)


def test_sharded_pod_requests_one_gpu_per_shard_and_a_large_shm() -> None:
    objects = _render(
        "model: {id: m}\nengine: {numShard: 4}\nresources: {gpu: 4, shmSize: 16Gi, memoryLimit: 64Gi}"
    )
    container = _container(objects)
    assert _env(container)["NUM_SHARD"] == "4"
    assert container["resources"]["requests"]["nvidia.com/gpu"] == "4"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "4"
    volumes = _one(objects, "Deployment", "llm")["spec"]["template"]["spec"]["volumes"]
    shm = next(v for v in volumes if v["name"] == "dshm")
    assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": "16Gi"}
    assert {"name": "dshm", "mountPath": "/dev/shm"} in container["volumeMounts"]


def test_gpu_resource_name_is_configurable_and_absent_without_gpus() -> None:
    amd = _container(_render("model: {id: m}\nresources: {gpuResourceName: amd.com/gpu}"))
    assert amd["resources"]["limits"]["amd.com/gpu"] == "1"
    cpu = _container(_render("model: {id: m}\nresources: {gpu: 0}"))
    assert not any("gpu" in key for key in cpu["resources"]["requests"])
    assert not any("gpu" in key for key in cpu["resources"].get("limits", {}))


def test_probes_use_a_startup_budget_instead_of_an_initial_delay() -> None:
    container = _container(_render("model: {id: m}"))
    startup = container["startupProbe"]
    assert startup["httpGet"] == {"path": "/health", "port": "http"}
    assert startup["periodSeconds"] * startup["failureThreshold"] == 1800
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert "initialDelaySeconds" not in container[probe]


def test_rollout_deadline_covers_the_startup_budget() -> None:
    deployment = _one(
        _render("model: {id: m}\nprobes: {startup: {periodSeconds: 20, failureThreshold: 180}}"), "Deployment"
    )
    assert deployment["spec"]["progressDeadlineSeconds"] > 20 * 180


def test_security_context_drops_privileges() -> None:
    objects = _render("model: {id: m}\nsecurity: {runAsUser: 1000, fsGroup: 1000}")
    pod = _one(objects, "Deployment", "llm")["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "seccompProfile": {"type": "RuntimeDefault"},
        "runAsUser": 1000,
        "runAsNonRoot": True,
        "fsGroup": 1000,
    }
    assert pod["automountServiceAccountToken"] is False
    assert pod["containers"][0]["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }


def test_privileged_port_keeps_only_the_bind_capability() -> None:
    container = _container(_render("model: {id: m}\nengine: {port: 80}"))
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}
    assert container["ports"] == [{"name": "http", "containerPort": 80, "protocol": "TCP"}]


@pytest.mark.parametrize(
    ("cache", "expected_volume", "claim"),
    [
        (
            "{existingClaim: tgi-model-cache}",
            {"persistentVolumeClaim": {"claimName": "tgi-model-cache"}},
            False,
        ),
        (
            "{create: {size: 50Gi, storageClassName: efs-sc}}",
            {"persistentVolumeClaim": {"claimName": "llm-model-cache"}},
            True,
        ),
        ("{}", {"emptyDir": {"sizeLimit": "100Gi"}}, False),
    ],
)
def test_model_cache_volume(cache: str, expected_volume: dict[str, Any], claim: bool) -> None:
    objects = _render(f"model: {{id: m}}\ncache: {cache}")
    volumes = _one(objects, "Deployment")["spec"]["template"]["spec"]["volumes"]
    assert {"name": "model-cache", **expected_volume} in volumes
    claims = [o for o in objects if o["kind"] == "PersistentVolumeClaim"]
    assert bool(claims) == claim
    if claim:
        assert claims[0]["spec"] == {
            "accessModes": ["ReadWriteMany"],
            "resources": {"requests": {"storage": "50Gi"}},
            "storageClassName": "efs-sc",
        }
        assert objects[0] is claims[0], "the claim comes before the Deployment that mounts it"


def test_scheduling_is_passed_to_the_pod() -> None:
    objects = _render(
        """
        model: {id: m}
        scheduling:
          nodeSelector: {accelerator: nvidia-gpu}
          tolerations: [{key: dedicated, operator: Equal, value: llm, effect: NoSchedule}]
          affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: []}}}
          priorityClassName: llm
        """
    )
    pod = _one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"accelerator": "nvidia-gpu"}
    assert pod["tolerations"] == [
        {"key": "dedicated", "operator": "Equal", "value": "llm", "effect": "NoSchedule"}
    ]
    assert "nodeAffinity" in pod["affinity"]
    assert pod["priorityClassName"] == "llm"


def test_service_selects_only_server_pods() -> None:
    objects = _render("model: {id: m}\nauth: {enabled: true, apiKeysSecret: {name: k, key: k}}")
    service = _one(objects, "Service", "llm")
    deployment = _one(objects, "Deployment", "llm")
    # The Deployment's selector and the model-hash label of its pods: the model a switch routes to.
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"] == {
        **deployment["spec"]["selector"]["matchLabels"],
        "tgi-autoscaler.io/model-hash": pod_labels["tgi-autoscaler.io/model-hash"],
    }
    assert service["spec"]["selector"]["app.kubernetes.io/component"] == "server"
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]
    proxy_pods = _one(objects, "Deployment", "llm-auth-proxy")["spec"]["template"]["metadata"]["labels"]
    assert not all(proxy_pods.get(k) == v for k, v in service["spec"]["selector"].items())


def test_hpa_scales_on_the_demand_of_this_service_against_the_slo_target() -> None:
    hpa = _one(
        _render("model: {id: m}\nautoscaling: {minReplicas: 2, maxReplicas: 10}"), "HorizontalPodAutoscaler"
    )
    spec = hpa["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "llm"}
    assert (spec["minReplicas"], spec["maxReplicas"]) == (2, 10)
    # 3.177 requests/s per replica: the Erlang C rate at which 99 % of first tokens come within 2 s
    # on the default capacity (a 7-8B model on one A100).
    assert spec["metrics"] == [
        {
            "type": "External",
            "external": {
                "metric": {
                    "name": "tgi_request_demand",
                    "selector": {"matchLabels": {LABEL_INSTANCE: "llm"}},
                },
                "target": {"type": "AverageValue", "averageValue": "3177m"},
            },
        }
    ]
    assert spec["behavior"] == {
        "scaleUp": {
            "stabilizationWindowSeconds": 0,
            "selectPolicy": "Max",
            "policies": [
                {"type": "Percent", "value": 100, "periodSeconds": 30},
                {"type": "Pods", "value": 4, "periodSeconds": 30},
            ],
            "tolerance": "20m",
        },
        "scaleDown": {
            "stabilizationWindowSeconds": 300,
            "selectPolicy": "Min",
            "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
            "tolerance": "100m",
        },
    }


@pytest.mark.parametrize(
    ("autoscaling", "target"),
    [
        ("{slo: {timeToFirstTokenSeconds: 2, attainment: 0.999}}", "2891m"),
        ("{slo: {timeToFirstTokenSeconds: 10}}", None),
        ("{capacity: {maxBatchSize: 128}}", None),
        ("{demand: {targetPerReplica: 1.5}}", "1500m"),
    ],
)
def test_demand_target_follows_the_slo_and_the_capacity(autoscaling: str, target: str | None) -> None:
    default = _one(_render("model: {id: m}"), "HorizontalPodAutoscaler")["spec"]["metrics"][0]
    hpa = _one(_render(f"model: {{id: m}}\nautoscaling: {autoscaling}"), "HorizontalPodAutoscaler")
    got = hpa["spec"]["metrics"][0]["external"]["target"]["averageValue"]
    if target is not None:
        assert got == target
    else:  # a looser SLO or a bigger batch lets one replica carry more
        assert float(got.rstrip("m")) > float(default["external"]["target"]["averageValue"].rstrip("m"))


def test_an_slo_shorter_than_the_prefill_is_an_error_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"slo: .*shorter than the prefill"):
        _render("model: {id: m}\nautoscaling: {slo: {timeToFirstTokenSeconds: 0.05}}")


def test_hpa_scales_on_the_external_queue_metric_with_signal_queue() -> None:
    hpa = _one(
        _render("model: {id: m}\nautoscaling: {signal: queue, minReplicas: 2, maxReplicas: 10}"),
        "HorizontalPodAutoscaler",
    )
    assert hpa["spec"]["metrics"] == [
        {
            "type": "External",
            "external": {
                "metric": {"name": "tgi_queue_size", "selector": {"matchLabels": {LABEL_INSTANCE: "llm"}}},
                "target": {"type": "AverageValue", "averageValue": "10"},
            },
        }
    ]


def test_hpa_adds_batch_size_and_cpu_metrics_when_configured() -> None:
    hpa = _one(
        _render(
            "model: {id: m}\n"
            "autoscaling: {signal: queue, queue: {targetPerReplica: 2.5}, batchSize: {targetPerReplica: 16}, "
            "cpu: {}}"
        ),
        "HorizontalPodAutoscaler",
    )
    metrics = hpa["spec"]["metrics"]
    assert metrics[0]["external"]["target"]["averageValue"] == "2500m"
    assert metrics[1]["external"]["metric"]["name"] == "tgi_batch_current_size"
    assert metrics[1]["external"]["target"]["averageValue"] == "16"
    assert metrics[2] == {
        "type": "Resource",
        "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
    }


@pytest.mark.parametrize(
    ("value", "quantity"),
    [(10, "10"), (10.0, "10"), (2.5, "2500m"), (0.001, "1m"), (0.1, "100m"), (1.2345, "1234m")],
)
def test_targets_are_formatted_as_kubernetes_quantities(value: float, quantity: str) -> None:
    assert format_quantity(value) == quantity


def test_target_too_small_for_milli_precision_is_an_error() -> None:
    with pytest.raises(ValueError, match="rounds to zero"):
        format_quantity(0.0001)


def test_pod_monitor_copies_the_instance_label_onto_every_series() -> None:
    objects = _render("model: {id: m}\nscrape: {interval: 15s, podMonitorLabels: {release: prom}}")
    monitor = _one(objects, "PodMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert "app.kubernetes.io/instance" in monitor["spec"]["podTargetLabels"]
    assert (
        monitor["spec"]["selector"]["matchLabels"]
        == _one(objects, "Deployment")["spec"]["selector"]["matchLabels"]
    )
    assert monitor["spec"]["podMetricsEndpoints"] == [{"port": "http", "path": "/metrics", "interval": "15s"}]
    template = _one(objects, "Deployment")["spec"]["template"]["metadata"]
    assert not any(key.startswith("prometheus.io/") for key in template.get("annotations", {}))


def test_without_the_operator_pods_are_annotated_for_scraping_and_no_crds_are_rendered() -> None:
    objects = _render("model: {id: m}\npodAnnotations: {team: ml}", prometheus_operator=False)
    # The dashboard ConfigMap is read by Grafana's sidecar, which needs no operator.
    assert {o["kind"] for o in objects} == {"Deployment", "Service", "HorizontalPodAutoscaler", "ConfigMap"}
    annotations = _one(objects, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {
        "prometheus.io/path": "/metrics",
        "prometheus.io/port": "8080",
        "prometheus.io/scrape": "true",
        "team": "ml",
    }


def test_prometheus_rule_watches_this_service() -> None:
    rule = _one(_render("model: {id: m}"), "PrometheusRule")
    exprs = [r["expr"] for group in rule["spec"]["groups"] for r in group["rules"]]
    assert exprs
    assert all('namespace="serving"' in expr for expr in exprs)


def test_vllm_gets_its_command_line_port_and_queue_metric() -> None:
    objects = _render(
        "model: {id: m, revision: r}\n"
        "engine: {kind: vllm, numShard: 2, quantize: awq, maxTotalTokens: 8192}\n"
        "resources: {gpu: 2}"
    )
    container = _container(objects)
    assert container["image"].startswith("vllm/vllm-openai:")
    assert container["command"] == ["python3", "-m", "vllm.entrypoints.openai.api_server"]
    args = container["args"]
    pairs = dict(zip(args[::2], args[1::2], strict=False))
    assert pairs["--model"] == "m"
    assert pairs["--revision"] == "r"
    assert pairs["--port"] == "8000"
    assert pairs["--tensor-parallel-size"] == "2"
    assert pairs["--quantization"] == "awq"
    assert pairs["--max-model-len"] == "8192"
    assert _env(container)["HF_HUB_CACHE"] == "/data"
    hpa = _one(objects, "HorizontalPodAutoscaler")
    assert hpa["spec"]["metrics"][0]["external"]["metric"]["name"] == "vllm_request_demand"


def test_sglang_enables_metrics_and_uses_its_own_flags() -> None:
    container = _container(_render("model: {id: m}\nengine: {kind: sglang, maxBatchTotalTokens: 100000}"))
    assert container["command"] == ["python3", "-m", "sglang.launch_server"]
    assert "--enable-metrics" in container["args"]
    assert container["args"][container["args"].index("--tp") + 1] == "1"
    assert container["args"][container["args"].index("--max-total-tokens") + 1] == "100000"
    assert container["ports"][0]["containerPort"] == 30000


def test_ingress_sets_streaming_friendly_timeouts_and_rate_limits() -> None:
    objects = _render(
        """
        model: {id: m}
        ingress:
          enabled: true
          host: llm.example.com
          tlsSecretName: llm-tls
          clusterIssuer: letsencrypt-prod
          rateLimit: {requestsPerSecond: 5, connections: 20}
          annotations: {nginx.ingress.kubernetes.io/proxy-read-timeout: "900"}
        """
    )
    ingress = _one(objects, "Ingress")
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "900"
    assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    assert annotations["nginx.ingress.kubernetes.io/limit-rps"] == "5"
    assert annotations["nginx.ingress.kubernetes.io/limit-connections"] == "20"
    assert annotations["cert-manager.io/cluster-issuer"] == "letsencrypt-prod"
    spec = ingress["spec"]
    assert spec["ingressClassName"] == "nginx"
    assert spec["tls"] == [{"hosts": ["llm.example.com"], "secretName": "llm-tls"}]
    backend = spec["rules"][0]["http"]["paths"][0]["backend"]
    assert backend == {"service": {"name": "llm", "port": {"name": "http"}}}


def test_ingress_routes_through_the_api_key_proxy_when_auth_is_enabled() -> None:
    objects = _render(
        "model: {id: m}\ningress: {enabled: true, host: llm.example.com}\n"
        "auth: {enabled: true, apiKeysSecret: {name: api-keys, key: keys}}"
    )
    backend = _one(objects, "Ingress")["spec"]["rules"][0]["http"]["paths"][0]["backend"]
    assert backend["service"]["name"] == "llm-auth-proxy"
    assert _one(objects, "Service", "llm-auth-proxy")["spec"]["ports"][0]["targetPort"] == "http"


def test_auth_proxy_reads_keys_from_the_secret_and_strips_them_upstream() -> None:
    objects = _render("model: {id: m}\nauth: {enabled: true, apiKeysSecret: {name: api-keys, key: keys}}")
    config = _one(objects, "ConfigMap", "llm-auth-proxy")["data"]["nginx.conf"]
    assert "server llm.serving.svc:80;" in config
    assert 'proxy_set_header Authorization "";' in config
    assert 'proxy_set_header X-API-Key "";' in config
    assert "proxy_buffering off;" in config
    assert "$http_authorization" not in config.split("log_format", 1)[1].split(";", 1)[0]
    # nginx allows little inside "if" (default_type, for one, is an error there): only the 401 itself.
    assert "if ($authorized = 0) {\n        return 401;\n      }" in config
    assert "error_page 401 @unauthorized;" in config
    unauthorized = config.split("location @unauthorized {", 1)[1].split("}", 1)[0]
    assert "add_header WWW-Authenticate 'Bearer realm=\"llm\"' always;" in unauthorized
    assert "default_type application/json;" in unauthorized
    pod = _one(objects, "Deployment", "llm-auth-proxy")["spec"]["template"]["spec"]
    secret_volume = next(v for v in pod["volumes"] if v["name"] == "api-keys")
    assert secret_volume["secret"] == {"secretName": "api-keys", "items": [{"key": "keys", "path": "keys"}]}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True


def test_auth_proxy_pods_roll_when_their_configuration_changes() -> None:
    def config_hash(timeout: int) -> str:
        objects = _render(
            f"model: {{id: m}}\ningress: {{proxyReadTimeoutSeconds: {timeout}}}\n"
            "auth: {enabled: true, apiKeysSecret: {name: k, key: k}}"
        )
        template = _one(objects, "Deployment", "llm-auth-proxy")["spec"]["template"]
        return str(template["metadata"]["annotations"][ANNOTATION_CONFIG_HASH])

    assert config_hash(300) == config_hash(300)
    assert config_hash(300) != config_hash(600)


@pytest.mark.parametrize(
    ("name", "namespace", "path"),
    [
        ("Upper", "serving", "metadata.name"),
        ("a" * 53, "serving", "metadata.name"),
        ("9starts-with-digit", "serving", "metadata.name"),
        ("llm", "Bad_Namespace", "metadata.namespace"),
    ],
)
def test_names_that_cannot_name_the_objects_are_rejected(name: str, namespace: str, path: str) -> None:
    with pytest.raises(ConfigError) as info:
        render_service(_source("model: {id: m}", name=name, namespace=namespace))
    assert [issue.path for issue in info.value.issues] == [path]


def test_source_from_configmap_takes_name_namespace_and_uid() -> None:
    configmap = {
        "metadata": {"name": "llm", "namespace": "serving", "uid": UID},
        "data": {SERVICE_CONFIGMAP_KEY: "model: {id: m}"},
    }
    source = source_from_configmap(configmap)
    assert (source.name, source.namespace, source.owner_uid) == ("llm", "serving", UID)
    assert source_from_configmap(configmap, set_owner=False).owner_uid is None


def test_source_from_configmap_names_the_configmap_in_errors() -> None:
    with pytest.raises(ConfigError) as missing:
        source_from_configmap({"metadata": {"name": "llm", "namespace": "serving"}, "data": {}})
    assert str(missing.value).startswith("ConfigMap serving/llm: invalid service spec")
    assert missing.value.issues[0].path == "data.service.yaml"
    with pytest.raises(ConfigError) as invalid:
        source_from_configmap(
            {
                "metadata": {"name": "llm", "namespace": "serving"},
                "data": {SERVICE_CONFIGMAP_KEY: "model: {}"},
            }
        )
    assert invalid.value.source == "ConfigMap serving/llm data.service.yaml"
    assert str(invalid.value.issues[0]) == "model.id: required"


def test_yaml_output_is_plain_multi_document_yaml() -> None:
    objects = _render("model: {id: m}\nauth: {enabled: true, apiKeysSecret: {name: k, key: k}}")
    text = to_yaml(objects)
    assert "&id" not in text
    assert "*id" not in text
    assert "nginx.conf: |" in text
    assert list(yaml.safe_load_all(text)) == objects
