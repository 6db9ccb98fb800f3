"""Validation of the service spec: every rule reports its key path and reason, all at once."""

from __future__ import annotations

import textwrap

import pytest

from tgi_autoscaler.config.errors import ConfigError, ConfigIssue
from tgi_autoscaler.config.service import (
    EngineKind,
    Quantization,
    TGIServiceSpec,
    parse_service_yaml,
)

pytestmark = pytest.mark.unit

SOURCE = "ConfigMap llm/test"


def _parse(text: str) -> TGIServiceSpec:
    return parse_service_yaml(textwrap.dedent(text), source=SOURCE)


def _issues(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        _parse(text)
    assert info.value.source == SOURCE
    return [str(issue) for issue in info.value.issues]


def test_minimal_spec_gets_defaults_tuned_for_slow_starting_gpu_servers() -> None:
    spec = _parse("model: {id: meta-llama/Llama-2-7b-chat-hf}")
    assert spec.engine.kind is EngineKind.TGI
    assert spec.queue_metric == "tgi_queue_size"
    assert spec.autoscaling.signal == "demand"
    assert spec.scaling_metric == ("tgi_request_demand", 3.177)
    assert spec.resources.gpu == 1 == spec.engine.num_shard
    assert spec.probes.startup_budget_seconds == 30 * 60
    up, down = spec.autoscaling.scale_up, spec.autoscaling.scale_down
    assert up.stabilization_window_seconds == 0
    assert up.select_policy == "Max"
    assert [(p.type, p.value, p.period_seconds) for p in up.policies] == [
        ("Percent", 100, 30),
        ("Pods", 4, 30),
    ]
    assert (up.tolerance, down.tolerance) == (0.02, 0.1)
    assert down.stabilization_window_seconds == 300
    assert down.select_policy == "Min"
    assert [(p.type, p.value, p.period_seconds) for p in down.policies] == [("Pods", 1, 60)]


def test_partial_override_keeps_the_other_defaults() -> None:
    spec = _parse(
        """
        model: {id: m}
        autoscaling: {scaleDown: {stabilizationWindowSeconds: 120}}
        probes: {startup: {failureThreshold: 360}}
        """
    )
    assert spec.autoscaling.scale_down.stabilization_window_seconds == 120
    assert spec.autoscaling.scale_down.select_policy == "Min"
    assert spec.probes.startup.failure_threshold == 360
    assert spec.probes.startup.period_seconds == 10


def test_every_problem_is_reported_in_one_error_with_its_path() -> None:
    issues = _issues(
        """
        model: {id: m, revison: main}
        engine: {quantize: gptq2}
        resources: {cpuRequest: four}
        scheduling: {tolerations: [{key: a, operator: Exists, value: b}]}
        """
    )
    assert len(issues) == 4
    assert issues[0].startswith("model.revison: unknown key; did you mean revision?")
    assert issues[1].startswith("engine.quantize: 'gptq2' is not one of 'none', 'awq'")
    assert issues[2].startswith("resources.cpuRequest: 'four' is not a Kubernetes quantity")
    assert issues[3] == "scheduling.tolerations[0].value: must be empty when operator is Exists"


def test_error_message_lists_source_count_and_each_issue() -> None:
    with pytest.raises(ConfigError) as info:
        _parse("model: {id: m}\nautoscaling: {minReplicas: 3, maxReplicas: 2}")
    assert str(info.value) == (
        "ConfigMap llm/test: invalid service spec (1 problem):\n"
        "  - autoscaling.minReplicas: must be <= maxReplicas (3 > 2)"
    )


def test_unknown_top_level_key_lists_the_allowed_keys() -> None:
    (issue,) = _issues("model: {id: m}\nautoscale: {}")
    assert issue.startswith(
        "autoscale: unknown key; did you mean autoscaling? (allowed: alerts, auth, autoscaling,"
    )


def test_missing_model_is_required() -> None:
    assert _issues("engine: {kind: tgi}") == ["model: required"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "<root>: must be a mapping of keys, found an empty document"),
        ("- a\n- b", "<root>: must be a mapping of keys, found list"),
        ("model: [", "<root>: not valid YAML: line 1, column 9: expected the node content"),
    ],
)
def test_document_that_is_not_a_mapping_is_rejected(text: str, expected: str) -> None:
    (issue,) = _issues(text)
    assert issue.startswith(expected)


