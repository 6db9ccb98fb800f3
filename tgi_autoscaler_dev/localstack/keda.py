"""KEDA (operator and metrics API server) built from its Go module, with its CRDs, for the local stack.

The KEDA backend's ScaledObjects must be proven against the real thing: the CRD schema from the
module's ``config/crd/bases`` (what KEDA's release applies) for server-side dry runs, and the real
operator and metrics server for the end-to-end test and the side-by-side benchmark.

KEDA's own go.mod carries ``replace`` directives that its build needs; a module's replaces do not
apply when it is required by another module, so ``go install pkg@version`` would resolve different
(and here unlicensed or missing) versions. The binaries are therefore built through a wrapper module
that requires KEDA and takes over its replace directives, read from the go.mod the proxy serves.
Cached under ``<cache>/keda-<version>/bin`` like every other Go binary.

``KedaProcesses`` runs both against the local API server as KEDA's manifests run them in a cluster:
the operator serves its gRPC metrics service with mutual TLS (``ca.crt``, ``tls.crt``, ``tls.key`` in
one certificate directory, here issued by the control plane's cluster CA), and the metrics server
asks it for every value the HPA reads, behind ``v1beta1.external.metrics.k8s.io``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import yaml

from tgi_autoscaler_dev.localstack.aggregation import (
    LocalApiService,
    apiservice_available,
    apiservice_objects,
    issue_serving_cert,
)
from tgi_autoscaler_dev.localstack.controlplane import ControlPlane
from tgi_autoscaler_dev.localstack.gobuild import (
    BuildError,
    GoModule,
    build_in_wrapper,
    cache_root,
    go_command,
    module_gomod,
)
from tgi_autoscaler_dev.localstack.pki import CertAuthority, KeyPair
from tgi_autoscaler_dev.localstack.process import ManagedProcess, free_port, http_ok, wait_for

__all__ = [
    "KEDA_APISERVICE_SERVICE",
    "KEDA_CRD_FILES",
    "KEDA_MODULE",
    "KEDA_NAMESPACE",
    "KEDA_VERSION",
    "KedaProcesses",
    "ensure_keda",
    "install_keda_crds",
    "keda_binaries",
    "keda_crds",
    "keda_replaces",
    "require_keda",
    "running_keda",
]

KEDA_VERSION: Final = "v2.21.0"
KEDA_MODULE: Final = "github.com/kedacore/keda/v2"
_PACKAGES: Final = (f"{KEDA_MODULE}/cmd/operator", f"{KEDA_MODULE}/cmd/adapter")
# The CRDs a ScaledObject needs to be accepted and reconciled. The operator watches all six: without
# the CloudEventSource ones its manager gives up after the 2-minute cache-sync timeout and exits.
KEDA_CRD_FILES: Final = (
    "keda.sh_scaledobjects.yaml",
    "keda.sh_scaledjobs.yaml",
    "keda.sh_triggerauthentications.yaml",
    "keda.sh_clustertriggerauthentications.yaml",
    "eventing.keda.sh_cloudeventsources.yaml",
    "eventing.keda.sh_clustercloudeventsources.yaml",
)
KEDA_NAMESPACE: Final = "keda"
KEDA_APISERVICE_SERVICE: Final = "keda-metrics-apiserver"
# ``old [v] => new v``: one replace line of a go.mod (inside or outside a block).
_REPLACE_LINE = re.compile(r"^\s*(?:replace\s+)?(\S+)(?:\s+v\S+)?\s+=>\s+(\S+)\s+(v\S+)\s*$")


def keda_replaces(gomod: str) -> dict[str, str]:
    """The replace directives of KEDA's go.mod that point a module at another version of itself.

    ``GoModule.replaces`` writes ``mod => mod version``; a replace to a different module path or to a
    local directory cannot be taken over that way and is refused with a BuildError naming it.
    """
    replaces: dict[str, str] = {}
    in_block = False
    for raw in gomod.splitlines():
        line = raw.split("//", 1)[0].rstrip()
        if line.strip() == "replace (":
            in_block = True
            continue
        if in_block and line.strip() == ")":
            in_block = False
            continue
        if not (in_block or line.lstrip().startswith("replace ")):
            continue
        match = _REPLACE_LINE.match(line)
        if match is None:
            if line.strip():
                raise BuildError(f"KEDA go.mod: cannot take over replace directive {line.strip()!r}")
            continue
        old, new, version = match.groups()
        if old != new:
            raise BuildError(f"KEDA go.mod: replace {old} => {new} names another module; not supported")
        replaces[old] = version
    return replaces


def _module_dir(version: str) -> Path:
    out = subprocess.run(
        [go_command(), "mod", "download", "-json", f"{KEDA_MODULE}@{version}"],
        capture_output=True,
        text=True,
        check=False,
    )
    info = json.loads(out.stdout) if out.stdout.strip().startswith("{") else {}
    if out.returncode != 0 or not info.get("Dir"):
        raise BuildError(f"go mod download {KEDA_MODULE}@{version} failed:\n{out.stdout}{out.stderr}")
    return Path(info["Dir"])


def keda_crds(version: str = KEDA_VERSION) -> list[Path]:
    """KEDA's CRD manifests from the module's ``config/crd/bases`` (downloaded once by the go command)."""
    bases = _module_dir(version) / "config" / "crd" / "bases"
    paths = [bases / name for name in KEDA_CRD_FILES]
    missing = [str(path) for path in paths if not path.exists()]
    if missing:
        raise BuildError(f"KEDA {version}: CRD manifests missing from the module: {', '.join(missing)}")
    return paths


def keda_binaries(version: str = KEDA_VERSION) -> tuple[Path, Path]:
    """Where the cached operator and metrics API server live (built or not)."""
    bin_dir = cache_root() / f"keda-{version}" / "bin"
    return bin_dir / "operator", bin_dir / "adapter"


def ensure_keda(version: str = KEDA_VERSION) -> list[Path]:
    """The KEDA operator and metrics API server binaries, built into the cache unless present."""
    binaries = keda_binaries(version)
    if all(path.exists() for path in binaries):
        return list(binaries)
    bin_dir = binaries[0].parent
    build_in_wrapper(
        GoModule(
            module=KEDA_MODULE,
            version=version,
            packages=list(_PACKAGES),
            replaces=keda_replaces(module_gomod(KEDA_MODULE, version)),
        ),
        workdir=bin_dir.parent / "src",
        bin_dir=bin_dir,
        label=f"KEDA {version} (operator, metrics API server)",
    )
    missing = [str(path) for path in binaries if not path.exists()]
    if missing:
        raise BuildError(f"KEDA {version}: build finished but {', '.join(missing)} missing")
    return list(binaries)


def require_keda(version: str = KEDA_VERSION) -> list[Path]:
    """The cached KEDA binaries; ``BuildError`` naming the opt-in build when they are missing."""
    binaries = keda_binaries(version)
    missing = [str(path) for path in binaries if not path.exists()]
    if missing:
        raise BuildError(
            f"KEDA {version} is not built ({', '.join(missing)} missing): it is an opt-in build, "
            "run `python -m tgi_autoscaler_dev localstack build --with-keda` (or `make test-keda`)"
        )
    return list(binaries)


@dataclass(frozen=True)
class KedaProcesses:
    """KEDA's operator and metrics API server for one control plane, as supervised processes."""

    operator: ManagedProcess
    metrics_server: ManagedProcess
    metrics_server_port: int
    operator_metrics_port: int

    @classmethod
    def create(
        cls,
        *,
        workdir: Path,
        kubeconfig: Path,
        ca: CertAuthority,
        serving: KeyPair,
        version: str = KEDA_VERSION,
        extra_env: dict[str, str] | None = None,
        operator_args: Sequence[str] = (),
    ) -> KedaProcesses:
        """``serving``: the metrics server's certificate for ``keda-metrics-apiserver.keda.svc``;
        ``operator_args``: extra operator flags (``--kube-api-qps=...``)."""
        operator_bin, adapter_bin = keda_binaries(version)
        certs = workdir / "certs"
        certs.mkdir(parents=True, exist_ok=True)
        # One pair for both ends of KEDA's mutual-TLS gRPC link, as KEDA's cert rotation issues it.
        grpc = ca.issue(
            "keda-grpc",
            common_name="keda-operator.keda.svc",
            dns_names=["keda-operator.keda.svc", "localhost"],
            ip_addresses=["127.0.0.1"],
            client=True,
            server=True,
        )
        shutil.copyfile(ca.cert_path, certs / "ca.crt")
        shutil.copyfile(grpc.cert, certs / "tls.crt")
        shutil.copyfile(grpc.key, certs / "tls.key")
        grpc_port, adapter_port, operator_metrics, probes, adapter_metrics = (free_port() for _ in range(5))
        env = {
            "KUBECONFIG": str(kubeconfig),
            "WATCH_NAMESPACE": "",
            "POD_NAMESPACE": KEDA_NAMESPACE,
            "KEDA_CLUSTER_OBJECT_NAMESPACE": KEDA_NAMESPACE,
            "KEDA_HTTP_DEFAULT_TIMEOUT": "3000",
            **(extra_env or {}),
        }
        operator = ManagedProcess(
            name="keda-operator",
            argv=[
                str(operator_bin),
                "--leader-elect=false",
                f"--metrics-bind-address=127.0.0.1:{operator_metrics}",
                f"--health-probe-bind-address=127.0.0.1:{probes}",
                f"--metrics-service-bind-address=127.0.0.1:{grpc_port}",
                f"--cert-dir={certs}",
                "--enable-cert-rotation=false",
                "--enable-webhook-patching=false",
                "--enable-apiservice-patching=false",
                f"--ca-dir={certs}",
                "--zap-log-level=info",
                *operator_args,
            ],
            log_path=workdir / "keda-operator.log",
            env=env,
        )
        metrics_server = ManagedProcess(
            name="keda-metrics-apiserver",
            argv=[
                str(adapter_bin),
                f"--secure-port={adapter_port}",
                "--bind-address=127.0.0.1",
                f"--tls-cert-file={serving.cert}",
                f"--tls-private-key-file={serving.key}",
                f"--cert-dir={certs}",
                f"--metrics-service-address=127.0.0.1:{grpc_port}",
                f"--port={adapter_metrics}",
                f"--lister-kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--v=1",
            ],
            log_path=workdir / "keda-metrics-apiserver.log",
            env=env,
        )
        return cls(operator, metrics_server, adapter_port, operator_metrics)


