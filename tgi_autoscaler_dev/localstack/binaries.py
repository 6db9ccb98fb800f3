"""The control plane's binaries: kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, etcd.

Pinned here, in one place: Kubernetes ``KUBERNETES_VERSION`` and etcd ``ETCD_VERSION``. They are
built from the published Go modules (see ``gobuild``) and cached under
``<cache>/k8s-<version>/bin`` and ``<cache>/etcd-<version>/bin``. Users who already have the binaries
(for example envtest's assets) point ``TGI_AUTOSCALER_ASSETS`` at a directory holding them and skip
the build.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from tgi_autoscaler_dev.localstack.gobuild import (
    BuildError,
    GoModule,
    build_in_wrapper,
    cache_root,
    module_gomod,
)

__all__ = [
    "ETCD_VERSION",
    "KUBERNETES_VERSION",
    "Binaries",
    "ensure_binaries",
    "kubernetes_replaces",
]

KUBERNETES_VERSION = "v1.37.2"
ETCD_VERSION = "v3.6.16"
ASSETS_ENV = "TGI_AUTOSCALER_ASSETS"

_K8S_BINARIES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")

_ETCD_MAIN = """package main

import (
\t"os"

\t"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
"""


@dataclass(frozen=True)
class Binaries:
    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kubectl: Path
    etcd: Path

    def missing(self) -> list[Path]:
        return [
            p
            for p in (
                self.kube_apiserver,
                self.kube_controller_manager,
                self.kube_scheduler,
                self.kubectl,
                self.etcd,
            )
            if not p.exists()
        ]


def kubernetes_replaces(gomod_text: str, version: str) -> dict[str, str]:
    """Map every staging module of k8s.io/kubernetes to its published ``v0.X.Y`` tag.

    The module's own go.mod replaces each staging module with ``./staging/src/...``, which a proxy
    build cannot follow; the same code is published as ``k8s.io/<name> v0.<minor>.<patch>``.
    """
    match = re.fullmatch(r"v1\.(\d+)\.(\d+)", version)
    if match is None:
        raise ValueError(f"Kubernetes version must look like v1.37.2, got {version!r}")
    staging_version = f"v0.{match.group(1)}.{match.group(2)}"
    staging = re.findall(r"^\s*(k8s\.io/[\w.\-/]+)\s+=>\s+\./staging/", gomod_text, flags=re.MULTILINE)
    if not staging:
        raise BuildError("no staging replace directives found in k8s.io/kubernetes go.mod")
    return {module: staging_version for module in staging}


def _kubernetes_ldflags(version: str) -> str:
    major, minor = version.lstrip("v").split(".")[:2]
    pkg = "k8s.io/component-base/version"
    flags = {
        "gitVersion": version,
        "gitMajor": major,
        "gitMinor": minor,
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
    }
    return "-s -w " + " ".join(f"-X {pkg}.{k}={v}" for k, v in flags.items())


def _from_assets(assets: Path) -> Binaries:
    binaries = Binaries(
        kube_apiserver=assets / "kube-apiserver",
        kube_controller_manager=assets / "kube-controller-manager",
        kube_scheduler=assets / "kube-scheduler",
        kubectl=assets / "kubectl",
        etcd=assets / "etcd",
    )
    missing = binaries.missing()
    if missing:
        raise BuildError(f"{ASSETS_ENV}={assets} lacks: {', '.join(p.name for p in missing)}")
    return binaries


def ensure_binaries(
    *, kubernetes_version: str = KUBERNETES_VERSION, etcd_version: str = ETCD_VERSION
) -> Binaries:
    """Return the control plane's binaries, building whatever the cache lacks."""
    assets = os.environ.get(ASSETS_ENV)
    if assets:
        return _from_assets(Path(assets))
    root = cache_root()
    k8s_bin = root / f"k8s-{kubernetes_version}" / "bin"
    etcd_bin = root / f"etcd-{etcd_version}" / "bin"
    binaries = Binaries(
        kube_apiserver=k8s_bin / "kube-apiserver",
        kube_controller_manager=k8s_bin / "kube-controller-manager",
        kube_scheduler=k8s_bin / "kube-scheduler",
        kubectl=k8s_bin / "kubectl",
        etcd=etcd_bin / "etcd",
    )
    if any(not (k8s_bin / name).exists() for name in _K8S_BINARIES):
        replaces = kubernetes_replaces(
            module_gomod("k8s.io/kubernetes", kubernetes_version), kubernetes_version
        )
        build_in_wrapper(
            GoModule(
                module="k8s.io/kubernetes",
                version=kubernetes_version,
                packages=[f"k8s.io/kubernetes/cmd/{name}" for name in _K8S_BINARIES],
                replaces=replaces,
                ldflags=_kubernetes_ldflags(kubernetes_version),
            ),
            workdir=root / f"k8s-{kubernetes_version}" / "src",
            bin_dir=k8s_bin,
            label=f"Kubernetes {kubernetes_version}",
        )
    if not binaries.etcd.exists():
        build_in_wrapper(
            GoModule(
                module="go.etcd.io/etcd/server/v3",
                version=etcd_version,
                packages=["."],
                main_go=_ETCD_MAIN,
            ),
            workdir=root / f"etcd-{etcd_version}" / "src",
            bin_dir=etcd_bin,
            label=f"etcd {etcd_version}",
        )
        built = etcd_bin / "wrapper"
        if built.exists():
            built.replace(binaries.etcd)
    missing = binaries.missing()
    if missing:
        raise BuildError(f"build finished but these binaries are missing: {', '.join(map(str, missing))}")
    return binaries