def test_shards_must_match_gpus() -> None:
    assert _issues("model: {id: m}\nengine: {numShard: 4}\nresources: {gpu: 2}") == [
        "engine.numShard: must equal resources.gpu (4 != 2): each shard needs its own GPU"
    ]


def test_cpu_only_pod_cannot_be_sharded() -> None:
    assert _issues("model: {id: m}\nengine: {numShard: 2}\nresources: {gpu: 0}") == [
        "engine.numShard: must be 1 without GPUs (resources.gpu=0, numShard=2)"
    ]


def test_four_shards_on_four_gpus_is_valid() -> None:
    spec = _parse("model: {id: m}\nengine: {numShard: 4}\nresources: {gpu: 4, shmSize: 8Gi}")
    assert spec.engine.num_shard == spec.resources.gpu == 4


@pytest.mark.parametrize(
    ("engine", "expected"),
    [
        (
            "{maxInputTokens: 4096, maxTotalTokens: 4096}",
            ["engine.maxInputTokens: must be < maxTotalTokens (4096 >= 4096)"],
        ),
        (
            "{maxInputTokens: 2000, maxTotalTokens: 4096, maxBatchPrefillTokens: 1000}",
            ["engine.maxBatchPrefillTokens: must be >= maxInputTokens (1000 < 2000)"],
        ),
        (
            "{maxTotalTokens: 4096, maxBatchTotalTokens: 2048}",
            ["engine.maxBatchTotalTokens: must be >= maxTotalTokens (2048 < 4096)"],
        ),
        (
            "{maxBatchPrefillTokens: 8192, maxBatchTotalTokens: 4096}",
            ["engine.maxBatchTotalTokens: must be >= maxBatchPrefillTokens (4096 < 8192)"],
        ),
        (
            "{maxInputLength: 5000, maxTotalTokens: 4096}",
            ["engine.maxInputLength: must be < maxTotalTokens (5000 >= 4096)"],
        ),
        (
            "{maxInputTokens: 100, maxInputLength: 100}",
            ["engine.maxInputLength: set only maxInputTokens (maxInputLength is its deprecated name)"],
        ),
    ],
)
def test_token_limits_follow_the_tgi_launcher_rules(engine: str, expected: list[str]) -> None:
    assert _issues(f"model: {{id: m}}\nengine: {engine}") == expected


def test_token_limit_violations_are_reported_together() -> None:
    issues = _issues(
        "model: {id: m}\n"
        "engine: {maxInputTokens: 5000, maxTotalTokens: 4096,"
        " maxBatchPrefillTokens: 100, maxBatchTotalTokens: 50}"
    )
    assert issues == [
        "engine.maxInputTokens: must be < maxTotalTokens (5000 >= 4096)",
        "engine.maxBatchPrefillTokens: must be >= maxInputTokens (100 < 5000)",
        "engine.maxBatchTotalTokens: must be >= maxTotalTokens (50 < 4096)",
        "engine.maxBatchTotalTokens: must be >= maxBatchPrefillTokens (50 < 100)",
    ]


def test_seed_article_limits_are_invalid_for_tgi_and_say_why() -> None:
    # MAX_INPUT_LENGTH == MAX_TOTAL_TOKENS (4096) makes TGI's launcher refuse to start.
    assert _issues("model: {id: m}\nengine: {maxInputLength: 4096, maxTotalTokens: 4096}") == [
        "engine.maxInputLength: must be < maxTotalTokens (4096 >= 4096)"
    ]


@pytest.mark.parametrize("quantize", [q.value for q in Quantization])
def test_every_tgi_quantization_is_accepted(quantize: str) -> None:
    spec = _parse(f"model: {{id: m}}\nengine: {{quantize: {quantize}}}")
    assert spec.engine.quantize.value == quantize


def test_dtype_cannot_be_combined_with_quantization() -> None:
    assert _issues("model: {id: m}\nengine: {quantize: awq, dtype: float16}") == [
        "engine.dtype: cannot be combined with quantize (awq)"
    ]


def test_exl2_cannot_be_sharded() -> None:
    assert _issues("model: {id: m}\nengine: {quantize: exl2, numShard: 2}\nresources: {gpu: 2}") == [
        "engine.numShard: exl2 quantization does not support sharding (numShard=2)"
    ]


def test_vllm_rejects_tgi_only_quantization_and_limits() -> None:
    issues = _issues("model: {id: m}\nengine: {kind: vllm, quantize: eetq, maxConcurrentRequests: 10}")
    assert issues == [
        "engine.quantize: eetq is not supported by vllm (awq, bitsandbytes, fp8, gptq, none)",
        "engine.maxConcurrentRequests: not supported by engine vllm; it applies to tgi only",
    ]


