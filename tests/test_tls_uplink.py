"""The board's uplink over TLS: it verifies the verifier's certificate and refuses anything else."""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hardware.virtual_board import VirtualBoard
from tests.conftest import RunningVerifier

PAST = int(time.time()) - 86400


def _certificate(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[str, ec.EllipticCurvePrivateKey] | None, ca: bool
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, (issuer or (subject, key))[0])]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
    return builder.sign((issuer or (subject, key))[1], hashes.SHA256())


@pytest.fixture
def tls_front(tmp_path: Path, verifier: RunningVerifier) -> Iterator[tuple[str, bytes]]:
    """A TLS endpoint on 127.0.0.1 forwarding to the verifier; yields (https URL, CA certificate DER)."""
    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("wattproof test CA", ca_key, None, ca=True)
    server = _certificate("localhost", server_key, ("wattproof test CA", ca_key), ca=False)
    (tmp_path / "server.pem").write_bytes(server.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "server.key").write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "server.pem", tmp_path / "server.key")
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    port = listener.getsockname()[1]
    backend = ("127.0.0.1", int(verifier.url.rsplit(":", 1)[1]))
    stop = threading.Event()

    def pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        try:
            dst.shutdown(socket.SHUT_WR)  # half-close: the other direction may still be talking
        except OSError:
            pass

    def relay(conn: socket.socket, upstream: socket.socket) -> None:
        # Both sockets are closed only once neither direction uses them: a socket closed
        # under a thread still in recv or sendall frees its descriptor for the next open()
        # (the test's own SQLite connection), and the late write would land in that file.
        one = threading.Thread(target=pipe, args=(conn, upstream), daemon=True)
        other = threading.Thread(target=pipe, args=(upstream, conn), daemon=True)
        one.start()
        other.start()
        one.join()
        other.join()
        conn.close()
        upstream.close()

    def serve() -> None:
        while not stop.is_set():
            try:
                raw, _ = listener.accept()
                conn = context.wrap_socket(raw, server_side=True)
            except (TimeoutError, ssl.SSLError, OSError):
                continue
            upstream = socket.create_connection(backend)
            threading.Thread(target=relay, args=(conn, upstream), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"https://localhost:{port}", ca.public_bytes(serialization.Encoding.DER)
    stop.set()
    thread.join(timeout=2)
    listener.close()


def _board(tmp_path: Path, name: str, url: str, ca: bytes | None, verifier: RunningVerifier) -> VirtualBoard:
    cfg = {"device_id": name, "verifier": url, "meter": {"model": "s0"}, "packet_readings": 3, "backoff_s": 1}
    # On the ESP32, mbedTLS takes its buffers from the ESP-IDF heap, outside MicroPython's; on the
    # unix port they come out of the Python heap, so the virtual board needs room for them on top.
    board = VirtualBoard(tmp_path / name, cfg, speed=600, virtual_epoch=PAST, heap="160K")
    if ca is not None:
        (board.flash / "ca.der").write_bytes(ca)
    board.start()
    deadline = time.monotonic() + 20
    while not (board.flash / "device.pub").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    verifier.register(name, board.flash)
    return board


def _stored(verifier: RunningVerifier, name: str) -> int:
    import sqlite3

    with sqlite3.connect(verifier.db) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM packets WHERE device_id = ?", (name,)).fetchone()[0])


def test_packets_travel_over_verified_tls(
    tmp_path: Path, verifier: RunningVerifier, tls_front: tuple[str, bytes]
) -> None:
    url, ca = tls_front
    board = _board(tmp_path, "tls-good", url, ca, verifier)
    deadline = time.monotonic() + 90
    while _stored(verifier, "tls-good") < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    board.stop()
    assert _stored(verifier, "tls-good") >= 2, board.console()[-2000:]


@pytest.mark.parametrize("case", ["other CA", "no CA"])
def test_an_unverifiable_server_gets_nothing_and_the_board_keeps_its_packets(
    tmp_path: Path, verifier: RunningVerifier, tls_front: tuple[str, bytes], case: str
) -> None:
    url, _ = tls_front
    other_key = ec.generate_private_key(ec.SECP256R1())
    other = _certificate("someone else", other_key, None, ca=True).public_bytes(serialization.Encoding.DER)
    board = _board(tmp_path, "tls-bad", url, other if case == "other CA" else None, verifier)
    deadline = time.monotonic() + 30
    while len(list((board.flash / "out").glob("*.pkt"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1)
    board.stop()
    assert _stored(verifier, "tls-bad") == 0
    assert len(list((board.flash / "out").glob("*.pkt"))) >= 2, "packets are kept for later"
    assert "Traceback" not in board.console()
