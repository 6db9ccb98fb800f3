"""kwok: fake GPU nodes and a pod lifecycle on the local control plane, without a kubelet.

Why: without a kubelet every pod stays Pending, so nothing could check what depends on pods running
(ready-pod counts, rollouts waiting for Ready, kube-state-metrics' readiness series, pods that cannot
get a GPU). kwok (``sigs.k8s.io/kwok``, built from its Go module into the cache like the other
binaries) plays the kubelet of fake nodes: it keeps their leases and status current and moves their
pods through *stages*, kwok's own format (``kwok.x-k8s.io/v1alpha1`` ``Stage``). The real scheduler
binds pods to the nodes, so requests, taints and node selectors are checked by the real filters.

What the nodes look like (:class:`GpuNodePool`): ``nvidia.com/gpu`` capacity, the usual GPU taint
``nvidia.com/gpu:NoSchedule`` and the labels NVIDIA's GPU feature discovery and the cloud put on a
GPU node (``nvidia.com/gpu.product``, ``nvidia.com/gpu.count``, ``node.kubernetes.io/instance-type``).

The pod lifecycle (:func:`pod_stages`, after kwok's ``kustomize/stage/pod/general``):

- ``pod-running``: a pod bound to a node gets an IP and its containers run, but not Ready (the
  model is loading) after ``KwokSettings.start_delay_s``;
- ``pod-ready``: Ready after ``KwokSettings.ready_delay_s`` more (the model load time), or after the
  pod's ``pod-ready.stage.kwok.x-k8s.io/delay`` annotation (a Go duration, e.g. ``10s``);
- ``pod-delete``: a deleted pod goes away ``KwokSettings.termination_delay_s`` after its deletion,
  or at the end of its grace period if that comes first (graceful termination).

The node stages are kwok's own (``node-initialize``, ``node-heartbeat-with-lease``), read from the
downloaded module when kwok is built and kept next to the binary.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml

from tgi_autoscaler_dev.localstack.controlplane import ControlPlane
from tgi_autoscaler_dev.localstack.gobuild import (
    cache_root,
    go_install,
    module_dir,
)
from tgi_autoscaler_dev.localstack.process import ManagedProcess, free_port, http_ok, wait_for

__all__ = [
    "GPU_RESOURCE",
    "GPU_TAINT",
    "KWOK_MODULE",
    "KWOK_VERSION",
    "MANAGED_ANNOTATION",
    "POOL_LABEL",
    "READY_DELAY_ANNOTATION",
    "UNPULLABLE_IMAGE",
    "GpuNodePool",
    "Kwok",
    "KwokBinary",
    "KwokSettings",
    "create_gpu_nodes",
    "delete_gpu_nodes",
    "ensure_kwok",
    "ensure_kwok_files",
    "gpu_node",
    "kwok_config",
    "pod_stages",
    "start_kwok",
]

KWOK_MODULE = "sigs.k8s.io/kwok"
KWOK_VERSION = "v0.8.0"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_TAINT: Mapping[str, str] = {"key": GPU_RESOURCE, "effect": "NoSchedule"}
# A pod whose first container runs this image never starts: kwok reports ImagePullBackOff, as a
# kubelet does for a tag that does not exist (a broken image in a test of a model switch).
UNPULLABLE_IMAGE = "registry.invalid/tgi-autoscaler/unpullable:0"
# kwok manages only the nodes carrying this annotation (its documented convention).
MANAGED_ANNOTATION = "kwok.x-k8s.io/node"
POOL_LABEL = "tgi-autoscaler.io/node-pool"
READY_DELAY_ANNOTATION = "pod-ready.stage.kwok.x-k8s.io/delay"
# kwok's own node stages, copied from its module next to the binary at build time.
_NODE_STAGES = (
    "kustomize/stage/node/fast/node-initialize.yaml",
    "kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
)
# Pod IPs kwok hands out; nothing ever connects to them (the simulated servers listen on loopback).
_POD_CIDR = "10.244.0.0/16"


@dataclass(frozen=True)
class KwokBinary:
    binary: Path
    node_stages: tuple[Path, ...]


def ensure_kwok(version: str = KWOK_VERSION) -> KwokBinary:
    """kwok ``version`` and its node stages, built and copied into ``<cache>/kwok-<version>`` if missing."""
    root = cache_root() / f"kwok-{version}"
    stages_dir = root / "stages"
    stages = tuple(stages_dir / Path(rel).name for rel in _NODE_STAGES)
    binary = root / "bin" / "kwok"
    if not binary.exists():
        # kwok's go.mod has no replace directives, so a plain ``go install`` builds it from the proxy
        # with exactly the dependency versions kwok pins.
        go_install(f"{KWOK_MODULE}/cmd/kwok", version, bin_dir=root / "bin", label=f"kwok {version}")
    if not all(p.exists() for p in stages):
        source = module_dir(KWOK_MODULE, version)
        stages_dir.mkdir(parents=True, exist_ok=True)
        for rel, target in zip(_NODE_STAGES, stages, strict=True):
            partial = target.with_suffix(".partial")
            shutil.copyfile(source / rel, partial)
            partial.chmod(0o644)  # the module cache is read-only
            partial.replace(target)
    return KwokBinary(binary, stages)


def ensure_kwok_files() -> list[Path]:
    """:func:`ensure_kwok`'s files, for ``localstack build`` to list."""
    built = ensure_kwok()
    return [built.binary, *built.node_stages]


