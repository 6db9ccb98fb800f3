"""A renewed serving certificate is picked up by the running adapter while the aggregator keeps using it."""

from __future__ import annotations

import asyncio
import ssl

import pytest
from cryptography import x509

from tests.e2e.conftest import ADAPTER_NAMESPACE, ADAPTER_SERVICE, GROUP, VERSION, RunningAdapter
from tgi_autoscaler_dev.localstack.aggregation import issue_serving_cert
from tgi_autoscaler_dev.localstack.controlplane import ControlPlane
from tgi_autoscaler_dev.localstack.process import wait_for

pytestmark = pytest.mark.e2e


async def served_certificate(adapter: RunningAdapter) -> x509.Certificate:
    ctx = adapter.ssl_context()
    _reader, writer = await asyncio.open_connection("127.0.0.1", adapter.port, ssl=ctx)
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        assert isinstance(ssl_object, ssl.SSLObject)
        der = ssl_object.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der)
    finally:
        writer.close()
        await writer.wait_closed()


async def test_a_renewed_serving_certificate_is_served_without_a_restart(
    adapter: RunningAdapter, control_plane: ControlPlane
) -> None:
    before = await served_certificate(adapter)
    pid = adapter.process.pid
    # Same CA (the one pinned in the APIService caBundle), new key pair, written over the old files.
    renewed = issue_serving_cert(adapter.serving_authority, ADAPTER_SERVICE, ADAPTER_NAMESPACE)
    expected = x509.load_pem_x509_certificate(renewed.cert_pem())
    assert expected.serial_number != before.serial_number

    async def renewed_is_served() -> bool:
        return (await served_certificate(adapter)).serial_number == expected.serial_number

    await wait_for(renewed_is_served, timeout=20, what="the adapter to serve the renewed certificate")
    assert adapter.process.pid == pid
    assert adapter.process.running

    async def aggregator_reaches_the_adapter() -> bool:
        result = await control_plane.kubectl("get", "--raw", f"/apis/{GROUP}/{VERSION}")
        return result.returncode == 0 and "tgi_queue_size" in result.stdout

    # kube-apiserver's new connections verify the renewed certificate against the unchanged caBundle.
    await wait_for(aggregator_reaches_the_adapter, timeout=30, what="discovery through kube-apiserver")
