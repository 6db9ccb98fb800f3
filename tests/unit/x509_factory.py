"""Real X.509 material for tests: CAs, client and serving certificates, and in-memory handshakes.

Authentication decisions depend on genuine signatures, validity windows and key usages, so tests
build real certificates (with the local stack's builders, kept in memory) instead of mocking a
verifier. Handshakes run over
``ssl.MemoryBIO`` pairs, which exercises OpenSSL without opening a socket.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from tgi_autoscaler.adapter.tls import KeyPair
from tgi_autoscaler_dev.localstack.pki import ca_certificate, leaf_certificate

NOW = dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class Issued:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def pair(self) -> KeyPair:
        return KeyPair(cert_pem=self.cert_pem, key_pem=self.key_pem)


def make_ca(cn: str) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = ca_certificate(
        key, cn, not_before=NOW - dt.timedelta(hours=1), not_after=NOW + dt.timedelta(days=30)
    )
    return Issued(cert, key)


def issue(
    ca: Issued,
    cn: str,
    *,
    orgs: tuple[str, ...] = (),
    usages: tuple[x509.ObjectIdentifier, ...] = (ExtendedKeyUsageOID.CLIENT_AUTH,),
    sans: tuple[str, ...] = (),
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> Issued:
    """A certificate signed by ``ca``; any validity window or usages, to build the odd ones too."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = leaf_certificate(
        key,
        issuer=ca.cert,
        issuer_key=ca.key,
        common_name=cn,
        organizations=orgs,
        usages=usages,
        sans=[x509.DNSName(s) for s in sans],
        not_before=not_before or NOW - dt.timedelta(hours=1),
        not_after=not_after or NOW + dt.timedelta(days=1),
    )
    return Issued(cert, key)


def client_context(*, trust: bytes | None, client: Issued | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if trust is None:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.load_verify_locations(cadata=trust.decode())
    if client is not None:
        # load_cert_chain only reads files.
        with tempfile.TemporaryDirectory() as tmp:
            c, k = Path(tmp, "c.pem"), Path(tmp, "k.pem")
            c.write_bytes(client.cert_pem)
            k.write_bytes(client.key_pem)
            ctx.load_cert_chain(str(c), str(k))
    return ctx


@dataclass(frozen=True)
class Handshake:
    server_cert_der: bytes
    client_cert_der: bytes | None
    server_side: ssl.SSLObject


def handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, server_name: str) -> Handshake:
    """Run a full TLS handshake in memory; raises ``ssl.SSLError`` if either side rejects it."""
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname=server_name)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    client_done = server_done = False
    for _ in range(20):
        if not client_done:
            try:
                client.do_handshake()
                client_done = True
            except ssl.SSLWantReadError:
                pass
        s_in.write(c_out.read())
        if not server_done:
            try:
                server.do_handshake()
                server_done = True
            except ssl.SSLWantReadError:
                pass
        c_in.write(s_out.read())
        if client_done and server_done:
            # TLS 1.3 delivers the server's verdict on the client certificate after the client
            # finishes; a read surfaces an alert the server sent.
            with contextlib.suppress(ssl.SSLWantReadError):
                client.read(1)
            cert = client.getpeercert(binary_form=True)
            assert cert is not None
            return Handshake(cert, server.getpeercert(binary_form=True), server)
    raise AssertionError("handshake did not finish")
