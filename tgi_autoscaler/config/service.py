"""The typed model of one LLM service: the single source of truth the controller and renderer work from.

A service is written as YAML (camelCase keys, Kubernetes style) into a ConfigMap; ``parse_service_yaml``
turns it into a frozen ``TGIServiceSpec`` or raises one ``ConfigError`` listing every problem with its
key path. Defaults are chosen for GPU servers that take minutes to start and hold expensive hardware:
each field's description says what it does and why its default is what it is, and the configuration
reference (``docs/configuration.md``) is generated from those descriptions.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    Field,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from tgi_autoscaler.config.base import ConfigModel as SpecModel
from tgi_autoscaler.config.base import issue as _issue
from tgi_autoscaler.config.base import load_yaml, valid_fields, validate
from tgi_autoscaler.config.base import raise_issues as _raise_issues
from tgi_autoscaler.config.errors import ConfigError, ConfigIssue
from tgi_autoscaler.config.observability import AlertsSpec, DashboardSpec, parse_duration_seconds
from tgi_autoscaler.engines import ENGINES, Engine, EngineKind, Quantization
from tgi_autoscaler.k8s.names import (
    MAX_DNS_SUBDOMAIN_LENGTH,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_env_var_name,
    is_extended_resource_name,
)
from tgi_autoscaler.k8s.quantity import parse_quantity
from tgi_autoscaler.servicemodel.capacity import slo_target_rps
from tgi_autoscaler.servicemodel.params import ParamsError, ServerParams

__all__ = [
    "AccessMode",
    "AffinityOrNone",
    "AuthProxySpec",
    "AutoscalingSpec",
    "BatchSizeMetricSpec",
    "CacheSpec",
    "CpuMetricSpec",
    "CreateClaimSpec",
    "Dtype",
    "EndpointPickerSpec",
    "EngineKind",
    "EngineSpec",
    "EnvVar",
    "EnvoyGatewayRateLimitSpec",
    "GatewayRefSpec",
    "InferencePoolSpec",
    "IngressSpec",
    "LivenessProbeSpec",
    "ModelSpec",
    "ProbeSpec",
    "ProbesSpec",
    "Quantization",
    "QueueMetricSpec",
    "RateLimitSpec",
    "ReadinessProbeSpec",
    "ResourcesSpec",
    "RolloutSpec",
    "RolloutStrategy",
    "RoutingSpec",
    "ScaleDownSpec",
    "ScaleUpSpec",
    "ScalingPolicy",
    "SchedulingSpec",
    "ScrapeSpec",
    "SecretKeyRef",
    "SecuritySpec",
    "ServicePortSpec",
    "SpecModel",
    "StartupProbeSpec",
    "TGIServiceSpec",
    "Toleration",
    "TypeLabel",
    "parse_service_yaml",
]


# --------------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TypeLabel:
    """How the configuration reference names a constrained string type (``quantity``, ``duration``)."""

    name: str


def _check_quantity(value: str) -> str:
    if parse_quantity(value) <= 0:
        raise ValueError(f"{value!r} must be greater than zero")
    return value


def _check_duration(value: str) -> str:
    if parse_duration_seconds(value) <= 0:
        raise ValueError(f"{value!r} must be longer than zero")
    return value


def _check_dns_subdomain(value: str) -> str:
    if not is_dns1123_subdomain(value):
        raise ValueError(
            f"{value!r} is not a valid Kubernetes object name (lower-case letters, digits, '-' and '.', "
            "starting and ending with a letter or digit, at most 253 characters)"
        )
    return value


def _check_dns_label(value: str) -> str:
    if not is_dns1123_label(value):
        raise ValueError(
            f"{value!r} is not a valid namespace name (lower-case letters, digits and '-', starting and "
            "ending with a letter or digit, at most 63 characters)"
        )
    return value


def _check_env_name(value: str) -> str:
    if not is_env_var_name(value):
        raise ValueError(f"{value!r} is not a valid environment variable name")
    return value


def _check_host(value: str) -> str:
    # An Ingress host: a DNS name of at least two labels, optionally behind one wildcard label.
    name = value.removeprefix("*.")
    if len(value) > MAX_DNS_SUBDOMAIN_LENGTH or "." not in name or not is_dns1123_subdomain(name):
        raise ValueError(f"{value!r} is not a fully qualified lower-case DNS name (example: llm.example.com)")
    return value


def _check_resource_name(value: str) -> str:
    if not is_extended_resource_name(value):
        raise ValueError(
            f"{value!r} is not an extended resource name (a DNS prefix, '/' and a name, e.g. nvidia.com/gpu)"
        )
    return value


Quantity = Annotated[str, AfterValidator(_check_quantity), TypeLabel("quantity")]
ResourceName = Annotated[str, AfterValidator(_check_resource_name)]
Duration = Annotated[str, AfterValidator(_check_duration), TypeLabel("duration")]
ObjectName = Annotated[str, AfterValidator(_check_dns_subdomain), TypeLabel("object name")]
EnvName = Annotated[str, AfterValidator(_check_env_name), TypeLabel("env var name")]
HostName = Annotated[str, AfterValidator(_check_host), TypeLabel("DNS name")]
LabelName = Annotated[str, AfterValidator(_check_dns_label), TypeLabel("DNS label")]
SectionName = Annotated[str, AfterValidator(_check_dns_subdomain), TypeLabel("listener name")]
PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]
Port = Annotated[int, Field(ge=1, le=65535)]
AffinityOrNone = dict[str, Any] | None


class SecretKeyRef(SpecModel):
    """A key inside a Kubernetes Secret in the service's namespace. The secret value never appears here."""

    name: ObjectName = Field(description="Name of the Secret.")
    key: str = Field(min_length=1, description="Key inside the Secret's data.")


# --------------------------------------------------------------------------------------------------
# Model and engine
# --------------------------------------------------------------------------------------------------


class Dtype(StrEnum):
    """Weights dtype forced on the model (``--dtype``); cannot be combined with quantization."""

    FLOAT16 = "float16"
    BFLOAT16 = "bfloat16"


class ModelSpec(SpecModel):
    """Which model to serve."""

    id: str = Field(
        min_length=1,
        description="Hugging Face Hub model id (e.g. `meta-llama/Llama-2-7b-chat-hf`) or a path inside the "
        "model cache volume.",
    )
    revision: str | None = Field(
        default=None,
        description="Hub revision (commit sha, tag or branch). Pin a commit sha in production so a new "
        "push to the model repository cannot change what a newly started replica serves.",
    )
    trust_remote_code: bool = Field(
        default=False,
        description="Allow the model repository's own Python code to run. Off by default because it "
        "executes code from the Hub inside the pod; if enabled, pin `revision` as well.",
    )
    hf_token_secret: SecretKeyRef | None = Field(
        default=None,
        description="Secret key holding a Hugging Face token, needed for gated models such as Llama 2. "
        "Exposed to the server as `HF_TOKEN`; the token itself never appears in the spec.",
    )


class EnvVar(SpecModel):
    """An extra environment variable: a literal value or a reference to a Secret key."""

    name: EnvName = Field(description="Variable name.")
    value: str | None = Field(default=None, description="Literal value.")
    secret_key_ref: SecretKeyRef | None = Field(
        default=None, description="Take the value from this Secret key instead of `value`."
    )

    @model_validator(mode="after")
    def _exactly_one_source(self) -> EnvVar:
        if (self.value is None) == (self.secret_key_ref is None):
            _raise_issues([_issue("", "set exactly one of value or secretKeyRef")])
        return self


