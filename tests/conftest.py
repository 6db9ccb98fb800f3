"""Fixtures shared by every test tier.

The heavy pieces (Prometheus, the control plane) are session-scoped: started once, on loopback, in a
temporary directory, and stopped even when tests fail. When a test that used them fails, the tail of
each component's log is attached to the report, because "the HPA did not scale" is only debuggable
with the controller-manager's log next to it.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Generator
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client as k8s_client

from tgi_autoscaler.kube.connect import load_api_client
from tgi_autoscaler_dev.localstack.controlplane import ControlPlane, ControlPlaneSettings
from tgi_autoscaler_dev.localstack.process import ManagedProcess
from tgi_autoscaler_dev.localstack.prometheus import PrometheusServer

_COMPONENTS: pytest.StashKey[dict[str, ManagedProcess]] = pytest.StashKey()


def _components(config: pytest.Config) -> dict[str, ManagedProcess]:
    return config.stash.setdefault(_COMPONENTS, {})


def register_component(config: pytest.Config, process: ManagedProcess) -> None:
    """Make ``process``'s log part of every failing test's report."""
    _components(config)[process.name] = process


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[Any]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed and call.when in ("call", "setup"):
        for name, process in _components(item.config).items():
            report.sections.append((f"log of {name} (tail)", process.log_tail(80)))
    return report


@pytest.fixture(scope="session")
def stack_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stack")


@pytest.fixture(scope="session")
async def prometheus(stack_dir: Path, pytestconfig: pytest.Config) -> AsyncIterator[PrometheusServer]:
    server = PrometheusServer(stack_dir / "prometheus", scrape_interval_s=1.0, evaluation_interval_s=1.0)
    register_component(pytestconfig, server.process)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def running_prometheus(prometheus: PrometheusServer) -> PrometheusServer:
    """The session Prometheus, restarted first if an earlier test stopped it."""
    if not prometheus.running:
        await prometheus.start()
    return prometheus


@pytest.fixture(scope="session")
async def control_plane(stack_dir: Path, pytestconfig: pytest.Config) -> AsyncIterator[ControlPlane]:
    cp = ControlPlane(
        stack_dir / "control-plane",
        settings=ControlPlaneSettings(
            hpa_sync_period_s=float(os.environ.get("TGI_TEST_HPA_SYNC_PERIOD", "2")),
            hpa_downscale_stabilization_s=float(os.environ.get("TGI_TEST_DOWNSCALE_STABILIZATION", "10")),
        ),
    )
    try:
        await cp.start()
    finally:
        for process in cp.processes:
            register_component(pytestconfig, process)
    try:
        yield cp
    finally:
        await cp.stop()


@pytest.fixture
async def kube_api(control_plane: ControlPlane) -> AsyncIterator[k8s_client.ApiClient]:
    """A kubernetes_asyncio client authenticated as cluster admin."""
    api: k8s_client.ApiClient = await load_api_client(control_plane.kubeconfig)
    try:
        yield api
    finally:
        await api.close()


@pytest.fixture
async def namespace(control_plane: ControlPlane, request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A fresh namespace per test (named after it), deleted afterwards."""
    base = "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:40].strip("-")
    name = f"{base}-{uuid.uuid4().hex[:5]}"
    status, body = await control_plane.request(
        "POST",
        "/api/v1/namespaces",
        body={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
    )
    assert status == 201, body
    try:
        yield name
    finally:
        await control_plane.request("DELETE", f"/api/v1/namespaces/{name}")


@pytest.fixture(autouse=True)
async def no_leaked_tasks() -> AsyncIterator[None]:
    """Fail any test that leaves asyncio tasks running after it returns (kopf's discipline)."""
    before = asyncio.all_tasks()
    yield
    current = asyncio.current_task()
    leaked: set[asyncio.Task[Any]] = set()
    for _ in range(50):  # give cancelled tasks a moment to finish their cleanup
        leaked = {t for t in asyncio.all_tasks() - before if t is not current and not t.done()}
        if not leaked:
            return
        await asyncio.sleep(0.02)
    for task in leaked:
        task.cancel()
    pytest.fail(f"test leaked {len(leaked)} asyncio task(s): {sorted(t.get_name() for t in leaked)}")