@dataclass(frozen=True)
class KwokSettings:
    """The simulated kubelet's timing, in seconds (see the module docstring)."""

    start_delay_s: float = 0.0
    ready_delay_s: float = 5.0
    termination_delay_s: float = 1.0

    def __post_init__(self) -> None:
        for name in ("start_delay_s", "ready_delay_s", "termination_delay_s"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0 <= value < 86_400:
                raise ValueError(f"KwokSettings.{name}: must be seconds in [0, 86400), got {value!r}")


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


_RUNNING_TEMPLATE = """\
{{ $now := Now }}
conditions:
- lastProbeTime: null
  lastTransitionTime: {{ $now | Quote }}
  status: "True"
  type: Initialized
- lastProbeTime: null
  lastTransitionTime: {{ $now | Quote }}
  message: 'containers with unready status: [{{ range .spec.containers }} {{ .name }} {{ end }}]'
  reason: ContainersNotReady
  status: "False"
  type: Ready
- lastProbeTime: null
  lastTransitionTime: {{ $now | Quote }}
  message: 'containers with unready status: [{{ range .spec.containers }} {{ .name }} {{ end }}]'
  reason: ContainersNotReady
  status: "False"
  type: ContainersReady
containerStatuses:
{{ range .spec.containers }}
- image: {{ .image | Quote }}
  name: {{ .name | Quote }}
  ready: false
  restartCount: 0
  started: true
  state:
    running:
      startedAt: {{ $now | Quote }}
{{ end }}
hostIP: {{ NodeIPWith .spec.nodeName | Quote }}
podIP: {{ PodIPWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) \
( or .metadata.name "" ) ( or .metadata.namespace "" ) | Quote }}
phase: Running
startTime: {{ $now | Quote }}
"""

_READY_TEMPLATE = """\
{{ $now := Now }}
conditions:
- lastProbeTime: null
  lastTransitionTime: {{ $now | Quote }}
  message: ''
  reason: ''
  status: "True"
  type: Ready
- lastProbeTime: null
  lastTransitionTime: {{ $now | Quote }}
  message: ''
  reason: ''
  status: "True"
  type: ContainersReady
containerStatuses:
{{ range $index, $item := .spec.containers }}
{{ $origin := index $.status.containerStatuses $index }}
- image: {{ $item.image | Quote }}
  name: {{ $item.name | Quote }}
  ready: true
  restartCount: 0
  started: true
  state:
    running:
      startedAt: {{ or $origin.state.running.startedAt $now | Quote }}
{{ end }}
"""


_IMAGE_PULL_FAILED_TEMPLATE = """\
{{ $now := Now }}
conditions:
- lastProbeTime: null
  lastTransitionTime: {{ $now | Quote }}
  status: "True"
  type: Initialized
- lastProbeTime: null
  lastTransitionTime: {{ $now | Quote }}
  message: 'containers with unready status: [{{ range .spec.containers }} {{ .name }} {{ end }}]'
  reason: ContainersNotReady
  status: "False"
  type: Ready
containerStatuses:
{{ range .spec.containers }}
- image: {{ .image | Quote }}
  name: {{ .name | Quote }}
  ready: false
  restartCount: 0
  started: false
  state:
    waiting:
      reason: ImagePullBackOff
      message: {{ printf "Back-off pulling image %q: not found" .image | Quote }}
{{ end }}
hostIP: {{ NodeIPWith .spec.nodeName | Quote }}
podIP: {{ PodIPWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) \
( or .metadata.name "" ) ( or .metadata.namespace "" ) | Quote }}
phase: Pending
startTime: {{ $now | Quote }}
"""


def _stage(name: str, selector: list[dict[str, Any]], spec: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "Stage",
        "metadata": {"name": name},
        "spec": {
            "resourceRef": {"apiGroup": "v1", "kind": "Pod"},
            "selector": {"matchExpressions": selector},
            **spec,
        },
    }


def pod_stages(settings: KwokSettings) -> list[dict[str, Any]]:
    """kwok Stages for the pod lifecycle: Running (loading), Ready after the load time, deleted; a
    pod of ``UNPULLABLE_IMAGE`` stays Pending in ImagePullBackOff."""
    not_deleted = {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"}
    ready = '.status.conditions.[] | select( .type == "Ready" ) | .status'
    running: dict[str, Any] = {
        "next": {
            "event": {"type": "Normal", "reason": "Started", "message": "Started container"},
            "statusTemplate": _RUNNING_TEMPLATE,
        }
    }
    if settings.start_delay_s:
        running["delay"] = {"durationMilliseconds": _ms(settings.start_delay_s)}
    image = ".spec.containers.[0].image"
    return [
        _stage(
            "pod-running",
            [
                not_deleted,
                {"key": ".status.podIP", "operator": "DoesNotExist"},
                {"key": image, "operator": "NotIn", "values": [UNPULLABLE_IMAGE]},
            ],
            running,
        ),
        _stage(
            "pod-image-pull-failed",
            [
                not_deleted,
                {"key": ".status.podIP", "operator": "DoesNotExist"},
                {"key": image, "operator": "In", "values": [UNPULLABLE_IMAGE]},
            ],
            {
                "next": {
                    "event": {
                        "type": "Warning",
                        "reason": "Failed",
                        "message": f'Failed to pull image "{UNPULLABLE_IMAGE}": not found',
                    },
                    "statusTemplate": _IMAGE_PULL_FAILED_TEMPLATE,
                }
            },
        ),
        _stage(
            "pod-ready",
            [
                not_deleted,
                {"key": ".status.phase", "operator": "In", "values": ["Running"]},
                {"key": ready, "operator": "In", "values": ["False"]},
            ],
            {
                "delay": {
                    "durationMilliseconds": _ms(settings.ready_delay_s),
                    "durationFrom": {"expressionFrom": f'.metadata.annotations["{READY_DELAY_ANNOTATION}"]'},
                },
                "next": {"statusTemplate": _READY_TEMPLATE},
            },
        ),
        _stage(
            "pod-delete",
            [
                {"key": ".metadata.deletionTimestamp", "operator": "Exists"},
                {"key": ".metadata.finalizers", "operator": "DoesNotExist"},
            ],
            {
                # kwok takes the shorter of the two: the pod's own shutdown, or its grace period.
                "delay": {
                    "durationMilliseconds": _ms(settings.termination_delay_s),
                    "jitterDurationFrom": {"expressionFrom": ".metadata.deletionTimestamp"},
                },
                "next": {"delete": True},
            },
        ),
    ]


def kwok_config(settings: KwokSettings, node_stages: Sequence[Path]) -> str:
    """The multi-document ``--config`` file: kwok's node stages, then our pod stages."""
    docs = [Path(p).read_text() for p in node_stages]
    docs += [yaml.safe_dump(stage, sort_keys=False) for stage in pod_stages(settings)]
    return "\n---\n".join(d.strip() for d in docs) + "\n"


@dataclass(frozen=True)
class GpuNodePool:
    """``count`` fake nodes with ``gpus_per_node`` GPUs each, named ``<name>-<i>``.

    ``dedicated`` adds a ``tgi-autoscaler.io/node-pool=<name>:NoSchedule`` taint, so only pods that
    tolerate it (and select the pool's label) land there: a test's capacity is exactly its own.
    """

    name: str = "gpu"
    count: int = 2
    gpus_per_node: int = 8
    product: str = "NVIDIA-A100-SXM4-80GB"
    instance_type: str = "p4d.24xlarge"
    cpu: str = "96"
    memory: str = "1152Gi"
    dedicated: bool = False
    extra_labels: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.count, int) or not 0 <= self.count <= 1000:
            raise ValueError(f"GpuNodePool.count: must be an integer in [0, 1000], got {self.count!r}")
        if not isinstance(self.gpus_per_node, int) or not 0 <= self.gpus_per_node <= 64:
            raise ValueError(
                f"GpuNodePool.gpus_per_node: must be an integer in [0, 64], got {self.gpus_per_node!r}"
            )

    @property
    def node_names(self) -> list[str]:
        return [f"{self.name}-{i}" for i in range(self.count)]

    @property
    def node_selector(self) -> dict[str, str]:
        return {POOL_LABEL: self.name}

    @property
    def taints(self) -> list[dict[str, str]]:
        taints = [dict(GPU_TAINT)]
        if self.dedicated:
            taints.append({"key": POOL_LABEL, "value": self.name, "effect": "NoSchedule"})
        return taints

    @property
    def tolerations(self) -> list[dict[str, str]]:
        """What a pod needs to run on the pool (the GPU taint, and the pool's own if dedicated)."""
        tolerations = [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]
        if self.dedicated:
            tolerations.append(
                {"key": POOL_LABEL, "operator": "Equal", "value": self.name, "effect": "NoSchedule"}
            )
        return tolerations


def gpu_node(pool: GpuNodePool, index: int) -> dict[str, Any]:
    """The Node object of the pool's ``index``-th node, status included (kwok keeps it)."""
    name = pool.node_names[index]
    resources = {
        "cpu": pool.cpu,
        "memory": pool.memory,
        "ephemeral-storage": "7Ti",
        "pods": "110",
        GPU_RESOURCE: str(pool.gpus_per_node),
    }
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {MANAGED_ANNOTATION: "fake"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "node.kubernetes.io/instance-type": pool.instance_type,
                "nvidia.com/gpu.present": "true",
                "nvidia.com/gpu.product": pool.product,
                "nvidia.com/gpu.count": str(pool.gpus_per_node),
                "type": "kwok",
                POOL_LABEL: pool.name,
                **pool.extra_labels,
            },
        },
        "spec": {"taints": pool.taints},
        "status": {"capacity": resources, "allocatable": dict(resources)},
    }