class EngineSpec(SpecModel):
    """The inference server process: image, port and the batching limits of TGI's launcher."""

    kind: EngineKind = Field(
        default=EngineKind.TGI,
        description="Inference server: `tgi` (Text Generation Inference), `vllm` or `sglang`. Selects the "
        "default image, port, command line and the queue metric the autoscaler scales on.",
    )
    image: str | None = Field(
        default=None,
        description="Container image. Default: a pinned release of the engine (TGI "
        f"`{ENGINES[EngineKind.TGI].image}`, vLLM `{ENGINES[EngineKind.VLLM].image}`, "
        f"SGLang `{ENGINES[EngineKind.SGLANG].image}`).",
    )
    image_pull_policy: Literal["IfNotPresent", "Always", "Never"] = Field(
        default="IfNotPresent",
        description="Image pull policy. `IfNotPresent` because LLM server images are several GB and tags "
        "are pinned.",
    )
    port: Port | None = Field(
        default=None,
        description="Container port serving the API, `/health` and `/metrics`. Default: TGI 8080 (the "
        "image's 80 would need the NET_BIND_SERVICE capability, which the pod drops), vLLM 8000, "
        "SGLang 30000.",
    )
    num_shard: PositiveInt = Field(
        default=1,
        description="Tensor-parallel shards = GPUs used by one pod (`NUM_SHARD`, vLLM "
        "`--tensor-parallel-size`, SGLang `--tp`). Must equal `resources.gpu`.",
    )
    quantize: Quantization = Field(
        default=Quantization.NONE,
        description="Quantization (`QUANTIZE`): `none`, `awq`, `eetq`, `exl2`, `gptq`, `marlin`, "
        "`bitsandbytes`, `bitsandbytes-nf4`, `bitsandbytes-fp4`, `fp8`. Pre-quantized checkpoints "
        "(GPTQ/AWQ repositories) are detected by TGI even with `none`. vLLM and SGLang accept `awq`, "
        "`gptq`, `fp8` and `bitsandbytes`.",
    )
    dtype: Dtype | None = Field(
        default=None,
        description="Force the weights dtype (`float16` or `bfloat16`); unset lets the server pick the "
        "model's own. Cannot be combined with `quantize`, like TGI's launcher.",
    )
    max_concurrent_requests: PositiveInt | None = Field(
        default=None,
        description="TGI only (`MAX_CONCURRENT_REQUESTS`, TGI's default 128): requests above this are "
        "refused with 429 instead of queueing without bound. Queue depth, not this limit, drives "
        "scaling; a limit keeps latency bounded while new replicas start.",
    )
    max_input_tokens: PositiveInt | None = Field(
        default=None,
        description="Longest prompt accepted, in tokens (`MAX_INPUT_TOKENS`). Unset: the server derives "
        "it from the model (TGI: min(max_position_embeddings - 1, 4095)). Must be < `maxTotalTokens` "
        "and <= `maxBatchPrefillTokens`.",
    )
    max_input_length: PositiveInt | None = Field(
        default=None,
        description="Deprecated TGI name of `maxInputTokens`, accepted for specs written against older "
        "TGI releases; set only one of the two.",
    )
    max_total_tokens: PositiveInt | None = Field(
        default=None,
        description="Prompt plus generated tokens per request (`MAX_TOTAL_TOKENS`; vLLM "
        "`--max-model-len`, SGLang `--context-length`): the per-request memory budget.",
    )
    max_batch_prefill_tokens: PositiveInt | None = Field(
        default=None,
        description="Tokens processed in one prefill step (`MAX_BATCH_PREFILL_TOKENS`; vLLM "
        "`--max-num-batched-tokens`, SGLang `--max-prefill-tokens`). TGI default: maxInputTokens + 50.",
    )
    max_batch_total_tokens: PositiveInt | None = Field(
        default=None,
        description="Tokens across the whole running batch (`MAX_BATCH_TOTAL_TOKENS`; SGLang "
        "`--max-total-tokens`). Unset lets TGI size it from free GPU memory after loading, which is "
        "usually what you want; set it to cap memory. Must be >= `maxTotalTokens` and "
        ">= `maxBatchPrefillTokens`.",
    )
    extra_args: list[str] = Field(
        default_factory=list,
        description="Extra command-line arguments appended to the server's own.",
    )
    env: list[EnvVar] = Field(
        default_factory=list,
        description="Extra environment variables. Names the renderer sets from this spec (e.g. "
        "`MODEL_ID`, `NUM_SHARD`, `HF_TOKEN`) are rejected so the pod cannot disagree with the spec.",
    )

    @property
    def defaults(self) -> Engine:
        """The engine's entry in the engine table: default image and port, metric names, command line."""
        return ENGINES[self.kind]

    @property
    def effective_image(self) -> str:
        return self.image if self.image is not None else self.defaults.image

    @property
    def effective_port(self) -> int:
        return self.port if self.port is not None else self.defaults.port

    @property
    def effective_max_input_tokens(self) -> int | None:
        return self.max_input_tokens if self.max_input_tokens is not None else self.max_input_length

    @model_validator(mode="after")
    def _launcher_rules(self) -> EngineSpec:
        issues: list[tuple[str, str]] = []
        if self.max_input_tokens is not None and self.max_input_length is not None:
            issues.append(
                _issue(
                    "maxInputLength",
                    "set only maxInputTokens (maxInputLength is its deprecated name)",
                )
            )
        issues.extend(self._token_relations())
        if self.dtype is not None and self.quantize is not Quantization.NONE:
            issues.append(_issue("dtype", f"cannot be combined with quantize ({self.quantize.value})"))
        if self.quantize is Quantization.EXL2 and self.num_shard > 1:
            issues.append(
                _issue("numShard", f"exl2 quantization does not support sharding (numShard={self.num_shard})")
            )
        if self.quantize not in self.defaults.quantizations:
            allowed = ", ".join(sorted(q.value for q in self.defaults.quantizations))
            issues.append(
                _issue("quantize", f"{self.quantize.value} is not supported by {self.kind.value} ({allowed})")
            )
        issues.extend(self._engine_specific_fields())
        reserved = self.defaults.reserved_env
        for index, env in enumerate(self.env):
            if env.name in reserved:
                issues.append(
                    _issue(
                        f"env[{index}].name", f"{env.name} is set from the spec; use the spec field instead"
                    )
                )
        seen: set[str] = set()
        for index, env in enumerate(self.env):
            if env.name in seen:
                issues.append(_issue(f"env[{index}].name", f"duplicate variable {env.name}"))
            seen.add(env.name)
        _raise_issues(issues)
        return self

    def _token_relations(self) -> list[tuple[str, str]]:
        """The relations TGI's launcher and router check at start-up, checked before any GPU is spent."""
        issues: list[tuple[str, str]] = []
        inp = self.effective_max_input_tokens
        inp_key = "maxInputTokens" if self.max_input_tokens is not None else "maxInputLength"
        total = self.max_total_tokens
        prefill = self.max_batch_prefill_tokens
        batch_total = self.max_batch_total_tokens
        if inp is not None and total is not None and inp >= total:
            issues.append(_issue(inp_key, f"must be < maxTotalTokens ({inp} >= {total})"))
        if inp is not None and prefill is not None and prefill < inp:
            issues.append(_issue("maxBatchPrefillTokens", f"must be >= {inp_key} ({prefill} < {inp})"))
        if batch_total is not None:
            if total is not None and total > batch_total:
                issues.append(
                    _issue("maxBatchTotalTokens", f"must be >= maxTotalTokens ({batch_total} < {total})")
                )
            if prefill is not None and prefill > batch_total:
                issues.append(
                    _issue(
                        "maxBatchTotalTokens",
                        f"must be >= maxBatchPrefillTokens ({batch_total} < {prefill})",
                    )
                )
        return issues

    def _engine_specific_fields(self) -> list[tuple[str, str]]:
        return [
            _issue(to_camel(name), f"not supported by engine {self.kind.value}; it applies to tgi only")
            for name in self.defaults.unsupported_fields
            if getattr(self, name) is not None
        ]


