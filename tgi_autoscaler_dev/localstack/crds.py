"""The CustomResourceDefinitions the controller's objects are validated against.

prometheus-operator's are generated from its Go API types; Gateway API's, its Inference
Extension's and Envoy Gateway's ship as YAML inside their Go modules and are copied from there.

The controller's PrometheusRule and PodMonitor objects must be validated against the *real* schema
(a hand-written CRD that accepts anything would let a broken field name through). The CRDs are not
vendored: they are generated, once per pinned version, with controller-gen
(``sigs.k8s.io/controller-tools``) from the API types in
``github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring`` (the same inputs
prometheus-operator's own release uses), both fetched through the Go module proxy and cached next
to the control plane's binaries. Nothing generated lives in the repository.

Gateway API (standard channel), the Inference Extension and Envoy Gateway publish their CRDs as
files of their Go modules (``config/crd/...``, ``charts/...``), so ``go mod download`` of the pinned
version fetches them through the module proxy; they are copied into the cache, one directory per
set of versions.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tgi_autoscaler_dev.localstack.gobuild import BuildError, cache_root, go_install, module_dir

__all__ = [
    "CONTROLLER_TOOLS_VERSION",
    "ENVOY_GATEWAY_VERSION",
    "GATEWAY_API_VERSION",
    "INFERENCE_EXTENSION_VERSION",
    "OPERATOR_CRD_PLURALS",
    "PROMETHEUS_OPERATOR_VERSION",
    "ROUTING_CRDS",
    "RoutingCrd",
    "crd_names",
    "ensure_controller_gen",
    "ensure_prometheus_operator_crds",
    "ensure_routing_crds",
    "routing_crd_names",
]

CONTROLLER_TOOLS_VERSION = "v0.20.1"
PROMETHEUS_OPERATOR_VERSION = "v0.87.0"
_MONITORING_MODULE = "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring"
_GROUP = "monitoring.coreos.com"
# What the controller applies; the other CRDs of the group (Prometheus, Alertmanager...) are large
# and not needed to validate our objects.
OPERATOR_CRD_PLURALS: tuple[str, ...] = ("podmonitors", "prometheusrules")

GATEWAY_API_VERSION = "v1.6.3"
INFERENCE_EXTENSION_VERSION = "v1.6.0"
ENVOY_GATEWAY_VERSION = "v1.9.1"


@dataclass(frozen=True)
class RoutingCrd:
    """One CRD file inside a Go module: ``module@version``/``path``, for the object ``name``."""

    module: str
    version: str
    path: str

    @property
    def name(self) -> str:
        """``httproutes.gateway.networking.k8s.io``, from the file name ``<group>_<plural>.yaml``."""
        group, plural = Path(self.path).stem.split("_", 1)
        return f"{plural}.{group}"


_GATEWAY_API = "sigs.k8s.io/gateway-api"
_INFERENCE_EXTENSION = "sigs.k8s.io/gateway-api-inference-extension"
_ENVOY_GATEWAY = "github.com/envoyproxy/gateway"
# What the controller renders (HTTPRoute, InferencePool, BackendTrafficPolicy) and what a test
# needs around them (GatewayClass and Gateway to attach to, ReferenceGrant for cross-namespace refs).
ROUTING_CRDS: tuple[RoutingCrd, ...] = (
    *(
        RoutingCrd(
            _GATEWAY_API, GATEWAY_API_VERSION, f"config/crd/standard/gateway.networking.k8s.io_{plural}.yaml"
        )
        for plural in ("gatewayclasses", "gateways", "httproutes", "referencegrants")
    ),
    RoutingCrd(
        _INFERENCE_EXTENSION,
        INFERENCE_EXTENSION_VERSION,
        "config/crd/bases/inference.networking.k8s.io_inferencepools.yaml",
    ),
    RoutingCrd(
        _ENVOY_GATEWAY,
        ENVOY_GATEWAY_VERSION,
        "charts/gateway-helm/charts/crds/crds/generated/gateway.envoyproxy.io_backendtrafficpolicies.yaml",
    ),
)


def crd_names(plurals: Sequence[str] = OPERATOR_CRD_PLURALS) -> list[str]:
    """``podmonitors.monitoring.coreos.com``: the CRD object names, e.g. for ``kubectl wait``."""
    return [f"{plural}.{_GROUP}" for plural in plurals]


def ensure_controller_gen(version: str = CONTROLLER_TOOLS_VERSION) -> Path:
    """controller-gen at ``version``, built with ``go install`` into the cache on first use."""
    return go_install(
        "sigs.k8s.io/controller-tools/cmd/controller-gen",
        version,
        bin_dir=cache_root() / f"controller-tools-{version}" / "bin",
        label=f"controller-gen {version}",
    )


def _run(argv: Sequence[str], *, cwd: Path, what: str) -> None:
    env = {**os.environ, "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"}
    result = subprocess.run(list(argv), cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-40:])
        raise BuildError(f"{what} failed (exit {result.returncode}):\n{tail}")


def ensure_prometheus_operator_crds(
    *,
    version: str = PROMETHEUS_OPERATOR_VERSION,
    plurals: Sequence[str] = OPERATOR_CRD_PLURALS,
    controller_tools_version: str = CONTROLLER_TOOLS_VERSION,
) -> list[Path]:
    """Paths of the generated CRD manifests for ``plurals``, generating them on first use.

    The cache directory is keyed by both versions; a generation that fails half-way leaves only a
    ``.partial`` directory behind, never a cache entry that looks complete.
    """
    root = cache_root() / f"prometheus-operator-crds-{version}-cg-{controller_tools_version}"
    wanted = [root / f"{_GROUP}_{plural}.yaml" for plural in plurals]
    if all(path.exists() for path in wanted):
        return wanted
    controller_gen = ensure_controller_gen(controller_tools_version)
    work = root.with_name(root.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    (work / "out").mkdir(parents=True)
    package = f"{_MONITORING_MODULE}/v1"
    (work / "go.mod").write_text(
        f"module localstack.build/crds\n\ngo 1.24\n\nrequire {_MONITORING_MODULE} {version}\n"
    )
    # A blank import makes `go mod tidy` resolve the API package's dependencies.
    (work / "tools.go").write_text(f'//go:build tools\n\npackage crds\n\nimport _ "{package}"\n')
    print(f"[build] prometheus-operator {version} CRDs: resolving modules", flush=True)
    _run(["go", "mod", "tidy"], cwd=work, what=f"go mod tidy for {_MONITORING_MODULE}@{version}")
    print(
        f"[build] prometheus-operator {version} CRDs: controller-gen {controller_tools_version}", flush=True
    )
    _run(
        [
            str(controller_gen),
            # maxDescLen=0 drops field descriptions: the schema (types, enums, patterns, required
            # fields, CEL rules) is unchanged and the CRDs shrink enough to apply client-side too.
            "crd:crdVersions=v1,maxDescLen=0",
            f"paths={package}",
            f"output:crd:dir={work / 'out'}",
        ],
        cwd=work,
        what="controller-gen crd",
    )
    root.mkdir(parents=True, exist_ok=True)
    for path in wanted:
        generated = work / "out" / path.name
        if not generated.exists():
            produced = ", ".join(sorted(p.name for p in (work / "out").iterdir()))
            raise BuildError(f"controller-gen did not produce {path.name} (produced: {produced})")
        tmp = path.with_suffix(".tmp")
        shutil.copyfile(generated, tmp)
        tmp.replace(path)
    shutil.rmtree(work, ignore_errors=True)
    return wanted


def routing_crd_names(crds: Sequence[RoutingCrd] = ROUTING_CRDS) -> list[str]:
    """The CRD object names of ``crds``, e.g. for ``kubectl wait``."""
    return [crd.name for crd in crds]


def ensure_routing_crds(crds: Sequence[RoutingCrd] = ROUTING_CRDS) -> list[Path]:
    """Paths of the Gateway API, Inference Extension and Envoy Gateway CRD files, copied on first use.

    The cache directory is keyed by the three versions; each file is written under a temporary name
    and renamed, so an interrupted copy never leaves a truncated CRD that looks complete.
    """
    versions = "-".join(sorted({f"{Path(crd.module).name}-{crd.version}" for crd in crds}))
    root = cache_root() / f"routing-crds-{versions}"
    wanted = [(crd, root / Path(crd.path).name) for crd in crds]
    missing = [(crd, path) for crd, path in wanted if not path.exists()]
    if missing:
        root.mkdir(parents=True, exist_ok=True)
        sources: dict[tuple[str, str], Path] = {}
        for crd, path in missing:
            key = (crd.module, crd.version)
            if key not in sources:
                print(f"[build] {crd.module}@{crd.version} CRDs: go mod download", flush=True)
                sources[key] = module_dir(crd.module, crd.version)
            source = sources[key] / crd.path
            if not source.exists():
                raise BuildError(f"{crd.module}@{crd.version} has no {crd.path}")
            tmp = path.with_suffix(".tmp")
            shutil.copyfile(source, tmp)
            tmp.replace(path)
    return [path for _, path in wanted]