def _gpu_free_and_ready(node: Mapping[str, Any]) -> bool:
    conditions = node.get("status", {}).get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    # The API server taints every new node not-ready; node lifecycle lifts it once kwok reports Ready.
    taints = node.get("spec", {}).get("taints") or []
    return ready and not any(t.get("key") == "node.kubernetes.io/not-ready" for t in taints)


async def create_gpu_nodes(
    cp: ControlPlane, pool: GpuNodePool, *, timeout: float = 60.0
) -> list[dict[str, Any]]:
    """Create the pool's nodes and wait until each is Ready and schedulable; returns them."""
    for index in range(pool.count):
        status, body = await cp.request("POST", "/api/v1/nodes", body=gpu_node(pool, index))
        if status != 201:
            raise RuntimeError(f"creating node {pool.node_names[index]}: {status} {body}")
    ready: list[dict[str, Any]] = []

    async def all_ready() -> bool:
        selector = quote(f"{POOL_LABEL}={pool.name}", safe="")
        status, body = await cp.request("GET", f"/api/v1/nodes?labelSelector={selector}")
        if status != 200:
            return False
        nodes = [n for n in body["items"] if _gpu_free_and_ready(n)]
        ready[:] = nodes
        return len(nodes) == pool.count

    await wait_for(
        all_ready, timeout=timeout, interval=0.2, what=f"{pool.count} kwok nodes of {pool.name} Ready"
    )
    return ready


