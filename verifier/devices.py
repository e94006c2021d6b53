"""Devices the verifier knows: their public keys, by device id."""

from __future__ import annotations

import sqlite3
import time

from verifier import cose


def register(db: sqlite3.Connection, device_id: str, public_key: bytes) -> None:
    """Records device_id with its SEC1 public key. Enrollment proper (signed, in the ledger) replaces this."""
    db.execute(
        "INSERT INTO devices (device_id, public_key, kid, enrolled_at) VALUES (?, ?, ?, ?)",
        (device_id, public_key, cose.key_id(public_key), int(time.time())),
    )


def public_key(db: sqlite3.Connection, device_id: str) -> bytes | None:
    row = db.execute("SELECT public_key FROM devices WHERE device_id = ?", (device_id,)).fetchone()
    return None if row is None else bytes(row["public_key"])
