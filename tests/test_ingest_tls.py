"""Forward over TLS, with the receiver's real parts (log, registry, intake) and no hub around."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import ssl
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ingest_client import Forward, packed
from lakehub.server.config import Settings
from lakehub.server.db import Database, upgrade
from lakehub.server.identity.users import Directory
from lakehub.server.ingest import forward
from lakehub.server.ingest.intake import Intake
from lakehub.server.ingest.log import LogWriter, scan, seg_name
from lakehub.server.ingest.registry import Registry
from lakehub.server.ingest.server import tls_context
from lakehub.server.vault import Vault


def self_signed(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@pytest.fixture
def intake(tmp_path: Path) -> tuple[Intake, str]:
    url = f"sqlite:///{tmp_path / 'meta.sqlite'}"
    upgrade(url)
    directory = Directory(Database(url), Vault(tmp_path), lake=None)  # type: ignore[arg-type]
    directory.create("tls", actor="test", provision=False, password="a-long-password")
    reg = Registry(directory)
    reg.create_stream("tlsstream", "tls", "records", ["tls.*"], "test")
    key = reg.create_source("tlssrc", "tls", ["tls.*"], "test").key
    log = LogWriter(tmp_path / "log", 1 << 20, 1 << 30)
    log.open((0, 0))
    assert key is not None
    return Intake(directory, log), key


def test_forward_over_tls_is_acknowledged_after_the_handshake(
    intake: tuple[Intake, str], tmp_path: Path
) -> None:
    receiver, shared_key = intake
    cert, key = self_signed(tmp_path)
    server_ctx = tls_context(
        Settings(data_dir=tmp_path, forward_tls_cert=cert, forward_tls_key=key)
    )
    assert server_ctx is not None
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(forward.serve(receiver, "127.0.0.1", 0, server_ctx))
    port = server.sockets[0].getsockname()[1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        fw = Forward(port, key=shared_key, tls=ssl.create_default_context(cafile=str(cert)))
        assert fw.pong[:2] == ["PONG", True]
        fw.send_raw(packed("tls.x", [{"n": 1}, {"n": 2}], chunk="tls-1"))
        assert fw.read() == {"ack": "tls-1"}
        fw.close()
        # a client that does not speak TLS gets nowhere
        plain = socket.create_connection(("127.0.0.1", port), timeout=10)
        plain.sendall(packed("tls.x", [{"n": 3}], chunk="plain"))
        plain.settimeout(10)
        assert plain.recv(100) == b""
        plain.close()
    finally:
        loop.call_soon_threadsafe(server.close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        receiver.log.close()
    chunks = [e.chunk for _, e in scan(tmp_path / "log" / seg_name(1))]
    assert chunks == ["tls-1"]
