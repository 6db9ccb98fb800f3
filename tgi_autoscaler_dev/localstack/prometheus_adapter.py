"""prometheus-adapter, the reference external metrics server, built from its Go module and run locally.

The comparison benchmark (``bench/compare_prometheus_adapter.py``) and its equivalence test run
kubernetes-sigs/prometheus-adapter next to this project's adapter, on the same Prometheus, behind
the same local control plane. This module builds it once from the published Go module (cached
under ``<cache>/prometheus-adapter-<version>/bin``), writes an ``externalRules`` configuration
that computes the same value as our default ``tgi_queue_size`` definition, and starts it as a
supervised process with delegated authentication and authorization against the local
kube-apiserver.

It is not part of ``python -m tgi_autoscaler_dev localstack build``: only the benchmark needs it,
and it builds it on demand.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

from tgi_autoscaler_dev.localstack.gobuild import (
    BuildError,
    GoModule,
    build_in_wrapper,
    cache_root,
    go_install,
)
from tgi_autoscaler_dev.localstack.pki import KeyPair
from tgi_autoscaler_dev.localstack.process import ManagedProcess

__all__ = [
    "PROMETHEUS_ADAPTER_VERSION",
    "PrometheusAdapterSettings",
    "ensure_prometheus_adapter",
    "external_rules_config",
    "prometheus_adapter_binary",
    "prometheus_adapter_process",
]

PROMETHEUS_ADAPTER_VERSION: Final = "v0.12.0"
_MODULE: Final = "sigs.k8s.io/prometheus-adapter"
_PACKAGE: Final = f"{_MODULE}/cmd/adapter"


def prometheus_adapter_binary(version: str = PROMETHEUS_ADAPTER_VERSION) -> Path:
    """Where the cached binary lives (whether or not it has been built yet)."""
    return cache_root() / f"prometheus-adapter-{version}" / "bin" / "adapter"


def ensure_prometheus_adapter(version: str = PROMETHEUS_ADAPTER_VERSION) -> Path:
    """The prometheus-adapter binary, built unless it is already cached.

    ``go install pkg@version`` is tried first. It also asks the module proxy for the module's version
    list (to print deprecation notices); where that listing is refused, the same pinned version is
    built through a wrapper module instead, which needs only the pinned module and its requirements.
    """
    binary = prometheus_adapter_binary(version)
    if binary.exists():
        return binary
    label = f"prometheus-adapter {version}"
    try:
        return go_install(_PACKAGE, version, bin_dir=binary.parent, label=label)
    except BuildError as exc:
        if "@v/list" not in str(exc):
            raise
    build_in_wrapper(
        GoModule(module=_MODULE, version=version, packages=[_PACKAGE]),
        workdir=binary.parent.parent / "src",
        bin_dir=binary.parent,
        label=label,
    )
    if not binary.exists():
        raise BuildError(f"{label}: build finished but {binary} is missing")
    return binary


def external_rules_config(
    *, metric: str = "tgi_queue_size", series: str = "tgi_queue_size", namespace_label: str = "namespace"
) -> dict[str, Any]:
    """An ``externalRules`` document serving ``sum(<series>{<selector>, namespace="<ns>"})``.

    ``<<.LabelMatchers>>`` expands to the request's label selector plus, because the rule is
    namespaced and maps ``namespace_label`` to the namespace resource, ``namespace="<ns>"``. That is
    the same PromQL our default definition ``sum(tgi_queue_size{$matchers})`` produces. Selector
    keys are not sanitized by prometheus-adapter, so callers must select on Prometheus label names
    (``app_kubernetes_io_instance``), not Kubernetes label keys.
    """
    return {
        "externalRules": [
            {
                "seriesQuery": f'{series}{{{namespace_label}!=""}}',
                # namespaced (the default, stated): the request's namespace is always a matcher.
                "resources": {"overrides": {namespace_label: {"resource": "namespace"}}, "namespaced": True},
                "name": {"matches": f"^{series}$", "as": metric},
                "metricsQuery": "sum(<<.Series>>{<<.LabelMatchers>>})",
            }
        ]
    }


@dataclass(frozen=True)
class PrometheusAdapterSettings:
    """How to start one prometheus-adapter against the local stack."""

    binary: Path
    workdir: Path
    port: int
    prometheus_url: str
    kubeconfig: Path
    serving: KeyPair
    relist_interval_s: float = 30.0
    extra_args: tuple[str, ...] = ()


def prometheus_adapter_process(settings: PrometheusAdapterSettings) -> ManagedProcess:
    """A supervised prometheus-adapter serving ``externalRules`` for ``tgi_queue_size``.

    Authentication and authorization are delegated to the kube-apiserver behind ``kubeconfig``
    exactly as in a cluster: the front-proxy CA and header names come from the
    ``extension-apiserver-authentication`` ConfigMap, and each identity/attribute pair is checked
    with a SubjectAccessReview cached for 10 s (the generic API server's defaults).
    """
    settings.workdir.mkdir(parents=True, exist_ok=True)
    config = settings.workdir / "config.yaml"
    config.write_text(yaml.safe_dump(external_rules_config(), sort_keys=False))
    return ManagedProcess(
        name="prometheus-adapter",
        argv=[
            str(settings.binary),
            "--bind-address=127.0.0.1",
            f"--secure-port={settings.port}",
            f"--tls-cert-file={settings.serving.cert}",
            f"--tls-private-key-file={settings.serving.key}",
            f"--prometheus-url={settings.prometheus_url}/",
            f"--config={config}",
            f"--metrics-relist-interval={settings.relist_interval_s:g}s",
            f"--lister-kubeconfig={settings.kubeconfig}",
            f"--authentication-kubeconfig={settings.kubeconfig}",
            f"--authorization-kubeconfig={settings.kubeconfig}",
            "--v=1",
            *settings.extra_args,
        ],
        log_path=settings.workdir / "prometheus-adapter.log",
    )
