"""The image, run for real: both servers start from it against the local control plane.

Needs the image built by ``scripts/build-image.sh`` (buildah, on a base made from Debian's packages)
and root for podman. Starts etcd, kube-apiserver and kube-controller-manager and Prometheus on
loopback, installs the Helm chart with the adapter's Service as ``ExternalName: localhost`` (the
e2e tests' way of reaching a server outside the cluster), then runs the image with podman:

- as UID/GID 65532 with a read-only root filesystem, no capabilities, no new privileges, a 16 MiB
  tmpfs on /tmp (as the chart's pods), on the host's network (the servers bind 127.0.0.1 only);
- the adapter with the certificate the chart generated and its ServiceAccount's token, until the
  chart's APIService is Available through the aggregation layer;
- the controller with its ServiceAccount's token, until it holds its Lease.

Inside the running containers it checks the process's UID and that the root filesystem refuses
writes. Start time is from ``podman run`` to the server's ``/readyz`` answering 200, per trial; the
image's size is what podman reports (uncompressed). runc is the OCI runtime (see
scripts/build-image.sh for why not crun on some hosts), with the host's resource limits.

    .venv/bin/python bench/image_bench.py --trials 5
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import resource
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from tgi_autoscaler_dev.localstack.aggregation import apiservice_available
from tgi_autoscaler_dev.localstack.controlplane import ControlPlane
from tgi_autoscaler_dev.localstack.helm import ensure_helm
from tgi_autoscaler_dev.localstack.process import free_port, http_ok, wait_for
from tgi_autoscaler_dev.localstack.prometheus import PrometheusServer

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "tgi-autoscaler"
NS = "tgi-autoscaler"
APISERVICE = "v1beta1.external.metrics.k8s.io"
UID = 65532


def _run(
    argv: Sequence[str], *, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(argv), capture_output=True, text=True, check=False, timeout=300, env=env)
    if check and result.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:3])} failed ({result.returncode}):\n{result.stderr}")
    return result


def _limits() -> list[str]:
    """The host's hard limits (podman's defaults for root exceed them on some VMs, see the docstring)."""
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nproc_max = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    nproc = 32768 if nproc_max == resource.RLIM_INFINITY else min(32768, nproc_max)
    return ["--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", f"nproc={nproc}:{nproc}"]


class Podman:
    def __init__(self, image: str, runtime: str, mount: Path) -> None:
        self.image = image
        self.runtime = runtime
        self.mount = mount

    def run(self, name: str, args: Sequence[str]) -> None:
        _run(["podman", "rm", "--force", "--ignore", name])
        _run(
            [
                "podman", "run", "--detach", "--name", name, "--runtime", self.runtime, *_limits(),
                "--network", "host", "--user", f"{UID}:{UID}", "--read-only",
                "--tmpfs", "/tmp:rw,size=16m,mode=1777", "--cap-drop", "ALL",
                "--security-opt", "no-new-privileges", "--volume", f"{self.mount}:/var/run/tgi:ro",
                self.image, *args,
            ]
        )  # fmt: skip

    def exec(self, name: str, script: str) -> subprocess.CompletedProcess[str]:
        return _run(["podman", "exec", name, "sh", "-c", script], check=False)

    def logs(self, name: str) -> str:
        return _run(["podman", "logs", "--tail", "30", name], check=False).stderr

    def remove(self, name: str) -> None:
        _run(["podman", "rm", "--force", "--time", "5", "--ignore", name], check=False)


def _kubeconfig(path: Path, *, server: str, ca: Path, token: str) -> None:
    # Inline CA data: the container sees only the mounted directory.
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "local",
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca.read_bytes()).decode(),
                },
            }
        ],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": "sa"}}],
        "current-context": "local",
    }
    path.write_text(yaml.safe_dump(config))


async def _token(cp: ControlPlane, name: str) -> str:
    status, body = await cp.request(
        "POST",
        f"/api/v1/namespaces/{NS}/serviceaccounts/{name}/token",
        body={
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": 7200},
        },
    )
    if status != 201:
        raise SystemExit(f"TokenRequest for {name}: {status} {body}")
    token: str = body["status"]["token"]
    return token


def _inside_checks(podman: Podman, name: str) -> dict[str, str]:
    uid = podman.exec(name, "awk '/^Uid:/ {print $2}' /proc/1/status").stdout.strip()
    write = podman.exec(name, "touch /opt/venv/probe 2>&1; touch /etc/probe 2>&1")
    tmp = podman.exec(name, "touch /tmp/probe && echo tmp-writable")
    ro = "read-only" if write.stdout.count("Read-only file system") == 2 else f"WRITABLE: {write.stdout!r}"
    return {"uid": uid, "rootfs": ro, "tmp": tmp.stdout.strip() or tmp.stderr.strip()}


async def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default="localhost/tgi-autoscaler:0.1.0")
    parser.add_argument("--runtime", default=os.environ.get("OCI_RUNTIME", "runc"))
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args(argv)
    if shutil.which("podman") is None or os.geteuid() != 0:
        raise SystemExit("needs root and podman (scripts/build-image.sh installs it)")
    inspect = _run(["podman", "image", "inspect", args.image], check=False)
    if inspect.returncode != 0:
        raise SystemExit(f"no image {args.image}: build it with scripts/build-image.sh")
    image_info: dict[str, Any] = json.loads(inspect.stdout)[0]

    workdir = Path(tempfile.mkdtemp(prefix="tgi-image-bench-"))
    mount = workdir / "mount"
    mount.mkdir()
    podman = Podman(args.image, args.runtime, mount)
    cp = ControlPlane(workdir / "cp")
    prometheus = PrometheusServer(workdir / "prometheus")
    helm_env = {
        **os.environ,
        **{f"HELM_{k}_HOME": str(workdir / "helm" / k.lower()) for k in ("CACHE", "CONFIG", "DATA")},
    }
    adapter_name, controller_name = "tgi-image-bench-adapter", "tgi-image-bench-controller"
    rows: list[tuple[str, str]] = []
    try:
        await cp.start()
        await prometheus.start()
        assert cp.pki is not None
        port, metrics_port = free_port(), free_port()
        _run(
            [
                str(ensure_helm()), "install", "tgi-autoscaler", str(CHART), "-n", NS, "--create-namespace",
                "--kubeconfig", str(cp.kubeconfig), "--set", "adapter.service.externalName=localhost",
                "--set", f"adapter.service.port={port}",
            ],
            env=helm_env,
        )  # fmt: skip
        status, secret = await cp.request(
            "GET", f"/api/v1/namespaces/{NS}/secrets/tgi-autoscaler-adapter-serving-cert"
        )
        assert status == 200, secret
        for key in ("tls.crt", "tls.key", "ca.crt"):
            (mount / key).write_bytes(base64.b64decode(secret["data"][key]))
        for sa, file in (("tgi-autoscaler-adapter", "adapter"), ("tgi-autoscaler-controller", "controller")):
            _kubeconfig(
                mount / f"{file}.kubeconfig",
                server=cp.server,
                ca=cp.pki.cluster_ca.cert_path,
                token=await _token(cp, sa),
            )
        for path in mount.iterdir():
            os.chown(path, UID, UID)
            path.chmod(0o400)
        serving = ssl.create_default_context(cafile=str(mount / "ca.crt"))
        serving.check_hostname = False  # the certificate names the Service; we dial 127.0.0.1

        adapter_args = [
            "--log-format=json", "adapter", "--bind-address=127.0.0.1", f"--secure-port={port}",
            "--tls-cert-file=/var/run/tgi/tls.crt", "--tls-private-key-file=/var/run/tgi/tls.key",
            "--kubeconfig=/var/run/tgi/adapter.kubeconfig", f"--prometheus-url={prometheus.url}",
            f"--metrics-configmap={NS}/tgi-autoscaler-adapter-metrics", "--shutdown-grace=1",
        ]  # fmt: skip
        controller_args = [
            "--log-format=json", "controller", "--kubeconfig=/var/run/tgi/controller.kubeconfig",
            f"--metrics-bind=127.0.0.1:{metrics_port}", f"--lease-namespace={NS}", "--identity=image-bench",
            "--shutdown-grace=1", "--lease-duration=4", "--renew-deadline=3", "--retry-period=1",
        ]  # fmt: skip
        adapter_ready: list[float] = []
        controller_ready: list[float] = []
        available_s = lease_s = 0.0
        checks: dict[str, dict[str, str]] = {}
        for trial in range(args.trials):
            started = time.monotonic()
            podman.run(adapter_name, adapter_args)
            try:
                await wait_for(
                    lambda: http_ok(f"https://127.0.0.1:{port}/readyz", timeout_s=2, ssl_context=serving),
                    timeout=120,
                    what="the adapter container's /readyz",
                )
            except Exception:
                print(podman.logs(adapter_name), file=sys.stderr)
                raise
            adapter_ready.append(time.monotonic() - started)
            if trial == 0:
                await wait_for(
                    lambda: apiservice_available(cp, APISERVICE), timeout=120, what=f"{APISERVICE}"
                )
                available_s = time.monotonic() - started
                checks["adapter"] = _inside_checks(podman, adapter_name)

            started = time.monotonic()
            podman.run(controller_name, controller_args)
            await wait_for(
                lambda: http_ok(f"http://127.0.0.1:{metrics_port}/readyz", timeout_s=2),
                timeout=120,
                what="the controller container's /readyz",
            )
            controller_ready.append(time.monotonic() - started)
            if trial == 0:

                async def lease_held() -> bool:
                    status, lease = await cp.request(
                        "GET",
                        f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/tgi-autoscaler-controller",
                    )
                    return status == 200 and lease["spec"].get("holderIdentity") == "image-bench"

                await wait_for(lease_held, timeout=60, what="the controller container to hold its Lease")
                lease_s = time.monotonic() - started
                checks["controller"] = _inside_checks(podman, controller_name)
            podman.remove(adapter_name)
            podman.remove(controller_name)

        cli_started = time.monotonic()
        runtime = ["--runtime", args.runtime, *_limits()]
        version_argv = [
            "podman",
            "run",
            "--rm",
            *runtime,
            "--network",
            "none",
            "--read-only",
            args.image,
            "--version",
        ]
        version = _run(version_argv).stdout.strip()
        cli_s = time.monotonic() - cli_started
        size = int(image_info["Size"])
        layers = len(image_info["RootFS"]["Layers"])
        rows = [
            ("image", f"{args.image} ({version}), {size / 1e6:.0f} MB uncompressed, {layers} layers"),
            ("user in the image", str(image_info["Config"].get("User"))),
            ("adapter: process UID, root fs, /tmp", ", ".join(checks["adapter"].values())),
            ("controller: process UID, root fs, /tmp", ", ".join(checks["controller"].values())),
            ("adapter: podman run -> /readyz 200", _stats(adapter_ready)),
            ("adapter: podman run -> APIService Available (first run)", f"{available_s:.2f} s"),
            ("controller: podman run -> /readyz 200", _stats(controller_ready)),
            ("controller: podman run -> Lease held (first run)", f"{lease_s:.2f} s"),
            ("podman run --rm IMAGE --version", f"{cli_s:.2f} s"),
            ("load average (1 min) at the end", f"{os.getloadavg()[0]:.1f}"),
        ]
    finally:
        podman.remove(adapter_name)
        podman.remove(controller_name)
        await prometheus.stop()
        await cp.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    ok = all(c["uid"] == str(UID) and c["rootfs"] == "read-only" for c in checks.values())
    return 0 if ok else 1


def _stats(samples: list[float]) -> str:
    return (
        f"median {statistics.median(samples):.2f} s, min {min(samples):.2f} s, max {max(samples):.2f} s "
        f"({len(samples)} runs)"
    )


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