async def delete_gpu_nodes(cp: ControlPlane, pool: GpuNodePool) -> None:
    """Delete the pool's pods (at once) and nodes: no pod is left bound to a node that is gone."""
    for name in pool.node_names:
        selector = quote(f"spec.nodeName={name}", safe="")
        status, body = await cp.request("GET", f"/api/v1/pods?fieldSelector={selector}")
        for pod in body.get("items", []) if status == 200 else []:
            meta = pod["metadata"]
            await cp.request(
                "DELETE",
                f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}",
                body={"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0},
            )
        await cp.request("DELETE", f"/api/v1/nodes/{name}")


class Kwok:
    """The kwok controller on loopback, managing the annotated fake nodes of ``cp``."""

    def __init__(
        self,
        cp: ControlPlane,
        workdir: Path,
        *,
        settings: KwokSettings | None = None,
        binary: KwokBinary | None = None,
    ) -> None:
        self.cp = cp
        self.workdir = workdir
        self.settings = settings or KwokSettings()
        self._binary = binary
        self.port = free_port()
        self._proc: ManagedProcess | None = None

    @property
    def started(self) -> bool:
        return self._proc is not None

    @property
    def process(self) -> ManagedProcess:
        if self._proc is None:
            raise RuntimeError("kwok not started")
        return self._proc

    async def start(self, *, timeout: float = 60.0) -> None:
        built = self._binary
        if built is None:
            built = await asyncio.to_thread(ensure_kwok)
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "kwok.yaml"
        config.write_text(kwok_config(self.settings, built.node_stages))
        kubeconfig = self.cp.user_kubeconfig("system:kwok-controller", groups=("system:masters",))
        self._proc = ManagedProcess(
            name="kwok",
            argv=[
                str(built.binary),
                f"--kubeconfig={kubeconfig}",
                f"--config={config}",
                f"--manage-nodes-with-annotation-selector={MANAGED_ANNOTATION}=fake",
                f"--cidr={_POD_CIDR}",
                "--node-ip=127.0.0.1",
                f"--server-address=127.0.0.1:{self.port}",
            ],
            log_path=self.workdir / "kwok.log",
            # kwok reads ~/.kwok for defaults; keep it in the work directory.
            env={"HOME": str(self.workdir)},
        )
        await self._proc.start()
        await self._proc.wait_ready(
            lambda: http_ok(f"http://127.0.0.1:{self.port}/healthz", timeout_s=2), timeout=timeout
        )

    async def stop(self) -> None:
        if self._proc is not None:
            await self._proc.stop()


async def start_kwok(cp: ControlPlane, workdir: Path, settings: KwokSettings | None = None) -> Kwok:
    """Start kwok against ``cp`` (building it first if the cache lacks it); the caller stops it."""
    kwok = Kwok(cp, workdir, settings=settings)
    await kwok.start()
    return kwok
