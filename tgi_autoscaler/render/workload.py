"""The server workload: Deployment, Service and (optionally) the model cache PersistentVolumeClaim.

The Deployment never sets ``spec.replicas``: the HorizontalPodAutoscaler owns the replica count, and a
value here would reset it on every apply. Probes, volumes and env follow from the spec so that the
pod always matches what the ConfigMap says.
"""

from __future__ import annotations

from typing import Any

from tgi_autoscaler.config.constants import (
    ANNOTATION_PROMETHEUS_PATH,
    ANNOTATION_PROMETHEUS_PORT,
    ANNOTATION_PROMETHEUS_SCRAPE,
    COMPONENT_SERVER,
)
from tgi_autoscaler.config.service import EnvVar, ProbeSpec, SecretKeyRef, TGIServiceSpec
from tgi_autoscaler.engines import TOKEN_ENV, Command, Launch
from tgi_autoscaler.render.meta import (
    HTTP_PORT_NAME,
    Manifest,
    cache_claim_name,
    labels,
    object_meta,
    selector_labels,
)
from tgi_autoscaler.render.source import RenderOptions, ServiceSource

__all__ = [
    "container_args",
    "container_env",
    "render_cache_claim",
    "render_deployment",
    "render_service",
    "scrape_annotations",
]

CONTAINER_NAME = "server"
_CACHE_VOLUME = "model-cache"
_SHM_VOLUME = "dshm"
# Room for pulling a multi-GB image on a fresh node, on top of the startup probe's budget, before the
# Deployment reports that its rollout is stuck.
_IMAGE_PULL_ALLOWANCE_SECONDS = 600


def _secret_env(name: str, ref: SecretKeyRef) -> Manifest:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}


def _literal(name: str, value: object) -> Manifest:
    return {"name": name, "value": str(value)}


def _user_env(env: EnvVar) -> Manifest:
    if env.secret_key_ref is not None:
        return _secret_env(env.name, env.secret_key_ref)
    return _literal(env.name, env.value)


def _launch(spec: TGIServiceSpec) -> Command:
    engine, model = spec.engine, spec.model
    return engine.defaults.launch(
        Launch(
            model_id=model.id,
            revision=model.revision,
            port=engine.effective_port,
            cache_path=spec.cache.mount_path,
            num_shard=engine.num_shard,
            quantize=engine.quantize,
            dtype=engine.dtype.value if engine.dtype is not None else None,
            trust_remote_code=model.trust_remote_code,
            max_concurrent_requests=engine.max_concurrent_requests,
            max_input_tokens=engine.effective_max_input_tokens,
            max_total_tokens=engine.max_total_tokens,
            max_batch_prefill_tokens=engine.max_batch_prefill_tokens,
            max_batch_total_tokens=engine.max_batch_total_tokens,
            extra_args=tuple(engine.extra_args),
        )
    )


def container_env(spec: TGIServiceSpec) -> list[Manifest]:
    """The server container's environment: engine settings, the HF token reference, then user env."""
    env = [_literal(name, value) for name, value in _launch(spec).env]
    if spec.model.hf_token_secret is not None:
        env.append(_secret_env(TOKEN_ENV, spec.model.hf_token_secret))
    env.extend(_user_env(item) for item in spec.engine.env)
    return env


def container_args(spec: TGIServiceSpec) -> tuple[list[str] | None, list[str]]:
    """``(command, args)`` of the server container (TGI: the image's entrypoint, only extra args)."""
    launch = _launch(spec)
    return (None if launch.command is None else list(launch.command)), list(launch.args)


def scrape_annotations(spec: TGIServiceSpec) -> dict[str, str]:
    """Pod annotations read by the conventional annotation-driven `kubernetes-pods` scrape job."""
    return {
        ANNOTATION_PROMETHEUS_SCRAPE: "true",
        ANNOTATION_PROMETHEUS_PORT: str(spec.engine.effective_port),
        ANNOTATION_PROMETHEUS_PATH: spec.engine.defaults.metrics_path,
    }


def _probe(spec: TGIServiceSpec, timing: ProbeSpec) -> Manifest:
    return {
        "httpGet": {"path": spec.engine.defaults.health_path, "port": HTTP_PORT_NAME},
        "periodSeconds": timing.period_seconds,
        "timeoutSeconds": timing.timeout_seconds,
        "failureThreshold": timing.failure_threshold,
    }


def _resources(spec: TGIServiceSpec) -> Manifest:
    res = spec.resources
    requests: dict[str, str] = {"cpu": res.cpu_request, "memory": res.memory_request}
    limits: dict[str, str] = {}
    if res.cpu_limit is not None:
        limits["cpu"] = res.cpu_limit
    if res.memory_limit is not None:
        limits["memory"] = res.memory_limit
    if res.gpu > 0:
        # Extended resources cannot be overcommitted: Kubernetes requires request == limit.
        requests[res.gpu_resource_name] = str(res.gpu)
        limits[res.gpu_resource_name] = str(res.gpu)
    result: Manifest = {"requests": requests}
    if limits:
        result["limits"] = limits
    return result


def _container_security(spec: TGIServiceSpec) -> Manifest:
    capabilities: Manifest = {"drop": ["ALL"]}
    if spec.engine.effective_port < 1024:
        capabilities["add"] = ["NET_BIND_SERVICE"]
    return {"allowPrivilegeEscalation": False, "capabilities": capabilities}


def _pod_security(spec: TGIServiceSpec) -> Manifest:
    sec = spec.security
    result: Manifest = {"seccompProfile": {"type": "RuntimeDefault"}}
    if sec.run_as_user is not None:
        result["runAsUser"] = sec.run_as_user
        result["runAsNonRoot"] = sec.run_as_user != 0
    if sec.run_as_group is not None:
        result["runAsGroup"] = sec.run_as_group
    if sec.fs_group is not None:
        result["fsGroup"] = sec.fs_group
    return result


