"""Enrolling devices in tests the real way: a registered installer signs, the device proves its key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from provisioning.enrollment import Installer, PopSigner, sign_on_virtual_board
from tests import forge
from verifier import auth, storage
from verifier.devices import identity, lifecycle
from verifier.wire import strict_cbor

INSTALLER = Installer.generate("test-installer")


def installer_ready(conn: storage.Connection) -> Installer:
    """Registers the test installer (once per database), as an admin would."""
    if conn.execute("SELECT 1 FROM installers WHERE name = ?", (INSTALLER.name,)).fetchone() is None:
        with storage.transaction(conn):
            lifecycle.register_installer(conn, INSTALLER.name, INSTALLER.public_key, "test-admin")
    return INSTALLER


def record(device_id: str, point: bytes, **extra: Any) -> dict[str, Any]:
    return {
        "device_id": device_id,
        "public_key": point,
        "role": "producer",
        "technology": "solar-pv",
        "capacity_w": 50_000,
        "grid_area": "test-area",
        "meter_model": "test-meter",
        "meter_serial": f"serial-{device_id}",  # one meter per device: a shared meter is refused
        **extra,
    }


def enroll(conn: storage.Connection, device: dict[str, Any], sign_pop: PopSigner) -> int:
    installer = installer_ready(conn)
    with storage.transaction(conn):
        challenge = lifecycle.new_challenge(conn)
    pop = sign_pop(identity.pop_message(device, challenge))
    request = {
        "device": device,
        "challenge": challenge,
        "pop": pop,
        "installer": installer.name,
        "installer_sig": installer.sign(identity.installer_message(device, challenge, pop)),
    }
    with storage.transaction(conn):
        index, _ = lifecycle.enroll(conn, strict_cbor.loads(strict_cbor.dumps(request)))
    return index


def es256_signer(key: ec.EllipticCurvePrivateKey) -> PopSigner:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    def sign(message: bytes) -> bytes:
        r, s = decode_dss_signature(key.sign(message, ec.ECDSA(hashes.SHA256())))
        s = min(s, forge.N - s)
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    return sign


def enroll_key(db_path: Path | str, device_id: str, key: ec.EllipticCurvePrivateKey, **extra: Any) -> int:
    conn = storage.connect(db_path)
    try:
        return enroll(conn, record(device_id, forge.point(key), **extra), es256_signer(key))
    finally:
        conn.close()


def enroll_board(db_path: Path | str, device_id: str, flash: Path, **extra: Any) -> int:
    """Enrolls a virtual board: its public key from its flash, its proof signed on the board."""
    conn = storage.connect(db_path)
    try:
        return enroll(
            conn, record(device_id, (flash / "device.pub").read_bytes(), **extra), sign_on_virtual_board(flash)
        )
    finally:
        conn.close()


def api_key(db_path: Path | str, role: str, installer: str | None = None) -> str:
    """A key of the role; an installer key acts for the test installer (registered here) unless named."""
    conn = storage.connect(db_path)
    try:
        if role == "installer" and installer is None:
            installer = installer_ready(conn).name
        return auth.create_key(conn, f"test-{role}", role, installer=installer)
    finally:
        conn.close()
