"""A real Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager, kube-scheduler.

There is no kubelet: without nodes pods stay Pending (the scheduler reports them unschedulable), and
``kwok`` adds fake GPU nodes that play the pod lifecycle. Everything the project needs from
Kubernetes runs for real: validation and server-side apply in the API server, the aggregation layer
proxying to an external metrics server, RBAC, the garbage collector, the Deployment, ReplicaSet,
node lifecycle and HorizontalPodAutoscaler controllers, and the scheduler's filters (resources,
taints, node selectors). The HPA sync period and the default downscale stabilization are parameters
so tests can use seconds instead of minutes.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from tgi_autoscaler_dev.localstack.binaries import Binaries, ensure_binaries
from tgi_autoscaler_dev.localstack.pki import KeyPair, Pki, generate_pki
from tgi_autoscaler_dev.localstack.process import ManagedProcess, free_port, http_ok

__all__ = ["ControlPlane", "ControlPlaneSettings", "KubectlResult"]


@dataclass(frozen=True)
class ControlPlaneSettings:
    hpa_sync_period_s: float = 2.0
    hpa_downscale_stabilization_s: float = 10.0
    hpa_tolerance: float = 0.1
    start_timeout_s: float = 120.0
    # Passed to kube-apiserver and kube-controller-manager, e.g. ("HPAScaleToZero=false",).
    feature_gates: tuple[str, ...] = ()

    @property
    def feature_gate_args(self) -> list[str]:
        return [f"--feature-gates={','.join(self.feature_gates)}"] if self.feature_gates else []


@dataclass(frozen=True)
class KubectlResult:
    returncode: int
    stdout: str
    stderr: str

    def check(self) -> KubectlResult:
        if self.returncode != 0:
            raise RuntimeError(
                f"kubectl failed ({self.returncode}): {self.stderr.strip() or self.stdout.strip()}"
            )
        return self


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write_kubeconfig(path: Path, *, server: str, ca: Path, client: KeyPair, user: str) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "local", "cluster": {"server": server, "certificate-authority-data": _b64(ca)}}
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": _b64(client.cert),
                    "client-key-data": _b64(client.key),
                },
            }
        ],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": user}}],
        "current-context": "local",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def _self_signed() -> ssl.SSLContext:
    """A client context for a component's self-signed serving cert; only its liveness matters here."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager + kube-scheduler under ``workdir``."""

    def __init__(
        self,
        workdir: Path,
        *,
        settings: ControlPlaneSettings | None = None,
        binaries: Binaries | None = None,
    ) -> None:
        self.workdir = workdir
        self.settings = settings or ControlPlaneSettings()
        self._binaries = binaries
        self.apiserver_port = free_port()
        self.etcd_port = free_port()
        self.etcd_peer_port = free_port()
        self.kcm_port = free_port()
        self.scheduler_port = free_port()
        self.pki: Pki | None = None
        self.kubeconfig = workdir / "admin.kubeconfig"
        self._etcd: ManagedProcess | None = None
        self._apiserver: ManagedProcess | None = None
        self._kcm: ManagedProcess | None = None
        self._scheduler: ManagedProcess | None = None

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def binaries(self) -> Binaries:
        if self._binaries is None:
            self._binaries = ensure_binaries()
        return self._binaries

    @property
    def processes(self) -> list[ManagedProcess]:
        return [p for p in (self._etcd, self._apiserver, self._kcm, self._scheduler) if p is not None]

    def _pki(self) -> Pki:
        if self.pki is None:
            raise RuntimeError("control plane not started")
        return self.pki

    def ssl_context(self, client: KeyPair | None = None) -> ssl.SSLContext:
        """A client TLS context trusting the cluster CA, authenticating as ``client`` (default admin)."""
        pki = self._pki()
        ctx = ssl.create_default_context(cafile=str(pki.cluster_ca.cert_path))
        pair = client or pki.admin
        ctx.load_cert_chain(str(pair.cert), str(pair.key))
        return ctx

    async def start(self) -> None:
        binaries = await asyncio.to_thread(lambda: self.binaries)
        self.workdir.mkdir(parents=True, exist_ok=True)
        pki = self.pki = await asyncio.to_thread(generate_pki, self.workdir / "pki")
        write_kubeconfig(
            self.kubeconfig, server=self.server, ca=pki.cluster_ca.cert_path, client=pki.admin, user="admin"
        )
        kcm_kubeconfig = write_kubeconfig(
            self.workdir / "controller-manager.kubeconfig",
            server=self.server,
            ca=pki.cluster_ca.cert_path,
            client=pki.controller_manager,
            user="system:kube-controller-manager",
        )
        scheduler_kubeconfig = write_kubeconfig(
            self.workdir / "scheduler.kubeconfig",
            server=self.server,
            ca=pki.cluster_ca.cert_path,
            client=pki.scheduler,
            user="system:kube-scheduler",
        )
        etcd_url = f"http://127.0.0.1:{self.etcd_port}"
        peer_url = f"http://127.0.0.1:{self.etcd_peer_port}"
        self._etcd = ManagedProcess(
            name="etcd",
            argv=[
                str(binaries.etcd),
                "--name=local",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=local={peer_url}",
                "--unsafe-no-fsync",  # throwaway data: trade durability for test speed
                "--log-level=warn",
            ],
            log_path=self.workdir / "etcd.log",
        )
        await self._etcd.start()
        await self._etcd.wait_ready(lambda: http_ok(f"{etcd_url}/health"), timeout=60)

        self._apiserver = ManagedProcess(
            name="kube-apiserver",
            argv=[
                str(binaries.kube_apiserver),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.apiserver_port}",
                "--endpoint-reconciler-type=none",
                "--service-cluster-ip-range=10.0.0.0/24",
                f"--cert-dir={self.workdir / 'apiserver-certs'}",
                f"--client-ca-file={pki.cluster_ca.cert_path}",
                f"--tls-cert-file={pki.apiserver.cert}",
                f"--tls-private-key-file={pki.apiserver.key}",
                f"--service-account-key-file={pki.service_account_pub}",
                f"--service-account-signing-key-file={pki.service_account_key}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                "--authorization-mode=RBAC",
                f"--requestheader-client-ca-file={pki.front_proxy_ca.cert_path}",
                "--requestheader-allowed-names=front-proxy-client",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--proxy-client-cert-file={pki.front_proxy_client.cert}",
                f"--proxy-client-key-file={pki.front_proxy_client.key}",
                "--enable-aggregator-routing=false",
                "--allow-privileged=true",
                "--profiling=false",
                "--v=1",
                *self.settings.feature_gate_args,
            ],
            log_path=self.workdir / "kube-apiserver.log",
        )
        await self._apiserver.start()
        await self._apiserver.wait_ready(self._apiserver_ready, timeout=self.settings.start_timeout_s)

        s = self.settings
        self._kcm = ManagedProcess(
            name="kube-controller-manager",
            argv=[
                str(binaries.kube_controller_manager),
                f"--kubeconfig={kcm_kubeconfig}",
                f"--authentication-kubeconfig={kcm_kubeconfig}",
                f"--authorization-kubeconfig={kcm_kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.kcm_port}",
                f"--cert-dir={self.workdir / 'kcm-certs'}",
                "--leader-elect=false",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={pki.service_account_key}",
                f"--root-ca-file={pki.cluster_ca.cert_path}",
                # nodelifecycle stays on: it lifts the not-ready taint the API server puts on every
                # new node once kwok reports the node Ready, as in a cluster.
                "--controllers=*,-node-ipam-controller,-persistentvolume-binder-controller",
                f"--horizontal-pod-autoscaler-sync-period={s.hpa_sync_period_s}s",
                f"--horizontal-pod-autoscaler-downscale-stabilization={s.hpa_downscale_stabilization_s}s",
                f"--horizontal-pod-autoscaler-tolerance={s.hpa_tolerance}",
                "--concurrent-horizontal-pod-autoscaler-syncs=5",
                "--v=2",
                *s.feature_gate_args,
            ],
            log_path=self.workdir / "kube-controller-manager.log",
        )
        await self._kcm.start()
        await self._kcm.wait_ready(self._kcm_ready, timeout=self.settings.start_timeout_s)

        self._scheduler = ManagedProcess(
            name="kube-scheduler",
            argv=[
                str(binaries.kube_scheduler),
                f"--kubeconfig={scheduler_kubeconfig}",
                f"--authentication-kubeconfig={scheduler_kubeconfig}",
                f"--authorization-kubeconfig={scheduler_kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.scheduler_port}",
                f"--cert-dir={self.workdir / 'scheduler-certs'}",
                "--leader-elect=false",
                "--v=2",
            ],
            log_path=self.workdir / "kube-scheduler.log",
        )
        await self._scheduler.start()
        await self._scheduler.wait_ready(self._scheduler_ready, timeout=self.settings.start_timeout_s)

    async def _apiserver_ready(self) -> bool:
        return await http_ok(f"{self.server}/readyz", ssl_context=self.ssl_context(), timeout_s=3)

    async def _kcm_ready(self) -> bool:
        return await http_ok(
            f"https://127.0.0.1:{self.kcm_port}/healthz", ssl_context=_self_signed(), timeout_s=3
        )

    async def _scheduler_ready(self) -> bool:
        return await http_ok(
            f"https://127.0.0.1:{self.scheduler_port}/healthz", ssl_context=_self_signed(), timeout_s=3
        )

    async def stop(self) -> None:
        for proc in reversed(self.processes):
            await proc.stop()

    async def apply(self, *objects: Mapping[str, Any], field_manager: str = "localstack") -> None:
        """Server-side apply ``objects`` as the harness (conflicts forced: the harness owns them)."""
        manifest = yaml.safe_dump_all([dict(o) for o in objects])
        args = ("apply", "--server-side", "--force-conflicts", f"--field-manager={field_manager}")
        (await self.kubectl(*args, "-f", "-", input_text=manifest)).check()

    async def kubectl(
        self, *args: str, input_text: str | None = None, kubeconfig: Path | None = None
    ) -> KubectlResult:
        """Run the built kubectl against this control plane."""
        proc = await asyncio.create_subprocess_exec(
            str(self.binaries.kubectl),
            f"--kubeconfig={kubeconfig or self.kubeconfig}",
            *args,
            stdin=asyncio.subprocess.PIPE if input_text is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate(input_text.encode() if input_text is not None else None)
        return KubectlResult(proc.returncode or 0, out.decode(), err.decode())

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        client: KeyPair | None = None,
        content_type: str = "application/json",
    ) -> tuple[int, Any]:
        """A raw API request as ``client`` (default admin); returns (status, decoded JSON or text)."""
        data = None
        if body is not None:
            data = body if isinstance(body, (str, bytes)) else json.dumps(body)
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                method,
                f"{self.server}{path}",
                data=data,
                headers={"Content-Type": content_type, "Accept": "application/json"},
                ssl=self.ssl_context(client),
                timeout=aiohttp.ClientTimeout(total=30),
            ) as resp,
        ):
            text = await resp.text()
            try:
                return resp.status, yaml.safe_load(text)
            except yaml.YAMLError:
                return resp.status, text

    def issue_user(self, name: str, groups: Sequence[str] = ()) -> KeyPair:
        """A client certificate for a user (no RBAC rights unless the test grants them)."""
        safe = "".join(c if c.isalnum() else "-" for c in name)
        return self._pki().cluster_ca.issue(
            f"user-{safe}", common_name=name, organizations=groups, client=True
        )

    def user_kubeconfig(self, name: str, groups: Sequence[str] = ()) -> Path:
        pair = self.issue_user(name, groups)
        safe = "".join(c if c.isalnum() else "-" for c in name)
        return write_kubeconfig(
            self.workdir / f"user-{safe}.kubeconfig",
            server=self.server,
            ca=self._pki().cluster_ca.cert_path,
            client=pair,
            user=name,
        )

    def logs(self) -> dict[str, str]:
        return {p.name: p.log_tail() for p in self.processes}
