"""Serving TLS for the adapter: a certificate that can change while the server runs.

The kube-apiserver aggregation layer only talks HTTPS to an APIService backend and, when the
APIService carries a ``caBundle``, verifies the serving certificate against it. Certificates in a
cluster rotate (cert-manager renews a Secret, the kubelet swaps the mounted files), and the
front-proxy CA that signs the aggregator's client certificate rotates too, so neither may require
a restart.

The listening socket keeps one :class:`ssl.SSLContext` for its lifetime. Its SNI callback, which
OpenSSL runs for every handshake (with or without a server name), switches the connection to the
*current* context, which is rebuilt whenever the serving pair or the client CA changes. Client
certificates are requested (``CERT_OPTIONAL``) and chain-checked by OpenSSL against the current
front-proxy CA; the identity decision itself is made per request in :mod:`.authn`, against the CA
that is current at that moment, so long-lived keep-alive connections cannot outlive a rotation.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import ipaddress
import os
import ssl
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "KeyPair",
    "ServingTLS",
    "TLSConfigError",
    "generate_self_signed",
    "load_key_pair",
    "parse_san",
]

log = structlog.get_logger(__name__)

_SELF_SIGNED_VALIDITY = dt.timedelta(days=365)
# Tolerates clocks of peers that are a little behind ours.
_BACKDATE = dt.timedelta(minutes=5)


class TLSConfigError(ValueError):
    """A certificate, key or CA bundle that cannot be used; the message names the file or field."""


@dataclass(frozen=True)
class KeyPair:
    """A PEM certificate chain (leaf first) and the PEM private key of its leaf."""

    cert_pem: bytes
    key_pem: bytes

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the leaf certificate, safe to log (it identifies, it does not reveal)."""
        leaf = x509.load_pem_x509_certificates(self.cert_pem)[0]
        return leaf.fingerprint(hashes.SHA256()).hex()


def parse_san(value: str) -> x509.GeneralName:
    """One subject alternative name: an IP address if it parses as one, else a DNS name."""
    text = value.strip()
    if not text:
        raise TLSConfigError("subject alternative name: must not be empty")
    try:
        return x509.IPAddress(ipaddress.ip_address(text))
    except ValueError:
        pass
    if any(ch.isspace() for ch in text) or "/" in text or ":" in text:
        raise TLSConfigError(f"subject alternative name {text!r}: not a DNS name or IP address")
    return x509.DNSName(text)


def generate_self_signed(
    hosts: Sequence[str], *, valid_for: dt.timedelta = _SELF_SIGNED_VALIDITY, now: dt.datetime | None = None
) -> KeyPair:
    """A fresh ECDSA P-256 serving certificate for ``hosts``, signed by its own key.

    Meant for local development and for clusters whose APIService uses ``insecureSkipTLSVerify``;
    a certificate that changes on every start cannot be pinned in a ``caBundle``.
    """
    if not hosts:
        raise TLSConfigError("subject alternative names: at least one host is required")
    names = [parse_san(h) for h in hosts]
    key = ec.generate_private_key(ec.SECP256R1())
    start = (now or dt.datetime.now(dt.UTC)) - _BACKDATE
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0].strip()[:64])])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + valid_for)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )


def validate_key_pair(pair: KeyPair, *, source: str) -> None:
    """Raise :class:`TLSConfigError` unless the chain parses and the key belongs to its leaf."""
    try:
        chain = x509.load_pem_x509_certificates(pair.cert_pem)
    except ValueError as exc:
        raise TLSConfigError(f"{source}: certificate is not valid PEM ({exc})") from exc
    try:
        key = serialization.load_pem_private_key(pair.key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise TLSConfigError(f"{source}: private key is not an unencrypted PEM key ({exc})") from exc
    leaf_pub = (
        chain[0]
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    key_pub = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if leaf_pub != key_pub:
        raise TLSConfigError(f"{source}: private key does not match the certificate's public key")


def load_key_pair(cert_file: Path, key_file: Path) -> KeyPair:
    """Read and validate a serving pair from disk (blocking; call it off the event loop)."""
    try:
        pair = KeyPair(cert_pem=cert_file.read_bytes(), key_pem=key_file.read_bytes())
    except OSError as exc:
        raise TLSConfigError(f"{exc.filename}: cannot read ({exc.strerror})") from exc
    validate_key_pair(pair, source=f"{cert_file} + {key_file}")
    return pair


def validate_ca_bundle(pem: bytes, *, source: str) -> None:
    """Raise :class:`TLSConfigError` unless ``pem`` holds at least one certificate."""
    try:
        x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise TLSConfigError(f"{source}: not a PEM certificate bundle ({exc})") from exc


@contextlib.contextmanager
def _pem_paths(pair: KeyPair) -> Iterator[tuple[str, str]]:
    """Paths that ``SSLContext.load_cert_chain`` can read ``pair`` from.

    The stdlib only loads key material from files. On Linux an anonymous memory file keeps the key
    off every filesystem, which also works with a read-only root filesystem; elsewhere a private
    temporary directory is used and removed at once.
    """
    if sys.platform.startswith("linux") and hasattr(os, "memfd_create"):
        fds = [os.memfd_create("tls-cert"), os.memfd_create("tls-key")]
        try:
            for fd, data in zip(fds, (pair.cert_pem, pair.key_pem), strict=True):
                os.write(fd, data)
            yield f"/proc/self/fd/{fds[0]}", f"/proc/self/fd/{fds[1]}"
        finally:
            for fd in fds:
                os.close(fd)
        return
    with tempfile.TemporaryDirectory(prefix="tgi-autoscaler-tls-") as tmp:
        cert_path, key_path = Path(tmp, "tls.crt"), Path(tmp, "tls.key")
        cert_path.write_bytes(pair.cert_pem)
        key_path.touch(mode=0o600)
        key_path.write_bytes(pair.key_pem)
        yield str(cert_path), str(key_path)


def build_server_context(pair: KeyPair, client_ca_pem: bytes | None) -> ssl.SSLContext:
    """A TLS 1.2+ server context serving ``pair`` that asks for, but does not demand, a client cert.

    With a client CA, a presented certificate must chain to it or the handshake fails; requests
    without one still reach the server and can authenticate with a bearer token.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    # The server speaks HTTP/1.1 only; advertising it stops a client from attempting h2.
    ctx.set_alpn_protocols(["http/1.1"])
    with _pem_paths(pair) as (cert_path, key_path):
        ctx.load_cert_chain(cert_path, key_path)
    ctx.verify_mode = ssl.CERT_OPTIONAL
    if client_ca_pem:
        ctx.load_verify_locations(cadata=client_ca_pem.decode("ascii"))
    return ctx


class ServingTLS:
    """The serving certificate and client CA of the adapter's HTTPS listener, swappable at runtime."""

    def __init__(
        self,
        pair: KeyPair,
        *,
        cert_file: Path | None = None,
        key_file: Path | None = None,
        client_ca_pem: bytes | None = None,
    ) -> None:
        if (cert_file is None) != (key_file is None):
            raise TLSConfigError("--tls-cert-file and --tls-private-key-file must be given together")
        self._pair = pair
        self._cert_file = cert_file
        self._key_file = key_file
        self._client_ca_pem = client_ca_pem
        self._current = build_server_context(pair, client_ca_pem)
        self._listener = build_server_context(pair, client_ca_pem)
        self._listener.sni_callback = self._select_context

    @classmethod
    def from_files(cls, cert_file: Path, key_file: Path) -> ServingTLS:
        """Serve the pair in ``cert_file``/``key_file``; :meth:`reload_files` picks up changes."""
        return cls(load_key_pair(cert_file, key_file), cert_file=cert_file, key_file=key_file)

    @classmethod
    def self_signed(cls, hosts: Sequence[str]) -> ServingTLS:
        """Serve a certificate generated now for ``hosts``."""
        return cls(generate_self_signed(hosts))

    @property
    def listener_context(self) -> ssl.SSLContext:
        """The context to hand to the listening socket, once; it follows every later change."""
        return self._listener

    @property
    def key_pair(self) -> KeyPair:
        return self._pair

    @property
    def client_ca_pem(self) -> bytes | None:
        return self._client_ca_pem

    def _select_context(
        self, conn: ssl.SSLObject | ssl.SSLSocket, _server_name: str | None, _ctx: ssl.SSLContext
    ) -> None:
        # Runs inside the handshake; swapping the context swaps the certificate and the CA store
        # OpenSSL verifies the client's certificate with.
        current = self._current
        if conn.context is not current:
            conn.context = current

    async def set_client_ca(self, pem: bytes | None) -> None:
        """Trust ``pem`` (the front-proxy CA bundle) for client certificates from now on."""
        if pem == self._client_ca_pem:
            return
        if pem:
            validate_ca_bundle(pem, source="client CA bundle")
        self._current = await asyncio.to_thread(build_server_context, self._pair, pem)
        self._client_ca_pem = pem
        log.info("tls_client_ca_updated", client_ca_sha256=_digest(pem))

    async def reload_files(self) -> bool:
        """Re-read the serving files; switch to them if they changed and are a valid pair.

        A half-written rotation (new certificate, old key) is rejected and the current pair kept,
        so a later call can pick up the completed update. Returns whether the pair changed.
        """
        if self._cert_file is None or self._key_file is None:
            return False
        try:
            pair = await asyncio.to_thread(load_key_pair, self._cert_file, self._key_file)
        except TLSConfigError as exc:
            log.warning("tls_reload_rejected", error=str(exc))
            return False
        if pair == self._pair:
            return False
        self._current = await asyncio.to_thread(build_server_context, pair, self._client_ca_pem)
        self._pair = pair
        log.info("tls_serving_certificate_reloaded", sha256=pair.fingerprint)
        return True

    async def watch_files(self, interval_s: float) -> None:
        """Poll the serving files every ``interval_s`` seconds until cancelled.

        Polling content rather than watching inotify events copes with the kubelet's atomic
        symlink swap of Secret volumes, which does not touch the file names that were opened.
        """
        if self._cert_file is None:
            return
        while True:
            await asyncio.sleep(interval_s)
            await self.reload_files()


def _digest(pem: bytes | None) -> str | None:
    return hashlib.sha256(pem).hexdigest() if pem else None