_APISERVICE: Final = "v1beta1.external.metrics.k8s.io"
_APISERVICE_PATH: Final = f"/apis/apiregistration.k8s.io/v1/apiservices/{_APISERVICE}"


async def install_keda_crds(cp: ControlPlane, version: str = KEDA_VERSION) -> None:
    """KEDA's CRDs from its Go module (no build needed), Established before returning."""
    paths = await asyncio.to_thread(keda_crds, version)
    for path in paths:
        (await cp.kubectl("apply", "--server-side", "-f", str(path))).check()
    for path in paths:
        name = str(yaml.safe_load(path.read_text())["metadata"]["name"])
        (await cp.kubectl("wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s")).check()


@contextlib.asynccontextmanager
async def running_keda(
    cp: ControlPlane,
    workdir: Path,
    *,
    on_process: Callable[[ManagedProcess], None] = lambda process: None,
    build: bool = False,
    operator_args: Sequence[str] = (),
) -> AsyncIterator[KedaProcesses]:
    """Real KEDA owning ``v1beta1.external.metrics.k8s.io`` until exit; the previous owner restored.

    KEDA's binaries are not part of the default ``localstack build`` (their cold build alone is
    about 16 min of CPU): they come from ``localstack build --with-keda``. Without them this raises
    ``BuildError`` naming that command, unless ``build`` is set (then it builds them first, minutes
    on a cold cache). ``on_process`` sees each process before it starts (the tests attach their
    logs to failure reports).
    """
    if build:
        await asyncio.to_thread(ensure_keda)
    else:
        require_keda()
    await install_keda_crds(cp)
    if cp.pki is None:
        raise RuntimeError("the control plane has not been started (no PKI yet)")
    status, previous = await cp.request("GET", _APISERVICE_PATH)
    processes = KedaProcesses.create(
        workdir=workdir,
        kubeconfig=Path(cp.kubeconfig),
        ca=cp.pki.cluster_ca,
        serving=issue_serving_cert(cp.pki.cluster_ca, KEDA_APISERVICE_SERVICE, KEDA_NAMESPACE),
        operator_args=operator_args,
    )
    api = LocalApiService(
        group="external.metrics.k8s.io",
        version="v1beta1",
        service_name=KEDA_APISERVICE_SERVICE,
        service_namespace=KEDA_NAMESPACE,
        port=processes.metrics_server_port,
        ca_bundle=cp.pki.cluster_ca.cert_path,
    )
    for process in (processes.operator, processes.metrics_server):
        on_process(process)
    try:
        await processes.operator.start()
        await processes.operator.wait_ready(
            lambda: http_ok(f"http://127.0.0.1:{processes.operator_metrics_port}/metrics"), timeout=120
        )
        await processes.metrics_server.start()
        await cp.apply(*apiservice_objects(api))
        await wait_for(lambda: apiservice_available(cp, _APISERVICE), timeout=120, what="KEDA's APIService")
        yield processes
    finally:
        await processes.metrics_server.stop()
        await processes.operator.stop()
        if status == 200 and isinstance(previous, dict):
            # Put back whoever served external metrics before (the e2e session's adapter).
            labels = (previous.get("metadata") or {}).get("labels") or {}
            restored = {**previous, "metadata": {"name": _APISERVICE, "labels": labels}}
            restored.pop("status", None)
            await cp.apply(restored)
        else:
            await cp.request("DELETE", _APISERVICE_PATH)