def _volumes(name: str, spec: TGIServiceSpec) -> list[Manifest]:
    cache = spec.cache
    if cache.existing_claim is not None:
        cache_source: Manifest = {"persistentVolumeClaim": {"claimName": cache.existing_claim}}
    elif cache.create is not None:
        cache_source = {"persistentVolumeClaim": {"claimName": cache_claim_name(name)}}
    else:
        cache_source = {"emptyDir": {"sizeLimit": cache.empty_dir_size_limit}}
    return [
        {"name": _CACHE_VOLUME, **cache_source},
        {"name": _SHM_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": spec.resources.shm_size}},
    ]


def _container(spec: TGIServiceSpec) -> Manifest:
    engine = spec.engine
    command, args = container_args(spec)
    container: Manifest = {"name": CONTAINER_NAME, "image": engine.effective_image}
    container["imagePullPolicy"] = engine.image_pull_policy
    if command is not None:
        container["command"] = command
    if args:
        container["args"] = args
    container["env"] = container_env(spec)
    container["ports"] = [{"name": HTTP_PORT_NAME, "containerPort": engine.effective_port, "protocol": "TCP"}]
    container["resources"] = _resources(spec)
    container["volumeMounts"] = [
        {"name": _CACHE_VOLUME, "mountPath": spec.cache.mount_path},
        {"name": _SHM_VOLUME, "mountPath": "/dev/shm"},  # noqa: S108 - NCCL's shared memory, not a temp file
    ]
    container["startupProbe"] = _probe(spec, spec.probes.startup)
    container["livenessProbe"] = _probe(spec, spec.probes.liveness)
    container["readinessProbe"] = _probe(spec, spec.probes.readiness)
    container["securityContext"] = _container_security(spec)
    return container


def _pod_spec(name: str, spec: TGIServiceSpec) -> Manifest:
    sched = spec.scheduling
    pod: Manifest = {
        # The server never talks to the Kubernetes API: no token in the pod.
        "automountServiceAccountToken": False,
        # Service links inject <SERVICE>_PORT-style variables; the engines read configuration from
        # the environment, so keep it to what the spec sets.
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": sched.termination_grace_period_seconds,
        "securityContext": _pod_security(spec),
    }
    if sched.service_account_name is not None:
        pod["serviceAccountName"] = sched.service_account_name
    if sched.priority_class_name is not None:
        pod["priorityClassName"] = sched.priority_class_name
    if sched.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": secret} for secret in sched.image_pull_secrets]
    if sched.node_selector:
        pod["nodeSelector"] = dict(sorted(sched.node_selector.items()))
    if sched.tolerations:
        pod["tolerations"] = [t.model_dump(by_alias=True, exclude_none=True) for t in sched.tolerations]
    if sched.affinity is not None:
        pod["affinity"] = sched.affinity
    pod["containers"] = [_container(spec)]
    pod["volumes"] = _volumes(name, spec)
    return pod


def render_deployment(source: ServiceSource, options: RenderOptions) -> Manifest:
    """The server Deployment (without ``spec.replicas``: the HPA owns it)."""
    spec = source.spec
    pod_annotations = dict(spec.pod_annotations)
    if not options.prometheus_operator:
        pod_annotations.update(scrape_annotations(spec))
    template_meta: Manifest = {"labels": labels(source.name, COMPONENT_SERVER, spec.pod_labels)}
    if pod_annotations:
        template_meta["annotations"] = dict(sorted(pod_annotations.items()))
    deployment_spec: dict[str, Any] = {
        "selector": {"matchLabels": selector_labels(source.name, COMPONENT_SERVER)},
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {
                "maxSurge": spec.rollout.max_surge,
                "maxUnavailable": spec.rollout.max_unavailable,
            },
        },
        # A cold start legitimately takes as long as the startup probe allows; reporting the
        # rollout as stuck earlier would be a false alarm.
        "progressDeadlineSeconds": spec.probes.startup_budget_seconds + _IMAGE_PULL_ALLOWANCE_SECONDS,
        "revisionHistoryLimit": 5,
        "template": {"metadata": template_meta, "spec": _pod_spec(source.name, spec)},
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": object_meta(source.name, source.namespace, source.name, COMPONENT_SERVER),
        "spec": deployment_spec,
    }


def render_service(source: ServiceSource) -> Manifest:
    """The Service in front of the server pods."""
    svc = source.spec.service
    service_spec: Manifest = {
        "type": svc.type,
        "selector": selector_labels(source.name, COMPONENT_SERVER),
        "ports": [
            {"name": HTTP_PORT_NAME, "port": svc.port, "targetPort": HTTP_PORT_NAME, "protocol": "TCP"}
        ],
    }
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_meta(
            source.name, source.namespace, source.name, COMPONENT_SERVER, annotations=svc.annotations
        ),
        "spec": service_spec,
    }


def render_cache_claim(source: ServiceSource) -> Manifest | None:
    """The model cache PersistentVolumeClaim when the spec asks for one to be created."""
    create = source.spec.cache.create
    if create is None:
        return None
    claim_spec: Manifest = {
        "accessModes": [create.access_mode],
        "resources": {"requests": {"storage": create.size}},
    }
    if create.storage_class_name is not None:
        claim_spec["storageClassName"] = create.storage_class_name
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": object_meta(
            cache_claim_name(source.name), source.namespace, source.name, COMPONENT_SERVER
        ),
        "spec": claim_spec,
    }