def test_engine_kind_selects_the_queue_metric() -> None:
    assert _parse("model: {id: m}\nengine: {kind: vllm}").queue_metric == "vllm_num_requests_waiting"
    assert _parse("model: {id: m}\nengine: {kind: sglang}").queue_metric == "sglang_num_queue_reqs"
    custom = _parse("model: {id: m}\nautoscaling: {queue: {metric: my_queue}}")
    assert custom.queue_metric == "my_queue"


def test_batch_size_metric_needs_a_name_for_engines_without_a_default() -> None:
    assert _issues(
        "model: {id: m}\nengine: {kind: sglang}\nautoscaling: {batchSize: {targetPerReplica: 8}}"
    ) == ["autoscaling.batchSize.metric: required for engine sglang (no default batch-size metric)"]
    tgi = _parse("model: {id: m}\nautoscaling: {batchSize: {targetPerReplica: 8}}")
    assert tgi.batch_metric == "tgi_batch_current_size"


def test_env_may_not_override_variables_the_spec_sets() -> None:
    issues = _issues(
        """
        model: {id: m}
        engine:
          env:
            - {name: MODEL_ID, value: other}
            - {name: EXTRA, value: "1"}
            - {name: EXTRA, value: "2"}
        """
    )
    assert issues == [
        "engine.env[0].name: MODEL_ID is set from the spec; use the spec field instead",
        "engine.env[2].name: duplicate variable EXTRA",
    ]


def test_env_needs_exactly_one_value_source() -> None:
    assert _issues("model: {id: m}\nengine: {env: [{name: A}]}") == [
        "engine.env[0]: set exactly one of value or secretKeyRef"
    ]


def test_min_replicas_above_max_is_rejected() -> None:
    assert _issues("model: {id: m}\nautoscaling: {minReplicas: 5, maxReplicas: 2}") == [
        "autoscaling.minReplicas: must be <= maxReplicas (5 > 2)"
    ]


def test_negative_min_replicas_is_rejected_and_zero_scales_to_zero() -> None:
    assert _issues("model: {id: m}\nautoscaling: {minReplicas: -1}") == [
        "autoscaling.minReplicas: must be >= 0"
    ]
    assert parse_service_yaml("model: {id: m}\nautoscaling: {minReplicas: 0}", source="t").scales_to_zero


@pytest.mark.parametrize(
    ("autoscaling", "expected"),
    [
        ("{scaleUp: {policies: []}}", "autoscaling.scaleUp.policies: must have at least 1 item(s)"),
        (
            "{scaleDown: {stabilizationWindowSeconds: 4000}}",
            "autoscaling.scaleDown.stabilizationWindowSeconds: must be <= 3600",
        ),
        (
            "{scaleUp: {policies: [{type: Pods, value: 1, periodSeconds: 0}]}}",
            "autoscaling.scaleUp.policies[0].periodSeconds: must be >= 1",
        ),
        (
            "{scaleUp: {selectPolicy: Most}}",
            "autoscaling.scaleUp.selectPolicy: Input should be 'Max', 'Min' or 'Disabled'",
        ),
        ("{queue: {targetPerReplica: 0}}", "autoscaling.queue.targetPerReplica: must be > 0"),
    ],
)
def test_hpa_behavior_limits_match_the_kubernetes_api(autoscaling: str, expected: str) -> None:
    assert _issues(f"model: {{id: m}}\nautoscaling: {autoscaling}") == [expected]


def test_created_single_node_cache_cannot_serve_several_replicas() -> None:
    assert _issues("model: {id: m}\ncache: {create: {accessMode: ReadWriteOnce}}") == [
        "cache.create.accessMode: ReadWriteOnce cannot be mounted by replicas on different nodes; use "
        "ReadWriteMany or autoscaling.maxReplicas=1 (is 4)"
    ]
    single = _parse(
        "model: {id: m}\ncache: {create: {accessMode: ReadWriteOnce}}\nautoscaling: {maxReplicas: 1}"
    )
    assert single.cache.create is not None


def test_cache_has_one_source() -> None:
    assert _issues("model: {id: m}\ncache: {existingClaim: c, create: {size: 10Gi}}") == [
        "cache: set at most one of existingClaim and create"
    ]


