"""Helm, built from its Go module, for the chart's tests (lint, template, install on the local stack).

Pinned here, in one place: ``HELM_VERSION``. Helm 4 rather than 3 because Helm 3's security fixes
ended in November 2026, and because Helm 4 installs with server-side apply, which is how this
project's controller and tests apply everything (field ownership instead of a client-side
three-way merge). Charts of ``apiVersion: v2``, like ours, install with both majors.

The binary is compiled once into ``<cache>/helm-<version>/bin/helm`` (the cache scheme of
``binaries``), inside the module's own directory so Helm's go.sum pins every dependency, with the
version variable set as Helm's release Makefile sets it (a plain build reports only ``v4.3``).
"""

from __future__ import annotations

from pathlib import Path

from tgi_autoscaler_dev.localstack.gobuild import build_in_module, cache_root

__all__ = ["HELM_MODULE", "HELM_VERSION", "ensure_helm"]

HELM_MODULE = "helm.sh/helm/v4"
HELM_VERSION = "v4.3.1"


def ensure_helm(version: str = HELM_VERSION) -> Path:
    """The helm binary of ``version``, built into the cache if missing."""
    return build_in_module(
        HELM_MODULE,
        version,
        "./cmd/helm",
        target=cache_root() / f"helm-{version}" / "bin" / "helm",
        ldflags=f"-s -w -X {HELM_MODULE}/internal/version.version={version}",
        label=f"helm {version}",
    )
