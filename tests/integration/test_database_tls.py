"""The functions' DSN verifies the database server for real: libpq (psycopg's binary wheel, as the layer ships it)
against a TLS endpoint that speaks PostgreSQL's SSLRequest and presents a certificate from a CA of the test's own.
The endpoint answers every verified handshake with a FATAL error of its own, which is how the test tells that
TLS succeeded."""

import json
import socket
import ssl
import struct
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sluice.adapters.timescale import dsn_from_secret, root_certificate_file

# What the endpoint says once a client completed the TLS handshake.
VERIFIED = "tls handshake completed"
_SSL_REQUEST = struct.pack("!ii", 8, 80877103)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate_files(folder: Path) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate it signed for the DNS name ``localhost``: (ca.pem, server.pem, key.pem)."""
    now = datetime.now(UTC)
    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("sluice test CA"))
        .issuer_name(_name("sluice test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = folder / "ca.pem", folder / "server.pem", folder / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return paths


def _fatal(message: str) -> bytes:
    """A PostgreSQL ErrorResponse."""
    fields = b"SFATAL\0C08000\0M" + message.encode() + b"\0\0"
    return b"E" + struct.pack("!i", 4 + len(fields)) + fields


@pytest.fixture
def tls_endpoint(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A port on 127.0.0.1 that accepts PostgreSQL's SSLRequest with a certificate for ``localhost``; and the CA."""
    ca, certificate, key = _certificate_files(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate, key)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stopping = threading.Event()

    def serve() -> None:
        while not stopping.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            with client:
                client.settimeout(5)
                if client.recv(8) != _SSL_REQUEST:
                    continue
                client.sendall(b"S")
                try:
                    with context.wrap_socket(client, server_side=True) as secured:
                        secured.recv(1024)  # the startup message
                        secured.sendall(_fatal(VERIFIED))
                except (ssl.SSLError, OSError):
                    continue  # the client refused the certificate

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    yield listener.getsockname()[1], ca
    stopping.set()
    server.join(timeout=5)
    listener.close()


def connect(port: int, host: str, root_certificate: str, **secret: object) -> str:
    """Connect with the DSN the functions build from a secret; return libpq's error (the endpoint never admits)."""
    dsn = dsn_from_secret(
        json.dumps({"host": host, "port": port, "username": "sluice", "password": "pw"} | secret), root_certificate
    )
    with pytest.raises(psycopg.OperationalError) as refused:
        psycopg.connect(f"{dsn} gssencmode=disable connect_timeout=5")
    return str(refused.value)


def test_a_server_whose_certificate_the_configured_ca_signed_is_reached(tls_endpoint: tuple[int, Path]) -> None:
    port, ca = tls_endpoint

    assert VERIFIED in connect(port, "localhost", str(ca))


def test_a_server_whose_ca_the_platforms_trust_store_lacks_is_refused(tls_endpoint: tuple[int, Path]) -> None:
    port, _ = tls_endpoint

    refused = connect(port, "localhost", root_certificate_file("system"))

    assert "certificate verify failed" in refused
    assert VERIFIED not in refused


def test_a_certificate_for_another_name_is_refused_even_from_a_trusted_ca(tls_endpoint: tuple[int, Path]) -> None:
    port, ca = tls_endpoint

    refused = connect(port, "127.0.0.1", str(ca))  # the certificate names localhost only

    assert "does not match host name" in refused
    assert VERIFIED not in refused


def test_only_a_secret_that_says_so_skips_verification(tls_endpoint: tuple[int, Path]) -> None:
    # sslmode=require, the old default, encrypts to whoever answers: an untrusted certificate passes.
    port, _ = tls_endpoint

    assert VERIFIED in connect(port, "127.0.0.1", "system", sslmode="require")


def test_system_means_the_ca_bundle_of_the_platforms_trust_store(
    tls_endpoint: tuple[int, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a platform whose trust store (SSL_CERT_FILE, where OpenSSL looks first) holds the server's CA
    port, ca = tls_endpoint
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))

    assert VERIFIED in connect(port, "localhost", root_certificate_file("system"))
