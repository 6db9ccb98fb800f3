"""Serving TLS: generated certificates, file reload and client-CA rotation on a live listener context."""

from __future__ import annotations

import ipaddress
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.unit.x509_factory import client_context, handshake, issue, make_ca
from tgi_autoscaler.adapter.tls import (
    ServingTLS,
    TLSConfigError,
    generate_self_signed,
    load_key_pair,
    parse_san,
)

pytestmark = pytest.mark.unit

SERVER_NAME = "adapter.tgi-autoscaler.svc"


def _serving(ca_cn: str = "serving-ca") -> tuple[bytes, ServingTLS]:
    ca = make_ca(ca_cn)
    leaf = issue(ca, SERVER_NAME, usages=(ExtendedKeyUsageOID.SERVER_AUTH,), sans=(SERVER_NAME,))
    return ca.cert_pem, ServingTLS(leaf.pair)


def test_self_signed_certificate_carries_every_requested_name() -> None:
    pair = generate_self_signed(["adapter.ns.svc", "localhost", "127.0.0.1", "::1"])
    cert = x509.load_pem_x509_certificate(pair.cert_pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["adapter.ns.svc", "localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]


def test_self_signed_certificate_verifies_for_a_client_that_trusts_it() -> None:
    tls = ServingTLS.self_signed(["localhost"])
    result = handshake(tls.listener_context, client_context(trust=tls.key_pair.cert_pem), "localhost")
    served = x509.load_der_x509_certificate(result.server_cert_der)
    assert served == x509.load_pem_x509_certificate(tls.key_pair.cert_pem)


def test_self_signed_certificate_fails_for_a_name_it_does_not_carry() -> None:
    tls = ServingTLS.self_signed(["localhost"])
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(tls.listener_context, client_context(trust=tls.key_pair.cert_pem), "other.example")


@pytest.mark.parametrize("bad", ["", "  ", "has space", "http://x", "a/b"])
def test_unusable_subject_alternative_names_are_rejected_by_value(bad: str) -> None:
    with pytest.raises(TLSConfigError, match="subject alternative name"):
        parse_san(bad)


def test_no_hosts_for_a_generated_certificate_is_an_error() -> None:
    with pytest.raises(TLSConfigError, match="at least one host"):
        generate_self_signed([])


def test_a_key_that_does_not_match_the_certificate_is_rejected_naming_the_files(tmp_path: Path) -> None:
    ca = make_ca("ca")
    a, b = issue(ca, "a"), issue(ca, "b")
    (tmp_path / "tls.crt").write_bytes(a.cert_pem)
    (tmp_path / "tls.key").write_bytes(b.key_pem)
    with pytest.raises(TLSConfigError, match=r"tls\.crt.*does not match"):
        load_key_pair(tmp_path / "tls.crt", tmp_path / "tls.key")


def test_missing_files_are_reported_by_name(tmp_path: Path) -> None:
    with pytest.raises(TLSConfigError, match=r"tls\.crt: cannot read"):
        load_key_pair(tmp_path / "tls.crt", tmp_path / "tls.key")


def test_garbage_instead_of_a_certificate_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "tls.crt").write_bytes(b"not a certificate")
    (tmp_path / "tls.key").write_bytes(b"not a key")
    with pytest.raises(TLSConfigError, match="not valid PEM"):
        load_key_pair(tmp_path / "tls.crt", tmp_path / "tls.key")


async def test_changed_files_are_served_to_new_connections_after_reload(tmp_path: Path) -> None:
    ca = make_ca("serving-ca")
    first = issue(ca, SERVER_NAME, usages=(ExtendedKeyUsageOID.SERVER_AUTH,), sans=(SERVER_NAME,))
    second = issue(ca, SERVER_NAME, usages=(ExtendedKeyUsageOID.SERVER_AUTH,), sans=(SERVER_NAME,))
    crt, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    crt.write_bytes(first.cert_pem)
    key.write_bytes(first.key_pem)
    tls = ServingTLS.from_files(crt, key)
    client = client_context(trust=ca.cert_pem)
    assert handshake(tls.listener_context, client, SERVER_NAME).server_cert_der == first.der

    assert await tls.reload_files() is False  # nothing changed yet

    crt.write_bytes(second.cert_pem)
    key.write_bytes(second.key_pem)
    assert await tls.reload_files() is True
    assert handshake(tls.listener_context, client, SERVER_NAME).server_cert_der == second.der


async def test_a_half_written_rotation_keeps_serving_the_previous_pair(tmp_path: Path) -> None:
    ca = make_ca("serving-ca")
    first = issue(ca, SERVER_NAME, usages=(ExtendedKeyUsageOID.SERVER_AUTH,), sans=(SERVER_NAME,))
    second = issue(ca, SERVER_NAME, usages=(ExtendedKeyUsageOID.SERVER_AUTH,), sans=(SERVER_NAME,))
    crt, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    crt.write_bytes(first.cert_pem)
    key.write_bytes(first.key_pem)
    tls = ServingTLS.from_files(crt, key)

    crt.write_bytes(second.cert_pem)  # the key file has not been replaced yet
    assert await tls.reload_files() is False
    client = client_context(trust=ca.cert_pem)
    assert handshake(tls.listener_context, client, SERVER_NAME).server_cert_der == first.der

    key.write_bytes(second.key_pem)
    assert await tls.reload_files() is True
    assert handshake(tls.listener_context, client, SERVER_NAME).server_cert_der == second.der


async def test_client_certificates_are_requested_but_optional() -> None:
    serving_ca, tls = _serving()
    result = handshake(tls.listener_context, client_context(trust=serving_ca), SERVER_NAME)
    assert result.client_cert_der is None


async def test_a_client_certificate_from_the_trusted_front_proxy_ca_reaches_the_server() -> None:
    serving_ca, tls = _serving()
    proxy_ca = make_ca("front-proxy-ca")
    await tls.set_client_ca(proxy_ca.cert_pem)
    proxy = issue(proxy_ca, "front-proxy-client")
    result = handshake(tls.listener_context, client_context(trust=serving_ca, client=proxy), SERVER_NAME)
    assert result.client_cert_der == proxy.der


async def test_a_client_certificate_from_another_ca_fails_the_handshake() -> None:
    serving_ca, tls = _serving()
    await tls.set_client_ca(make_ca("front-proxy-ca").cert_pem)
    stranger = issue(make_ca("someone-else"), "front-proxy-client")
    with pytest.raises(ssl.SSLError):
        handshake(tls.listener_context, client_context(trust=serving_ca, client=stranger), SERVER_NAME)


async def test_rotating_the_client_ca_applies_to_the_listener_without_a_restart() -> None:
    serving_ca, tls = _serving()
    listener = tls.listener_context
    old_ca, new_ca = make_ca("front-proxy-ca-1"), make_ca("front-proxy-ca-2")
    old_client, new_client = issue(old_ca, "front-proxy-client"), issue(new_ca, "front-proxy-client")

    await tls.set_client_ca(old_ca.cert_pem)
    assert handshake(
        listener, client_context(trust=serving_ca, client=old_client), SERVER_NAME
    ).client_cert_der
    with pytest.raises(ssl.SSLError):
        handshake(listener, client_context(trust=serving_ca, client=new_client), SERVER_NAME)

    await tls.set_client_ca(new_ca.cert_pem)
    assert tls.listener_context is listener
    assert handshake(
        listener, client_context(trust=serving_ca, client=new_client), SERVER_NAME
    ).client_cert_der
    with pytest.raises(ssl.SSLError):
        handshake(listener, client_context(trust=serving_ca, client=old_client), SERVER_NAME)


async def test_a_client_ca_that_is_not_pem_is_rejected() -> None:
    _, tls = _serving()
    with pytest.raises(TLSConfigError, match="client CA bundle"):
        await tls.set_client_ca(b"garbage")


def test_cert_and_key_files_must_come_together(tmp_path: Path) -> None:
    pair = generate_self_signed(["localhost"])
    with pytest.raises(TLSConfigError, match="together"):
        ServingTLS(pair, cert_file=tmp_path / "tls.crt")
