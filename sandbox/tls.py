"""The sandbox's certificate authority and its mutual-TLS listener (WeChat ``/secapi/``).

One ``SandboxCA`` per sandbox issues the TLS listener's server certificate (for 127.0.0.1,
localhost and ::1) and one client certificate per WeChat merchant (the merchant API certificate,
whose key is the merchant's private key). The TLS listener requires a client certificate issued
by this CA (``CERT_REQUIRED``): a connection without one fails in the handshake, as WeChat drops
it. Handshakes run on the request's worker thread, so a slow or silent client blocks nobody.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import ssl
import tempfile
import threading
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from http.server import ThreadingHTTPServer
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sandbox.keys import generate_rsa_key

DEFAULT_TLS_HOSTS = ("127.0.0.1", "localhost", "::1")
HANDSHAKE_TIMEOUT = 10.0  # real seconds; also the idle timeout of a kept-alive TLS connection


def _name(common_name: str, org: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


class SandboxCA:
    """A private CA. Its key is always generated fresh (never from a ``KeyPool``), so no merchant
    key handed out by a pool can also sign certificates."""

    def __init__(self) -> None:
        self._key = generate_rsa_key()
        name = _name("paycore sandbox CA", "paycore sandbox")
        now = datetime.now(UTC)  # certificates are checked against real time by TLS stacks
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self._key, hashes.SHA256())
        )
        self.pem = pem(self.cert)

    def _issue(
        self, public_key: rsa.RSAPublicKey, subject: x509.Name, usage: x509.ObjectIdentifier, days: int
    ) -> x509.CertificateBuilder:
        now = datetime.now(UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )

    def issue_client(self, key: rsa.RSAPrivateKey, common_name: str, org: str) -> x509.Certificate:
        """A client certificate for ``key`` (e.g. a WeChat merchant API certificate, CN = mchid)."""
        builder = self._issue(key.public_key(), _name(common_name, org), ExtendedKeyUsageOID.CLIENT_AUTH, 5 * 365)
        return builder.sign(self._key, hashes.SHA256())

    def issue_server(self, hosts: Iterable[str]) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
        hosts = list(hosts)
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        key = generate_rsa_key()
        builder = self._issue(
            key.public_key(), _name(hosts[0], "paycore sandbox gateway"), ExtendedKeyUsageOID.SERVER_AUTH, 825
        ).add_extension(x509.SubjectAlternativeName(names), critical=False)
        return builder.sign(self._key, hashes.SHA256()), key

    def server_context(self, hosts: Iterable[str]) -> ssl.SSLContext:
        """TLS server context: our server certificate, client certificates required from this CA."""
        cert, key = self.issue_server(hosts)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        with tempfile.TemporaryDirectory(prefix="sandbox-tls-") as folder:  # ssl loads chains from files only
            cert_path, key_path = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
            with open(cert_path, "w", encoding="ascii") as out:
                out.write(pem(cert))
            with open(os.open(key_path, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as out:
                out.write(key_pem)
            context.load_cert_chain(cert_path, key_path)
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cadata=self.pem)
        return context


class TLSServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer whose connections are TLS, handshaken on each request's own thread."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: Any, context: ssl.SSLContext) -> None:
        super().__init__(address, handler)
        self.ssl_context = context
        self._lock = threading.Lock()
        self.handshake_failures = 0

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(HANDSHAKE_TIMEOUT)
        try:
            connection = self.ssl_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            with self._lock:  # no client certificate, or one our CA did not issue: dropped
                self.handshake_failures += 1
            return
        try:
            self.RequestHandlerClass(connection, client_address, self)
        finally:
            with contextlib.suppress(OSError):
                connection.close()

    def shutdown_request(self, request: Any) -> None:
        # ``request`` was detached by wrap_socket (the TLS socket closed itself) unless the
        # handshake never started; closing a detached socket is harmless.
        with contextlib.suppress(OSError):
            request.shutdown(socket.SHUT_WR)
        request.close()