# --------------------------------------------------------------------------------------------------
# Pod resources, storage and scheduling
# --------------------------------------------------------------------------------------------------


class ResourcesSpec(SpecModel):
    """CPU, memory, GPUs and shared memory of one TGI pod."""

    cpu_request: Quantity = Field(
        default="4",
        description="CPU request. Tokenization and the HTTP router run on CPU; 4 cores keep them off "
        "the request path of a 7B model.",
    )
    cpu_limit: Quantity | None = Field(
        default=None,
        description="CPU limit. Unset by default: CFS throttling of the router adds latency to every "
        "token, and the GPU, not the CPU, is the resource being shared.",
    )
    memory_request: Quantity = Field(
        default="16Gi",
        description="Memory request. Weights are staged through host memory while loading.",
    )
    memory_limit: Quantity | None = Field(
        default="32Gi",
        description="Memory limit. The memory-backed `/dev/shm` counts against it, so it must exceed "
        "`shmSize`.",
    )
    gpu: int = Field(
        default=1,
        ge=0,
        description="GPUs per pod (request = limit, as Kubernetes requires for extended resources). Must "
        "equal `engine.numShard`; 0 runs on CPU (tests and tiny models only).",
    )
    gpu_resource_name: ResourceName = Field(
        default="nvidia.com/gpu",
        description="Extended resource name of the GPU (e.g. `nvidia.com/gpu`, `amd.com/gpu`, or a MIG "
        "profile such as `nvidia.com/mig-3g.40gb`).",
    )
    shm_size: Quantity = Field(
        default="1Gi",
        description="Size of the memory-backed `/dev/shm`. NCCL uses it between shards; the container "
        "runtime's 64Mi default makes sharded TGI crash.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> ResourcesSpec:
        issues: list[tuple[str, str]] = []
        if self.cpu_limit is not None and parse_quantity(self.cpu_limit) < parse_quantity(self.cpu_request):
            issues.append(
                _issue("cpuLimit", f"must be >= cpuRequest ({self.cpu_limit} < {self.cpu_request})")
            )
        if self.memory_limit is not None:
            limit = parse_quantity(self.memory_limit)
            if limit < parse_quantity(self.memory_request):
                issues.append(
                    _issue(
                        "memoryLimit",
                        f"must be >= memoryRequest ({self.memory_limit} < {self.memory_request})",
                    )
                )
            if parse_quantity(self.shm_size) >= limit:
                issues.append(
                    _issue(
                        "shmSize",
                        f"must be < memoryLimit ({self.shm_size} >= {self.memory_limit}): the memory-backed "
                        "shared-memory volume counts against the container memory limit",
                    )
                )
        _raise_issues(issues)
        return self


AccessMode = Literal["ReadWriteOnce", "ReadWriteMany", "ReadOnlyMany", "ReadWriteOncePod"]


class CreateClaimSpec(SpecModel):
    """A PersistentVolumeClaim the controller creates (and deletes with the service) for the model cache."""

    size: Quantity = Field(
        default="100Gi",
        description="Requested storage. A 7B fp16 model is ~14 GB; leave room for a second revision.",
    )
    storage_class_name: str | None = Field(
        default=None,
        description="StorageClass; unset uses the cluster default. Prefer fast shared storage (e.g. EFS, "
        "Filestore, CephFS): every new replica reads the full weights from it while starting.",
    )
    access_mode: AccessMode = Field(
        default="ReadWriteMany",
        description="Access mode. `ReadWriteMany` so replicas on different nodes share one copy of the "
        "weights; a single-node mode cannot serve more than one replica.",
    )


class CacheSpec(SpecModel):
    """Where downloaded weights live. Without a shared volume each new replica downloads the model again."""

    existing_claim: ObjectName | None = Field(
        default=None,
        description="Mount this existing PersistentVolumeClaim (e.g. a shared `tgi-model-cache`). "
        "Not created or deleted by the controller.",
    )
    create: CreateClaimSpec | None = Field(
        default=None,
        description="Create a PersistentVolumeClaim named `<service>-model-cache` with these settings.",
    )
    empty_dir_size_limit: Quantity = Field(
        default="100Gi",
        description="Size limit of the per-pod `emptyDir` used when neither `existingClaim` nor `create` "
        "is set (every replica then downloads the weights on start, slowing scale-up).",
    )
    mount_path: str = Field(
        default="/data",
        pattern=r"^/",
        description="Mount path of the cache; the engine's Hugging Face cache points at it. `/data` is "
        "where TGI's image expects it.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> CacheSpec:
        if self.existing_claim is not None and self.create is not None:
            _raise_issues([_issue("", "set at most one of existingClaim and create")])
        return self


class Toleration(SpecModel):
    """A Kubernetes toleration (same fields as the Pod API)."""

    key: str | None = Field(default=None, description="Taint key; unset with `Exists` tolerates every taint.")
    operator: Literal["Exists", "Equal"] = Field(default="Equal", description="`Exists` or `Equal`.")
    value: str | None = Field(default=None, description="Taint value for `Equal`.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect; unset matches every effect."
    )
    toleration_seconds: int | None = Field(default=None, ge=0, description="Only for `NoExecute`.")

    @model_validator(mode="after")
    def _valid(self) -> Toleration:
        issues: list[tuple[str, str]] = []
        if self.operator == "Exists" and self.value is not None:
            issues.append(_issue("value", "must be empty when operator is Exists"))
        if self.key is None and self.operator != "Exists":
            issues.append(_issue("operator", "must be Exists when key is empty"))
        if self.toleration_seconds is not None and self.effect != "NoExecute":
            issues.append(_issue("tolerationSeconds", "only applies to effect NoExecute"))
        _raise_issues(issues)
        return self


def _default_tolerations() -> list[Toleration]:
    return [Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")]


class SchedulingSpec(SpecModel):
    """Where pods may run."""

    node_selector: dict[str, str] = Field(
        default_factory=dict,
        description="Node labels a node must carry (e.g. `accelerator: nvidia-gpu`).",
    )
    tolerations: list[Toleration] = Field(
        default_factory=_default_tolerations,
        description="Tolerations. Default tolerates the `nvidia.com/gpu:NoSchedule` taint GPU node pools "
        "usually carry.",
    )
    affinity: AffinityOrNone = Field(
        default=None,
        description="Pod `affinity` object, passed through unchanged (Kubernetes validates it).",
    )
    priority_class_name: str | None = Field(
        default=None,
        description="PriorityClass; a high priority lets GPU servers preempt batch jobs when scaling up.",
    )
    service_account_name: str | None = Field(
        default=None, description="ServiceAccount of the pods; unset uses the namespace default."
    )
    image_pull_secrets: list[ObjectName] = Field(
        default_factory=list, description="Names of image pull Secrets."
    )
    termination_grace_period_seconds: int = Field(
        default=120,
        ge=0,
        description="Time a stopping pod gets to finish in-flight generations after SIGTERM; long "
        "generations take minutes, and TGI stops its webserver gracefully within 90 s.",
    )


class SecuritySpec(SpecModel):
    """Pod security settings. Capabilities are always dropped and privilege escalation always denied."""

    run_as_user: int | None = Field(
        default=None,
        ge=0,
        description="UID to run as. Unset keeps the image's user (the TGI image runs as root); set e.g. "
        "1000 together with `fsGroup` to run unprivileged.",
    )
    run_as_group: int | None = Field(default=None, ge=0, description="GID to run as.")
    fs_group: int | None = Field(
        default=None,
        ge=0,
        description="Group owning mounted volumes, so a non-root server can write the model cache.",
    )


class RolloutStrategy(StrEnum):
    """How a change of what is served (the model, its revision, the engine or its image) reaches the pods."""

    BLUE_GREEN = "BlueGreen"
    ROLLING_UPDATE = "RollingUpdate"


class RolloutSpec(SpecModel):
    """How a changed spec replaces running pods.

    Changes that keep the model (resources, env, probes) always roll the serving Deployment in place.
    Changes of what is served follow ``strategy``: a blue-green switch starts a second Deployment, waits
    until its pods are Ready and moves the Service to it in one selector change, so no client ever
    sees two models behind one Service.
    """

    strategy: RolloutStrategy = Field(
        default=RolloutStrategy.BLUE_GREEN,
        description="`BlueGreen`: a change of model id or revision, engine kind or image, shards, "
        "quantization or dtype starts a new Deployment beside the serving one and switches the Service, "
        "the HPA and the alerts to it once its pods are Ready, so no client sees two models behind one "
        "Service (docs/rollout.md). `RollingUpdate`: every change rolls the serving Deployment in place "
        "(for minutes, both models answer behind one Service).",
    )
    ready_timeout_seconds: PositiveInt = Field(
        default=1800,
        description="Longest wait for a blue-green candidate's pods to become Ready. Past it the "
        "Service stays on the serving model, the candidate is kept for inspection and the service "
        "reports `RolloutFailed`; the next edit replaces the candidate.",
    )
    grace_period_seconds: NonNegativeInt = Field(
        default=600,
        description="How long the previous Deployment is kept (at its size) after a blue-green switch, "
        "so that reverting the edit switches back at once; then it is deleted.",
    )
    gpu_budget: bool = Field(
        default=False,
        description="Blue-green without extra GPUs (the candidate grows one pod at a time as the "
        "serving Deployment shrinks by one). Planned (docs/rollout.md) but refused by this controller: "
        "the HPA keeps scaling the serving Deployment during a switch and would undo its shrinking. "
        "Where no GPU is spare, use `strategy: RollingUpdate` with `maxSurge: 0, maxUnavailable: 1`.",
    )

    @field_validator("gpu_budget")
    @classmethod
    def _gpu_budget_not_applied(cls, value: bool) -> bool:
        # Accepting it would start a full-size candidate that the cluster has no GPUs for.
        if value:
            raise ValueError(
                "not applied by this controller yet (the HPA would undo the serving Deployment's "
                "shrinking); where no GPU is spare use strategy RollingUpdate with maxSurge 0 and "
                "maxUnavailable 1"
            )
        return value

    max_surge: int = Field(
        default=1,
        ge=0,
        description="Extra pods during a rollout. 1 needs one spare GPU node; set 0 (with maxUnavailable 1) "
        "where no GPU is spare.",
    )
    max_unavailable: int = Field(
        default=0,
        ge=0,
        description="Pods that may be down during a rollout. 0 keeps full capacity while the new "
        "version loads the model.",
    )

    @model_validator(mode="after")
    def _progress_possible(self) -> RolloutSpec:
        if self.max_surge == 0 and self.max_unavailable == 0:
            _raise_issues(
                [
                    _issue(
                        "", "maxSurge and maxUnavailable cannot both be 0 (the rollout could never progress)"
                    )
                ]
            )
        return self


# --------------------------------------------------------------------------------------------------
# Health probes
# --------------------------------------------------------------------------------------------------


class ProbeSpec(SpecModel):
    """HTTP probe timing (path and port come from the engine). Unset keys keep the probe's defaults."""

    period_seconds: PositiveInt = Field(description="Seconds between probes.")
    timeout_seconds: PositiveInt = Field(description="Seconds before one probe counts as failed.")
    failure_threshold: PositiveInt = Field(description="Consecutive failures before acting.")


class StartupProbeSpec(ProbeSpec):
    """Startup probe timing: the budget for downloading and loading the model."""

    period_seconds: PositiveInt = Field(default=10, description="Seconds between probes.")
    timeout_seconds: PositiveInt = Field(default=5, description="Seconds before one probe counts as failed.")
    failure_threshold: PositiveInt = Field(
        default=180,
        description="Failures before the container is restarted: 180 x 10 s = 30 min for a cold download.",
    )


class LivenessProbeSpec(ProbeSpec):
    """Liveness probe timing."""

    period_seconds: PositiveInt = Field(default=10, description="Seconds between probes.")
    timeout_seconds: PositiveInt = Field(
        default=5, description="Seconds before one probe counts as failed; a busy server answers slower."
    )
    failure_threshold: PositiveInt = Field(
        default=6,
        description="Failures before a restart (60 s): a restart costs a model load, so only on a real hang.",
    )


class ReadinessProbeSpec(ProbeSpec):
    """Readiness probe timing."""

    period_seconds: PositiveInt = Field(default=5, description="Seconds between probes.")
    timeout_seconds: PositiveInt = Field(default=5, description="Seconds before one probe counts as failed.")
    failure_threshold: PositiveInt = Field(
        default=3, description="Failures before the pod leaves the Service endpoints (15 s)."
    )


class ProbesSpec(SpecModel):
    """Health checks on the engine's `/health`, shaped for servers that download and load GBs of weights."""

    startup: StartupProbeSpec = Field(
        default_factory=StartupProbeSpec,
        description="Startup probe: liveness and readiness wait until it succeeds, so a cold model "
        "download is never killed. Budget = periodSeconds x failureThreshold, default 10 s x 180 = "
        "30 min; raise it for large models on slow links.",
    )
    liveness: LivenessProbeSpec = Field(
        default_factory=LivenessProbeSpec,
        description="Liveness probe, active once started: a restart after 6 x 10 s of failing `/health`. "
        "No initial delay is needed (the startup probe covers loading).",
    )
    readiness: ReadinessProbeSpec = Field(
        default_factory=ReadinessProbeSpec,
        description="Readiness probe: takes a pod out of the Service after 3 x 5 s of failures, quickly "
        "enough to stop sending it traffic.",
    )

    @property
    def startup_budget_seconds(self) -> int:
        return self.startup.period_seconds * self.startup.failure_threshold


# --------------------------------------------------------------------------------------------------
# Autoscaling
# --------------------------------------------------------------------------------------------------


class ScalingPolicy(SpecModel):
    """One HPA scaling policy: at most `value` pods (or percent) per `periodSeconds`."""

    type: Literal["Pods", "Percent"] = Field(description="`Pods` or `Percent`.")
    value: PositiveInt = Field(description="Pods or percent of current replicas.")
    period_seconds: int = Field(ge=1, le=1800, description="Window the policy applies over (1-1800 s).")


def _scale_up_policies() -> list[ScalingPolicy]:
    return [
        ScalingPolicy(type="Percent", value=100, period_seconds=30),
        ScalingPolicy(type="Pods", value=4, period_seconds=30),
    ]


def _scale_down_policies() -> list[ScalingPolicy]:
    return [ScalingPolicy(type="Pods", value=1, period_seconds=60)]


class ScaleUpSpec(SpecModel):
    """HPA scale-up behavior. Unset keys keep their defaults."""

    stabilization_window_seconds: int = Field(
        default=0,
        ge=0,
        le=3600,
        description="The HPA scales up to the lowest recommendation seen over this window. 0: react to "
        "the first sample, because a replica takes minutes to load the model and a queue that builds "
        "meanwhile only grows.",
    )
    select_policy: Literal["Max", "Min", "Disabled"] = Field(
        default="Max",
        description="Which policy wins when several apply: `Max` (most change), `Min` (least) or `Disabled`.",
    )
    policies: list[ScalingPolicy] = Field(
        default_factory=_scale_up_policies,
        min_length=1,
        description="Scaling policies. Default: +100% or +4 pods per 30 s, whichever is larger: the "
        "demand signal asks for what the load needs, so the only reason to limit a step is a signal "
        "gone wrong.",
    )
    tolerance: float | None = Field(
        default=0.02,
        ge=0,
        le=1,
        description="Scale up only when the signal exceeds the target by more than this fraction "
        "(per-direction tolerance; the controller's flag, 10 %, applies when null). 2 %: with the "
        "demand signal a 5 % shortfall of capacity already queues requests.",
    )


class ScaleDownSpec(SpecModel):
    """HPA scale-down behavior. Unset keys keep their defaults."""

    stabilization_window_seconds: int = Field(
        default=300,
        ge=0,
        le=3600,
        description="The HPA scales down to the highest recommendation seen over this window. 300 s: "
        "long enough that a returning burst finds its replicas (the backtest study chose it), short "
        "enough not to hold idle GPUs for long.",
    )
    select_policy: Literal["Max", "Min", "Disabled"] = Field(
        default="Min",
        description="Which policy wins when several apply: `Max` (most change), `Min` (least) or `Disabled`.",
    )
    policies: list[ScalingPolicy] = Field(
        default_factory=_scale_down_policies,
        min_length=1,
        description="Scaling policies. Default: one pod per 60 s, so capacity drains gradually.",
    )
    tolerance: float | None = Field(
        default=0.1,
        ge=0,
        le=1,
        description="Scale down only when the signal is below the target by more than this fraction "
        "(per-direction tolerance; the controller's flag applies when null). 10 % keeps a replica "
        "count from flapping on noise.",
    )


class QueueMetricSpec(SpecModel):
    """The primary scaling signal: requests waiting in the server's queue."""

    metric: str | None = Field(
        default=None,
        pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$",
        description="External metric name served by the adapter. Default follows the engine: "
        "`tgi_queue_size`, `vllm_num_requests_waiting` or `sglang_num_queue_reqs`.",
    )
    target_per_replica: float = Field(
        default=10,
        gt=0,
        description="Target average queued requests per replica (HPA `AverageValue`). Queue depth grows "
        "only once a server's continuous batch is full, so a small standing queue is the sign to add "
        "capacity; 10 keeps batches full without letting waits grow long.",
    )


class BatchSizeMetricSpec(SpecModel):
    """Optional second signal: requests in the running batch (tracks load before a queue forms)."""

    metric: str | None = Field(
        default=None,
        pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$",
        description="External metric name. Default `tgi_batch_current_size` for TGI; required for other "
        "engines.",
    )
    target_per_replica: float = Field(
        gt=0,
        description="Target average running batch size per replica; set it below the batch size the "
        "GPU sustains at acceptable latency.",
    )


class CpuMetricSpec(SpecModel):
    """Optional CPU signal. GPU servers are rarely CPU bound, so queue depth is the better signal."""

    target_utilization: int = Field(
        default=70,
        ge=1,
        le=100,
        description="Target average CPU utilization in percent of the CPU request.",
    )


class SloSpec(SpecModel):
    """The service level the autoscaler provisions for: time to first token."""

    time_to_first_token_seconds: float = Field(
        default=2.0,
        gt=0,
        le=600,
        description="Time to first token (queue wait plus prefill) users should get. 2 s keeps a chat "
        "UI responsive; the prefill of a typical 1k-token prompt takes about 0.1 s.",
    )
    attainment: float = Field(
        default=0.99,
        gt=0,
        lt=1,
        description="Share of requests that must meet the TTFT. Higher asks for more headroom.",
    )


class CapacitySpec(SpecModel):
    """What one replica of this model on this GPU serves. Defaults: a 7-8B model on one A100
    (sources in docs/scaling-behavior.md); measure yours with `tgi-autoscaler backtest --calibrate`."""

    max_batch_size: PositiveInt = Field(
        default=64, description="Sequences one replica decodes at once (the engine's batch limit)."
    )
    decode_seconds_per_token: float = Field(
        default=0.0133, gt=0, description="Time per output token of a lone sequence (batch of one)."
    )
    batch_slowdown: float = Field(
        default=0.031,
        ge=0,
        description="How much each extra sequence in the batch slows a decode step (fraction).",
    )
    prefill_seconds_per_token: float = Field(
        default=0.0001, ge=0, description="Prefill time per prompt token."
    )
    prefill_overhead_seconds: float = Field(
        default=0.005, ge=0, description="Fixed time of one prefill step, whatever its prompts."
    )
    prompt_tokens: PositiveInt = Field(
        default=1155, description="Mean prompt tokens of this service's requests."
    )
    output_tokens: PositiveInt = Field(
        default=211, description="Mean generated tokens of this service's requests."
    )

    def server_params(self) -> ServerParams:
        return ServerParams(
            max_batch_size=self.max_batch_size,
            decode_step_s=self.decode_seconds_per_token,
            batch_slowdown=self.batch_slowdown,
            prefill_s_per_token=self.prefill_seconds_per_token,
            prefill_overhead_s=self.prefill_overhead_seconds,
        )


class DemandMetricSpec(SpecModel):
    """The demand signal: requests/s to serve (arrival rate plus backlog / 60 s), per replica."""

    metric: str | None = Field(
        default=None,
        pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$",
        description="External metric name served by the adapter. Default follows the engine: "
        "`tgi_request_demand`, `vllm_request_demand` or `sglang_request_demand`.",
    )
    target_per_replica: float | None = Field(
        default=None,
        gt=0,
        description="Requests/s one replica should carry (HPA `AverageValue`). Default: derived from "
        "`slo` and `capacity` (the largest rate at which the SLO holds, by the Erlang C formula).",
    )


class ScaleToZeroSpec(SpecModel):
    """Scale to zero (with `minReplicas: 0`): the HPA's native scale to zero (Kubernetes v1.37+)
    plus the activator, a small proxy in front of the Service that holds requests while no replica
    is Ready and exports how many it holds, so that the HPA wakes the service on the first one.

    Clients (and the Ingress, or the API-key proxy) reach the service through the activator's
    Service `<service>-activator`. The HPA then scales on `<engine>_request_demand_with_held`.
    """

    idle_after_seconds: int = Field(
        default=900,
        ge=1,
        le=86400,
        description="Scale to zero once no request has arrived for this long (the HPA then also "
        "waits out `scaleDown.stabilizationWindowSeconds`). 900 s: a model load costs minutes, so "
        "a service used every few minutes should stay up.",
    )
    max_held_requests: PositiveInt = Field(
        default=256,
        description="Requests one activator pod holds while no replica is Ready; more get 503 with "
        "`Retry-After`, so a client never waits on an unbounded line.",
    )
    max_wait_seconds: int = Field(
        default=300,
        ge=1,
        le=3600,
        description="Longest a request is held; then 503 with `Retry-After`. Must cover a cold start "
        "(scheduling, image pull, model load): 300 s.",
    )
    image: str = Field(
        default="tgi-autoscaler",
        description="The activator's image: this project's (it runs `tgi-autoscaler activator`).",
    )
    replicas: PositiveInt = Field(default=2, description="Activator replicas (2 survive a node failure).")
    cpu_request: Quantity = Field(default="100m", description="CPU request of one activator pod.")
    memory_request: Quantity = Field(default="96Mi", description="Memory request of one activator pod.")
    memory_limit: Quantity = Field(default="256Mi", description="Memory limit of one activator pod.")


class AutoscalingSpec(SpecModel):
    """HorizontalPodAutoscaler settings, tuned for servers that take minutes to become ready."""

    min_replicas: NonNegativeInt = Field(
        default=1,
        description="Fewest replicas. Use 2 for availability across a node failure. 0 scales an idle "
        "service to zero (see `scaleToZero`; needs the HPA's native scale to zero: Kubernetes v1.37+, "
        "or the HPAScaleToZero feature gate on older versions).",
    )
    max_replicas: PositiveInt = Field(
        default=4,
        description="Most replicas: the cap on GPUs this service may hold (maxReplicas x resources.gpu).",
    )
    signal: Literal["demand", "queue"] = Field(
        default="demand",
        description="What the HPA scales on. `demand`: requests/s to serve against what one replica "
        "carries at the SLO; it asks for the replicas the load needs and stops growing while new "
        "ones load the model. `queue`: queue depth per replica (overshoots on bursts; kept for "
        "existing setups).",
    )
    slo: SloSpec = Field(default_factory=SloSpec, description="The TTFT service level to provision for.")
    capacity: CapacitySpec = Field(default_factory=CapacitySpec, description="One replica's capacity.")
    demand: DemandMetricSpec = Field(default_factory=DemandMetricSpec, description="Demand metric.")
    queue: QueueMetricSpec = Field(
        default_factory=QueueMetricSpec, description="Queue-depth metric (with `signal: queue`)."
    )
    batch_size: BatchSizeMetricSpec | None = Field(
        default=None, description="Optional running-batch-size metric; the HPA follows the larger demand."
    )
    cpu: CpuMetricSpec | None = Field(default=None, description="Optional CPU utilization metric.")
    scale_to_zero: ScaleToZeroSpec = Field(
        default_factory=ScaleToZeroSpec,
        description="Idle window and activator of a service with `minReplicas: 0` (unused otherwise).",
    )
    scale_up: ScaleUpSpec = Field(
        default_factory=ScaleUpSpec,
        description="Scale-up behavior. Default: no stabilization window and the larger of +100% or "
        "+2 pods per 60 s, because a new replica needs minutes to load the model and a burst queued "
        "meanwhile only grows.",
    )
    scale_down: ScaleDownSpec = Field(
        default_factory=ScaleDownSpec,
        description="Scale-down behavior. Default: a 600 s stabilization window and one pod per 300 s "
        "(selectPolicy Min), because a removed replica costs minutes to bring back and traffic to LLM "
        "endpoints is bursty.",
    )

    @model_validator(mode="after")
    def _bounds(self) -> AutoscalingSpec:
        issues = []
        if self.min_replicas > self.max_replicas:
            issues.append(
                _issue("minReplicas", f"must be <= maxReplicas ({self.min_replicas} > {self.max_replicas})")
            )
        if self.min_replicas == 0 and self.signal != "demand":
            issues.append(
                _issue(
                    "minReplicas",
                    "0 needs signal: demand (at zero there is no queue to read; the demand signal "
                    f"counts the requests the activator holds), not signal: {self.signal}",
                )
            )
        if self.min_replicas == 0 and self.cpu is not None:
            issues.append(
                _issue("cpu", "not with minReplicas: 0 (there is no pod to measure at zero replicas)")
            )
        if self.signal == "demand" and self.demand.target_per_replica is None:
            try:
                self.demand_target()
            except ParamsError as exc:
                issues.append(_issue("slo", str(exc)))
        if issues:
            _raise_issues(issues)
        return self

    def demand_target(self) -> float:
        """Requests/s per replica the HPA targets with the demand signal (rounded to milli-units)."""
        if self.demand.target_per_replica is not None:
            return self.demand.target_per_replica
        target = slo_target_rps(
            self.capacity.server_params(),
            prompt_tokens=self.capacity.prompt_tokens,
            output_tokens=self.capacity.output_tokens,
            ttft_slo_s=self.slo.time_to_first_token_seconds,
            attainment=self.slo.attainment,
        )
        # Down to milli-units (the HPA's precision): never a hair above the rate the SLO allows.
        return max(math.floor(target * 1000) / 1000, 0.001)


# --------------------------------------------------------------------------------------------------
# Exposure: Service, Ingress, API-key proxy, scraping
# --------------------------------------------------------------------------------------------------


class ServicePortSpec(SpecModel):
    """The Service in front of the pods."""

    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = Field(
        default="ClusterIP",
        description="Service type. `ClusterIP`: expose externally through the Ingress or the Gateway route "
        "(and API-key proxy).",
    )
    port: Port = Field(default=80, description="Service port (targets the engine port).")
    annotations: dict[str, str] = Field(default_factory=dict, description="Extra Service annotations.")


class RateLimitSpec(SpecModel):
    """Per-client limits enforced by ingress-nginx (annotations `limit-rps`, `limit-connections`)."""

    requests_per_second: PositiveInt | None = Field(
        default=10,
        description="Requests per second per client IP (`nginx.ingress.kubernetes.io/limit-rps`). Note "
        "that ingress-nginx limits are per client IP and per ingress-controller replica, not global.",
    )
    burst_multiplier: PositiveInt | None = Field(
        default=None,
        description="Burst allowed above the rate, as a multiple of it (`limit-burst-multiplier`, "
        "ingress-nginx default 5).",
    )
    connections: PositiveInt | None = Field(
        default=None,
        description="Concurrent connections per client IP (`limit-connections`); streaming generations "
        "hold a connection for their whole duration.",
    )


class IngressSpec(SpecModel):
    """Optional Ingress for access from outside the cluster.

    The generated annotations are ingress-nginx's. ingress-nginx was retired by Kubernetes SIG Network
    on 2026-03-24 (no releases, no security fixes); prefer `routing` (Gateway API) where the cluster
    runs a Gateway implementation, and keep this for clusters that still run an Ingress controller.
    """

    enabled: bool = Field(default=False, description="Render an Ingress.")
    class_name: str = Field(default="nginx", description="IngressClass (`spec.ingressClassName`).")
    host: HostName | None = Field(default=None, description="Host name (required when enabled).")
    path: str = Field(default="/", pattern=r"^/", description="Path prefix routed to the service.")
    tls_secret_name: ObjectName | None = Field(
        default=None, description="TLS Secret for `host`; unset serves plain HTTP."
    )
    cluster_issuer: str | None = Field(
        default=None,
        description="cert-manager ClusterIssuer that issues `tlsSecretName` "
        "(annotation `cert-manager.io/cluster-issuer`).",
    )
    rate_limit: RateLimitSpec | None = Field(
        default_factory=RateLimitSpec, description="Per-client rate limits; null disables them."
    )
    proxy_read_timeout_seconds: PositiveInt = Field(
        default=300,
        description="Seconds the ingress waits between two reads from the server. Long generations "
        "stream for minutes; ingress-nginx's default of 60 s cuts them off.",
    )
    proxy_send_timeout_seconds: PositiveInt = Field(
        default=300, description="Seconds the ingress waits between two writes to the server."
    )
    proxy_body_size: Annotated[str, TypeLabel("nginx size")] = Field(
        default="10m",
        pattern=r"^\d+[kKmMgG]?$",
        description="Largest request body (`proxy-body-size`, nginx size syntax): long prompts are large.",
    )
    annotations: dict[str, str] = Field(
        default_factory=dict, description="Extra annotations; they override the generated ones."
    )

    @model_validator(mode="after")
    def _host_when_enabled(self) -> IngressSpec:
        issues: list[tuple[str, str]] = []
        if self.enabled and self.host is None:
            issues.append(_issue("host", "required when ingress is enabled"))
        if self.cluster_issuer is not None and self.tls_secret_name is None:
            issues.append(
                _issue("clusterIssuer", "needs tlsSecretName (where cert-manager stores the certificate)")
            )
        _raise_issues(issues)
        return self


class GatewayRefSpec(SpecModel):
    """The Gateway the HTTPRoute attaches to (`parentRefs`); TLS is the Gateway listener's business."""

    name: ObjectName = Field(description="Name of the Gateway.")
    namespace: LabelName | None = Field(
        default=None,
        description="Namespace of the Gateway; unset: the service's namespace. A Gateway in another "
        "namespace must admit routes from this one (its listener's `allowedRoutes.namespaces`).",
    )
    section_name: SectionName | None = Field(
        default=None,
        description="Listener of the Gateway to attach to (`parentRefs[].sectionName`), e.g. the HTTPS "
        "listener holding the certificate; unset: every listener that admits the route.",
    )


class EndpointPickerSpec(SpecModel):
    """The endpoint picker (EPP) the gateway asks which pod of the pool gets each request."""

    name: ObjectName = Field(
        description="Service of the endpoint picker, deployed beside the pool (for example by the "
        "inference extension's `inferencepool` Helm chart, which names it `<pool>-epp`)."
    )
    port: Port = Field(default=9002, description="gRPC port of the endpoint picker's ext-proc server.")
    failure_mode: Literal["FailClose", "FailOpen"] = Field(
        default="FailClose",
        description="What the gateway does when the picker is unreachable: `FailClose` rejects the "
        "request, `FailOpen` forwards it to a pod of the gateway's own choosing.",
    )


class InferencePoolSpec(SpecModel):
    """The InferencePool (`inference.networking.k8s.io/v1`) selecting the service's server pods."""

    endpoint_picker: EndpointPickerSpec = Field(
        description="Endpoint picker the pool names (`spec.endpointPickerRef`)."
    )


class EnvoyGatewayRateLimitSpec(SpecModel):
    """Per-client limits as an Envoy Gateway `BackendTrafficPolicy` (local rate limit) on the route.

    Core Gateway API has no rate limiting; with another implementation, use its own policy resource.
    """

    requests_per_second: PositiveInt = Field(
        description="Requests per second per client IP. A local limit: each Envoy proxy replica counts "
        "on its own, so the effective limit is this times the number of Envoy replicas."
    )


class RoutingSpec(SpecModel):
    """Optional Gateway API exposure: an HTTPRoute to a Gateway, to a Service or an InferencePool."""

    enabled: bool = Field(
        default=False, description="Render an HTTPRoute (and an InferencePool when chosen)."
    )
    gateway: GatewayRefSpec | None = Field(default=None, description="The Gateway (required when enabled).")
    hostnames: list[HostName] = Field(
        default_factory=list,
        max_length=16,
        description="Host names the route answers (`spec.hostnames`); empty: every host of the listener.",
    )
    path: str = Field(default="/", pattern=r"^/", description="Path prefix routed to the service.")
    backend: Literal["Service", "InferencePool"] = Field(
        default="Service",
        description="Where the route sends requests. `Service`: the server's Service (or the API-key "
        "proxy's), balanced by the gateway. `InferencePool`: an InferencePool whose endpoint picker "
        "chooses the pod by queue depth and KV-cache use; needs the inference extension's CRDs in the "
        "cluster and a gateway that implements it.",
    )
    inference_pool: InferencePoolSpec | None = Field(
        default=None, description="The InferencePool (required with `backend: InferencePool`)."
    )
    request_timeout_seconds: Annotated[int, Field(ge=0, le=99999)] = Field(
        default=600,
        description="Longest a request may take, response stream included (the rule's "
        "`timeouts.request`); 0 disables the timeout. Implementations default to as little as 15 s, "
        "which cuts off long generations.",
    )
    envoy_gateway_rate_limit: EnvoyGatewayRateLimitSpec | None = Field(
        default=None,
        description="Per-client rate limit as an Envoy Gateway BackendTrafficPolicy; null renders none. "
        "Other implementations need their own policy resource.",
    )

    @model_validator(mode="after")
    def _complete_when_enabled(self) -> RoutingSpec:
        issues: list[tuple[str, str]] = []
        if self.enabled and self.gateway is None:
            issues.append(_issue("gateway", "required when routing is enabled"))
        if self.backend == "InferencePool" and self.inference_pool is None:
            issues.append(_issue("inferencePool", "required with backend: InferencePool"))
        _raise_issues(issues)
        return self


class AuthProxySpec(SpecModel):
    """Optional API-key check in front of the server (an nginx Deployment and Service).

    Clients send `Authorization: Bearer <key>` (OpenAI-style clients) or `X-API-Key: <key>`; other
    requests get a JSON 401 and never reach the server, which sees neither header. The keys come
    from a Secret key holding one key per line; the proxy reads them when its pods start, so restart
    the proxy (`kubectl rollout restart deployment/<service>-auth-proxy`) after rotating.
    """

    enabled: bool = Field(
        default=False,
        description="Render the API-key proxy; the Ingress and the Gateway route then route to it.",
    )
    api_keys_secret: SecretKeyRef | None = Field(
        default=None,
        description="Secret key with the accepted API keys, one per line (letters, digits and `-._~+/=`, "
        "8 to 256 characters). Required when enabled.",
    )
    image: str = Field(
        default="nginxinc/nginx-unprivileged:1.27.5-alpine",
        description="nginx image. The unprivileged variant runs as a non-root user on port 8080.",
    )
    replicas: PositiveInt = Field(default=2, description="Proxy replicas (2 survive a node failure).")
    cpu_request: Quantity = Field(default="100m", description="CPU request of one proxy pod.")
    memory_request: Quantity = Field(default="64Mi", description="Memory request of one proxy pod.")
    memory_limit: Quantity = Field(default="128Mi", description="Memory limit of one proxy pod.")

    @model_validator(mode="after")
    def _secret_when_enabled(self) -> AuthProxySpec:
        if self.enabled and self.api_keys_secret is None:
            _raise_issues([_issue("apiKeysSecret", "required when auth is enabled")])
        return self


class ScrapeSpec(SpecModel):
    """How Prometheus scrapes the pods (PodMonitor, or `prometheus.io/*` pod annotations)."""

    interval: Duration = Field(
        default="10s",
        description="Scrape interval. The HPA reads the queue every 15 s; a 10 s scrape keeps its input "
        "fresh.",
    )
    pod_monitor_labels: dict[str, str] = Field(
        default_factory=dict,
        description="Extra PodMonitor labels, to match the Prometheus `podMonitorSelector` (e.g. "
        "`release: kube-prometheus-stack`).",
    )


# --------------------------------------------------------------------------------------------------
# The service
# --------------------------------------------------------------------------------------------------

_MANAGED_LABEL_PREFIXES: Final = ("app.kubernetes.io/", "tgi-autoscaler.io/")


class TGIServiceSpec(SpecModel):
    """One LLM service: model, server, pods, autoscaling, exposure and observability."""

    model: ModelSpec = Field(description="The model to serve.")
    engine: EngineSpec = Field(default_factory=EngineSpec, description="The inference server.")
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec, description="Pod resources.")
    cache: CacheSpec = Field(default_factory=CacheSpec, description="Model weights cache volume.")
    scheduling: SchedulingSpec = Field(default_factory=SchedulingSpec, description="Pod placement.")
    security: SecuritySpec = Field(default_factory=SecuritySpec, description="Pod security context.")
    rollout: RolloutSpec = Field(
        default_factory=RolloutSpec,
        description="How changes reach the pods: blue-green switch or rolling update.",
    )
    probes: ProbesSpec = Field(default_factory=ProbesSpec, description="Health probes.")
    autoscaling: AutoscalingSpec = Field(default_factory=AutoscalingSpec, description="Autoscaling.")
    service: ServicePortSpec = Field(default_factory=ServicePortSpec, description="The Kubernetes Service.")
    ingress: IngressSpec = Field(
        default_factory=IngressSpec,
        description="Optional Ingress, with ingress-nginx annotations. ingress-nginx was retired on "
        "2026-03-24 (no releases or security fixes): prefer `routing` where a Gateway runs.",
    )
    routing: RoutingSpec = Field(
        default_factory=RoutingSpec, description="Optional Gateway API route (HTTPRoute, InferencePool)."
    )
    auth: AuthProxySpec = Field(default_factory=AuthProxySpec, description="Optional API-key proxy.")
    scrape: ScrapeSpec = Field(default_factory=ScrapeSpec, description="Prometheus scraping.")
    alerts: AlertsSpec = Field(default_factory=AlertsSpec, description="Alerting rules (PrometheusRule).")
    dashboard: DashboardSpec = Field(
        default_factory=DashboardSpec, description="Grafana dashboard ConfigMap."
    )
    pod_labels: dict[str, str] = Field(
        default_factory=dict,
        description="Extra pod labels (e.g. for cost allocation). `app.kubernetes.io/*` and "
        "`tgi-autoscaler.io/*` are reserved.",
    )
    pod_annotations: dict[str, str] = Field(default_factory=dict, description="Extra pod annotations.")

    @property
    def queue_metric(self) -> str:
        """External metric name of the queue signal."""
        return self.autoscaling.queue.metric or self.engine.defaults.queue_metric

    @property
    def demand_metric(self) -> str:
        """External metric name of the demand signal."""
        return self.autoscaling.demand.metric or self.engine.defaults.demand_metric

    @property
    def scales_to_zero(self) -> bool:
        """``minReplicas: 0``: the activator is rendered and the HPA scales on held demand."""
        return self.autoscaling.min_replicas == 0

    @property
    def scaling_metric(self) -> tuple[str, float]:
        """The primary External metric the HPA scales on and its AverageValue target."""
        if self.scales_to_zero:
            metric = self.autoscaling.demand.metric or self.engine.defaults.held_demand_metric
            return metric, self.autoscaling.demand_target()
        if self.autoscaling.signal == "demand":
            return self.demand_metric, self.autoscaling.demand_target()
        return self.queue_metric, self.autoscaling.queue.target_per_replica

    @property
    def batch_metric(self) -> str | None:
        """External metric name of the optional batch-size signal (None when not configured)."""
        if self.autoscaling.batch_size is None:
            return None
        return self.autoscaling.batch_size.metric or self.engine.defaults.batch_metric

    @model_validator(mode="after")
    def _cross_section(self) -> TGIServiceSpec:
        _raise_issues([found for _, check in _CROSS_SECTION_CHECKS for found in check(self)])
        return self


# Rules across sections, each with the sections it reads: when a spec has other errors, the rules
# whose sections are valid still run (pydantic skips a model's validators once a field fails).
Issues = list[tuple[str, str]]


def _shards_match_gpus(spec: TGIServiceSpec) -> Issues:
    gpu, shards = spec.resources.gpu, spec.engine.num_shard
    if gpu > 0 and shards != gpu:
        return [
            _issue(
                "engine.numShard",
                f"must equal resources.gpu ({shards} != {gpu}): each shard needs its own GPU",
            )
        ]
    if gpu == 0 and shards > 1:
        return [_issue("engine.numShard", f"must be 1 without GPUs (resources.gpu=0, numShard={shards})")]
    return []


def _cache_reaches_every_replica(spec: TGIServiceSpec) -> Issues:
    create = spec.cache.create
    single_node = create is not None and create.access_mode in ("ReadWriteOnce", "ReadWriteOncePod")
    if create is not None and single_node and spec.autoscaling.max_replicas > 1:
        return [
            _issue(
                "cache.create.accessMode",
                f"{create.access_mode} cannot be mounted by replicas on different nodes; use "
                f"ReadWriteMany or autoscaling.maxReplicas=1 (is {spec.autoscaling.max_replicas})",
            )
        ]
    return []


def _batch_metric_known(spec: TGIServiceSpec) -> Issues:
    if spec.autoscaling.batch_size is not None and spec.batch_metric is None:
        return [
            _issue(
                "autoscaling.batchSize.metric",
                f"required for engine {spec.engine.kind.value} (no default batch-size metric)",
            )
        ]
    return []


def _api_keys_are_not_the_token(spec: TGIServiceSpec) -> Issues:
    auth = spec.auth
    if (
        auth.enabled
        and auth.api_keys_secret is not None
        and spec.model.hf_token_secret == auth.api_keys_secret
    ):
        return [_issue("auth.apiKeysSecret", "must not be the Hugging Face token secret key")]
    return []


def _pool_reaches_the_servers(spec: TGIServiceSpec) -> Issues:
    # The pool's endpoints are the server pods themselves: a proxy in front of them is bypassed.
    if spec.routing.enabled and spec.routing.backend == "InferencePool" and spec.auth.enabled:
        return [
            _issue(
                "routing.backend",
                "InferencePool sends requests straight to the server pods, past the API-key proxy: "
                "with auth enabled use backend: Service, or authenticate at the Gateway with its "
                "implementation's policy and disable auth",
            )
        ]
    return []


def _pool_wakes_no_one(spec: TGIServiceSpec) -> Issues:
    # At zero replicas the pool has no endpoint to pick, and its requests never reach the
    # activator, which is what holds them and counts them as demand to wake the service.
    routing = spec.routing
    if routing.enabled and routing.backend == "InferencePool" and spec.scales_to_zero:
        return [
            _issue(
                "routing.backend",
                "InferencePool routes straight to the server pods, so at autoscaling.minReplicas 0 a "
                "request finds no pod and never reaches the activator that would wake the service: use "
                "backend: Service (through the activator) or autoscaling.minReplicas >= 1",
            )
        ]
    return []


def _pod_labels_not_reserved(spec: TGIServiceSpec) -> Issues:
    return [
        _issue(f"podLabels.{key}", "reserved label prefix (set by the controller)")
        for key in spec.pod_labels
        if key.startswith(_MANAGED_LABEL_PREFIXES)
    ]


_CROSS_SECTION_CHECKS: Final[tuple[tuple[tuple[str, ...], Callable[[TGIServiceSpec], Issues]], ...]] = (
    (("resources", "engine"), _shards_match_gpus),
    (("cache", "autoscaling"), _cache_reaches_every_replica),
    (("autoscaling", "engine"), _batch_metric_known),
    (("auth", "model"), _api_keys_are_not_the_token),
    (("routing", "auth"), _pool_reaches_the_servers),
    (("routing", "autoscaling"), _pool_wakes_no_one),
    (("pod_labels",), _pod_labels_not_reserved),
)


def _cross_section_issues_of_valid_sections(data: dict[str, Any]) -> list[ConfigIssue]:
    """The cross-section rules over the sections of ``data`` that are valid on their own."""
    sections = valid_fields(TGIServiceSpec, data)
    partial = TGIServiceSpec.model_construct(**sections)
    return [
        ConfigIssue(path, message)
        for reads, check in _CROSS_SECTION_CHECKS
        if all(name in sections for name in reads)
        for path, message in check(partial)
    ]


# --------------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------------

_WHAT: Final = "service spec"


def parse_service_yaml(text: str, *, source: str) -> TGIServiceSpec:
    """Parse and validate a service spec; ``source`` (e.g. ``ConfigMap ns/name``) prefixes the error.

    Raises ``ConfigError`` naming every failing key path and rule found.
    """
    data = load_yaml(text, source=source, what=_WHAT)
    try:
        return validate(TGIServiceSpec, data, source=source, what=_WHAT)
    except ConfigError as exc:
        more = [found for found in _cross_section_issues_of_valid_sections(data) if found not in exc.issues]
        if not more:
            raise
        raise ConfigError(source, [*exc.issues, *more], what=_WHAT) from None
