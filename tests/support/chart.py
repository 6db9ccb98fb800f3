"""Rendering the Helm chart and the kustomizations with the real binaries, as object lists.

``helm`` is the one built from its Go module (``localstack.helm``) and ``kubectl`` the control
plane's, both from the project cache; nothing here talks to an API server.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from tgi_autoscaler_dev.chart import CHART_DIR
from tgi_autoscaler_dev.localstack.binaries import ensure_binaries
from tgi_autoscaler_dev.localstack.helm import ensure_helm

__all__ = [
    "CHART_DIR",
    "REPO",
    "Key",
    "by_key",
    "helm",
    "helm_template",
    "key_of",
    "kustomize",
    "set_flags",
]

REPO = Path(__file__).resolve().parents[2]
RELEASE = "tgi-autoscaler"

Key = tuple[str, str, str, str]  # apiVersion, kind, namespace ("" if cluster-scoped), name


def helm(
    *args: str, check: bool = True, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the cached helm; with ``check``, fail with its stderr."""
    result = subprocess.run(
        [str(ensure_helm()), *args], capture_output=True, text=True, check=False, timeout=120, env=env
    )
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


def set_flags(values: Mapping[str, str]) -> list[str]:
    """``--set key=value`` for each entry (``--set-string`` would hide type errors from the schema)."""
    return [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]


def helm_template(
    values: Mapping[str, str] | None = None, *, namespace: str = "tgi-autoscaler", extra: Sequence[str] = ()
) -> list[dict[str, Any]]:
    result = helm(
        "template", RELEASE, str(CHART_DIR), "--namespace", namespace, *set_flags(values or {}), *extra
    )
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def kustomize(*paths: str) -> list[dict[str, Any]]:
    """``kubectl kustomize`` of each directory under the repository, concatenated."""
    kubectl = ensure_binaries().kubectl
    objects: list[dict[str, Any]] = []
    for path in paths:
        result = subprocess.run(
            [str(kubectl), "kustomize", str(REPO / path)],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if result.returncode != 0:
            raise AssertionError(f"kubectl kustomize {path} failed:\n{result.stderr}")
        objects += [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    return objects


def key_of(obj: Mapping[str, Any]) -> Key:
    meta = obj["metadata"]
    return (obj["apiVersion"], obj["kind"], meta.get("namespace", ""), meta["name"])


def by_key(objects: Iterable[Mapping[str, Any]]) -> dict[Key, dict[str, Any]]:
    """Objects by identity; a duplicate identity is an error unless the two are identical."""
    out: dict[Key, dict[str, Any]] = {}
    for obj in objects:
        key = key_of(obj)
        if key in out and out[key] != obj:
            raise AssertionError(f"two different objects named {key}")
        out[key] = dict(obj)
    return out