def test_shared_memory_must_fit_in_the_memory_limit() -> None:
    assert _issues("model: {id: m}\nresources: {shmSize: 32Gi, memoryLimit: 32Gi}") == [
        "resources.shmSize: must be < memoryLimit (32Gi >= 32Gi): the memory-backed shared-memory volume "
        "counts against the container memory limit"
    ]


def test_limits_must_not_be_below_requests() -> None:
    assert _issues(
        "model: {id: m}\nresources: {cpuRequest: '4', cpuLimit: 2000m, memoryRequest: 16Gi, memoryLimit: 8Gi}"
    ) == [
        "resources.cpuLimit: must be >= cpuRequest (2000m < 4)",
        "resources.memoryLimit: must be >= memoryRequest (8Gi < 16Gi)",
    ]


def test_ingress_needs_a_host_and_issuer_needs_a_tls_secret() -> None:
    assert _issues("model: {id: m}\ningress: {enabled: true, clusterIssuer: letsencrypt}") == [
        "ingress.host: required when ingress is enabled",
        "ingress.clusterIssuer: needs tlsSecretName (where cert-manager stores the certificate)",
    ]


def test_ingress_host_must_be_a_dns_name() -> None:
    (issue,) = _issues("model: {id: m}\ningress: {enabled: true, host: 'Not A Host'}")
    assert issue.startswith("ingress.host: 'Not A Host' is not a fully qualified lower-case DNS name")


def test_auth_needs_a_key_secret() -> None:
    assert _issues("model: {id: m}\nauth: {enabled: true}") == [
        "auth.apiKeysSecret: required when auth is enabled"
    ]


def test_reserved_pod_labels_are_rejected() -> None:
    assert _issues("model: {id: m}\npodLabels: {app.kubernetes.io/instance: other, team: ml}") == [
        "podLabels.app.kubernetes.io/instance: reserved label prefix (set by the controller)"
    ]


def test_rollout_must_be_able_to_progress() -> None:
    assert _issues("model: {id: m}\nrollout: {maxSurge: 0, maxUnavailable: 0}") == [
        "rollout: maxSurge and maxUnavailable cannot both be 0 (the rollout could never progress)"
    ]


def test_observability_sections_are_part_of_the_spec() -> None:
    (issue,) = _issues("model: {id: m}\nalerts: {latencyP95: {threshold: -1}}")
    assert issue == "alerts.latencyP95.threshold: must be > 0"
    spec = _parse("model: {id: m}\ndashboard: {namespace: grafana}")
    assert spec.dashboard.namespace == "grafana"


def test_spec_is_immutable() -> None:
    spec = _parse("model: {id: m}")
    with pytest.raises(ValueError, match="frozen"):
        spec.model.id = "other"  # type: ignore[misc]


def test_config_error_requires_an_issue() -> None:
    with pytest.raises(ValueError, match="at least one issue"):
        ConfigError("x", [])
    assert str(ConfigIssue("a.b", "broken")) == "a.b: broken"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "model: {id: m}\nengine: {numShard: 2}\nalerts: {latencyP95: {threshold: 0}}",
            [
                "alerts.latencyP95.threshold: must be > 0",
                "engine.numShard: must equal resources.gpu (2 != 1): each shard needs its own GPU",
            ],
        ),
        (
            "engine: {numShard: 2}",
            [
                "model: required",
                "engine.numShard: must equal resources.gpu (2 != 1): each shard needs its own GPU",
            ],
        ),
        (
            "model: {id: m}\nengine: {numShard: 2}\nautoscaling: {minReplicas: 3, maxReplicas: 1}",
            [
                "autoscaling.minReplicas: must be <= maxReplicas (3 > 1)",
                "engine.numShard: must equal resources.gpu (2 != 1): each shard needs its own GPU",
            ],
        ),
    ],
)
def test_field_errors_and_cross_section_errors_are_reported_together(text: str, expected: list[str]) -> None:
    assert _issues(text) == expected


def test_a_cross_section_rule_over_an_invalid_section_is_not_guessed() -> None:
    # resources is invalid, so whether numShard matches its GPUs is unknown: no second issue.
    (issue,) = _issues("model: {id: m}\nengine: {numShard: 2}\nresources: {gpu: 2, cpuRequest: x}")
    assert issue.startswith("resources.cpuRequest: 'x' is not a Kubernetes quantity")


def test_gpu_resource_name_must_be_an_extended_resource_name() -> None:
    (issue,) = _issues("model: {id: m}\nresources: {gpuResourceName: gpu}")
    assert issue.startswith("resources.gpuResourceName: 'gpu' is not an extended resource name")
