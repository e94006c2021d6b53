"""Devices and installers: enrollment, revocation and key rotation, each a ledger entry.

Enrollment (docs/devices.md) needs two signatures over the same device record:
- the installer's Ed25519 signature, by a key an admin registered (who vouches for the
  installation: the meter, the place, the role);
- the device's proof of possession, an ES256 signature by the device key over the record
  and a fresh single-use challenge from the verifier (the key is on that board, now).
Plain functions over a connection, called inside a transaction; views only parse.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Sequence
from typing import Any

from verifier.devices import identity
from verifier.log import ledger
from verifier.storage import Connection
from verifier.wire import cose
from verifier.wire.problems import Problem

CHALLENGE_TTL_S = 600
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


STATUSES = ("active", "revoked")  # a device's, as the devices table keeps it


def key_index(db: Connection, device_id: str) -> int:
    """The ledger entry that set the device's current key: its enrollment or its last rotation."""
    found = ledger.last_index(db, ("enroll", "ocmf-enroll", "rotate"), device_id)
    if found is None:
        raise LookupError(f"device {device_id} was never enrolled")
    return found


def keys(db: Connection, device_id: str) -> list[tuple[int, bytes]]:
    """The device's keys in order: (the ledger entry that set it, the key), its enrollment's
    first, then each rotation's. A packet is signed by the key its entry found in force: the
    last one set by an entry before the packet's."""
    return [
        (e.index, bytes(e.body["device"]["public_key"] if e.kind == "enroll" else e.body["new_public_key"]))
        for e in ledger.of_device(db, device_id, ("enroll", "rotate"))
    ]


# -- installers -----------------------------------------------------------------------------


def register_installer(db: Connection, name: str, public_key: bytes, by: str) -> int:
    if not _NAME.fullmatch(name):
        raise Problem("invalid-field", "name", "installer names match [a-z0-9][a-z0-9._-]{0,63}")
    if len(public_key) != 32:
        raise Problem("invalid-field", "public_key", "expected a 32-byte Ed25519 public key")
    if db.execute("SELECT 1 FROM installers WHERE name = ?", (name,)).fetchone():
        raise Problem("already-exists", "name", f"installer {name} is already registered")
    idx = ledger.append(db, "installer", None, {"name": name, "public_key": public_key, "by": by})
    db.execute(
        "INSERT INTO installers (name, public_key, status, ledger_idx) VALUES (?, ?, 'active', ?)",
        (name, public_key, idx),
    )
    return idx


def revoke_installer(db: Connection, name: str, by: str) -> int:
    if db.execute("SELECT 1 FROM installers WHERE name = ? AND status = 'active'", (name,)).fetchone() is None:
        raise Problem("not-found", "name", f"no active installer {name}")
    idx = ledger.append(db, "installer-revoke", None, {"name": name, "by": by})
    db.execute("UPDATE installers SET status = 'revoked' WHERE name = ?", (name,))
    return idx


# -- enrollment -----------------------------------------------------------------------------


def new_challenge(db: Connection) -> bytes:
    return new_challenges(db, 1)[0]


MAX_CHALLENGES = 1000  # challenges in one request, as enrollments in one batch


def new_challenges(db: Connection, count: int) -> list[bytes]:
    """count single-use challenges (bulk enrollment: one per board, each signed by its key)."""
    now = int(time.time())
    db.execute("DELETE FROM challenges WHERE created_at < ?", (now - CHALLENGE_TTL_S,))
    nonces = [os.urandom(16) for _ in range(count)]
    db.executemany("INSERT INTO challenges (nonce, created_at) VALUES (?, ?)", [(n, now) for n in nonces])
    return nonces


def _take_challenge(db: Connection, nonce: bytes) -> None:
    row = db.execute("SELECT created_at, used FROM challenges WHERE nonce = ?", (nonce,)).fetchone()
    if row is None or row[1] or row[0] < time.time() - CHALLENGE_TTL_S:
        raise Problem("bad-challenge", "challenge", "unknown, used or expired: ask for a new one")
    db.execute("UPDATE challenges SET used = 1 WHERE nonce = ?", (nonce,))


def enroll(db: Connection, request: Any) -> tuple[int, bool]:
    """Enrolls a device from an enrollment request; returns (ledger index, already_enrolled)."""
    if not isinstance(request, dict) or set(request) != {"device", "challenge", "pop", "installer", "installer_sig"}:
        raise Problem("invalid-field", "enrollment", "expected device, challenge, pop, installer, installer_sig")
    device = identity.check_device_record(request["device"])
    challenge, pop, installer, sig = (
        request["challenge"],
        request["pop"],
        request["installer"],
        request["installer_sig"],
    )
    for name in ("challenge", "pop", "installer_sig"):
        if not isinstance(request[name], bytes):
            raise Problem("invalid-field", name, "expected a byte string")
    if not isinstance(installer, str) or not _NAME.fullmatch(installer):
        raise Problem("invalid-field", "installer", "expected an installer name (text)")
    known = db.execute(
        "SELECT public_key, enrolled_idx, status FROM devices WHERE device_id = ?", (device["device_id"],)
    ).fetchone()
    if known is not None:
        if known[2] == "revoked":
            raise Problem(
                "already-enrolled",
                "device.device_id",
                f"device id {device['device_id']} was revoked and is never used again (its history stays in the"
                " ledger): enroll the board under a new device id",
            )
        if bytes(known[0]) == device["public_key"]:
            return int(known[1]), True  # the same device and key again: idempotent
        raise Problem("already-enrolled", "device.device_id", "this device id is enrolled with another key")
    row = db.execute("SELECT public_key FROM installers WHERE name = ? AND status = 'active'", (installer,)).fetchone()
    if row is None:
        raise Problem("unknown-installer", "installer", "not an installer an admin registered, or revoked")
    meter_free(db, device)
    identity.check_installer_sig(bytes(row[0]), device, challenge, pop, sig)
    identity.check_es256(device["public_key"], identity.pop_message(device, challenge), pop, "pop")
    kid = cose.key_id(device["public_key"])
    if db.execute("SELECT 1 FROM devices WHERE kid = ?", (kid,)).fetchone():
        raise Problem("already-enrolled", "device.public_key", "this key belongs to another device")
    # Every check above writes nothing: a refused request in a batch leaves no trace.
    _take_challenge(db, challenge)
    idx = ledger.append(
        db,
        "enroll",
        device["device_id"],
        {"device": device, "challenge": challenge, "pop": pop, "installer": installer, "installer_sig": sig},
    )
    attributes = {k: v for k, v in device.items() if k not in ("device_id", "public_key", "role")}
    add(db, device, attributes, idx)
    return idx, False


MAX_BATCH = 1000  # enrollments in one request
MAX_BATCH_BYTES = 4 << 20  # a request of them (an enrollment is about 400 bytes, a charger's up to 2 KB)


def enroll_many(db: Connection, requests: list[Any]) -> list[tuple[int, bool] | Problem]:
    """Bulk enrollment, inside one write transaction: each request as enroll() takes it, with
    its own board's proof and installer's signature; a refused one is its Problem and leaves
    no trace (enroll writes only after every check), the others are enrolled."""
    results: list[tuple[int, bool] | Problem] = []
    for request in requests:
        try:
            results.append(enroll(db, request))
        except Problem as e:
            results.append(e)
    return results


def add(db: Connection, device: dict[str, Any], attributes: dict[str, Any], enrolled_idx: int) -> None:
    """Inside a write transaction, after its enrollment entry: the device's row, and its meter's
    when the meter has a serial of its own (one device per meter)."""
    db.execute(
        "INSERT INTO devices (device_id, public_key, kid, role, attributes, status, enrolled_idx)"
        " VALUES (?, ?, ?, ?, ?, 'active', ?)",
        (device["device_id"], device["public_key"], cose.key_id(device["public_key"]), device["role"],
         json.dumps(attributes), enrolled_idx),
    )  # fmt: skip
    if device["meter_serial"] != identity.UNKNOWN_SERIAL:
        db.execute(
            "INSERT INTO meters (meter_model, meter_serial, device_id) VALUES (?, ?, ?)",
            (device["meter_model"], device["meter_serial"], device["device_id"]),
        )


def key_taken(db: Connection, public_key: bytes) -> bool:
    """Whether a device (enrolled or revoked) has this key."""
    return db.execute("SELECT 1 FROM devices WHERE kid = ?", (cose.key_id(public_key),)).fetchone() is not None


def row_of(db: Connection, device_id: str) -> tuple[bytes, int, str, str] | None:
    """(public key, enrollment entry, status, role) of a device, or None."""
    row = db.execute(
        "SELECT public_key, enrolled_idx, status, role FROM devices WHERE device_id = ?", (device_id,)
    ).fetchone()
    return None if row is None else (bytes(row[0]), int(row[1]), str(row[2]), str(row[3]))


def of_role(db: Connection, role: str) -> list[tuple[str, bytes, dict[str, Any], str]]:
    """(device id, public key, attributes, status) of every device of a role, enrolled or revoked."""
    rows = db.execute(
        "SELECT device_id, public_key, attributes, status FROM devices WHERE role = ? ORDER BY enrolled_idx", (role,)
    ).fetchall()
    return [(str(r[0]), bytes(r[1]), json.loads(r[2]), str(r[3])) for r in rows]


def meter_free(db: Connection, device: dict[str, Any]) -> None:
    """Refuses a meter (model and serial) that an active device measures already: two
    devices on one meter would count its energy twice. A revoked device's meter is free
    again (a board replaced on the same meter). Meters without a readable serial cannot be
    told apart and are not checked (docs/devices.md)."""
    if device["meter_serial"] == identity.UNKNOWN_SERIAL:
        return
    row = db.execute(
        "SELECT device_id FROM meters WHERE meter_model = ? AND meter_serial = ?",
        (device["meter_model"], device["meter_serial"]),
    ).fetchone()
    if row is not None:
        raise Problem(
            "meter-in-use",
            "device.meter_serial",
            f"meter {device['meter_model']} {device['meter_serial']} is enrolled on active device {row[0]}"
            " (a meter whose bus gives no serial number: enter its nameplate serial with `wattproof provision"
            " --meter-serial`): revoke that device first if its board was replaced, or check the serial",
        )


def enrolled_by(db: Connection, device_id: str) -> str | None:
    """The installer whose signature enrolled the device (None: no such device)."""
    row = db.execute("SELECT enrolled_idx FROM devices WHERE device_id = ?", (device_id,)).fetchone()
    if row is None:
        return None
    installer: str = ledger.entry(db, int(row[0])).body["installer"]
    return installer


def revoke(db: Connection, device_id: str, reason: str, by: str, installer: str | None = None) -> int:
    """Revokes a device. With installer (an installer's API key), only a device that installer
    enrolled: an installer answers for its own installations, an admin for all."""
    row = db.execute("SELECT status FROM devices WHERE device_id = ?", (device_id,)).fetchone()
    if row is None:
        raise Problem("not-found", "device_id", f"no device {device_id}")
    if installer is not None and enrolled_by(db, device_id) != installer:
        raise Problem(
            "forbidden",
            "device_id",
            f"device {device_id} was enrolled by another installer: its installer or an admin revokes it",
        )
    if row[0] == "revoked":
        raise Problem("device-revoked", "device_id", "already revoked")
    idx = ledger.append(db, "revoke", device_id, {"device_id": device_id, "reason": reason[:200], "by": by})
    db.execute("UPDATE devices SET status = 'revoked' WHERE device_id = ?", (device_id,))
    db.execute("DELETE FROM meters WHERE device_id = ?", (device_id,))  # free for a replacement board
    return idx


def clear_flag(db: Connection, device_id: str, reason: str, by: str) -> int:
    """Ends a device's quarantine after an equivocation was looked into (an admin's decision,
    recorded with its reason); its packets are accepted again from where its chain stands."""
    row = db.execute("SELECT status, flagged FROM devices WHERE device_id = ?", (device_id,)).fetchone()
    if row is None:
        raise Problem("not-found", "device_id", f"no device {device_id}")
    if not row[1]:
        raise Problem("unprocessable", "device_id", f"device {device_id} is not flagged")
    if not reason.strip():
        raise Problem("invalid-field", "reason", "say what was found (it goes into the ledger)")
    idx = ledger.append(db, "flag-clear", device_id, {"device_id": device_id, "reason": reason[:200], "by": by})
    db.execute("UPDATE devices SET flagged = 0 WHERE device_id = ?", (device_id,))
    return idx


def rotate(db: Connection, device_id: str, request: Any) -> int:
    """Replaces a device's key: the old key signs the new one, the new key proves possession."""
    fields = {"new_public_key": bytes, "old_sig": bytes, "new_sig": bytes, "key_index": int}
    if not isinstance(request, dict) or set(request) != set(fields):
        raise Problem("invalid-field", "rotation", "expected new_public_key, old_sig, new_sig, key_index")
    for name, kind in fields.items():
        if not isinstance(request[name], kind) or isinstance(request[name], bool):
            raise Problem("invalid-field", name, f"expected {'a byte string' if kind is bytes else 'an integer'}")
    row = db.execute("SELECT public_key, status FROM devices WHERE device_id = ?", (device_id,)).fetchone()
    if row is None:
        raise Problem("unknown-device", "device_id", f"device {device_id} is not enrolled")
    if row[1] != "active":
        raise Problem("device-revoked", "device_id", "a revoked device cannot rotate its key")
    new_key = request["new_public_key"]
    try:
        cose.public_key_from_point(new_key)
    except (ValueError, TypeError):
        raise Problem("invalid-field", "new_public_key", "expected an uncompressed P-256 point") from None
    current = key_index(db, device_id)
    if request["key_index"] != current:
        raise Problem(
            "stale-key-rotation",
            "key_index",
            f"the device's key was set by ledger entry {current}, not {request['key_index']}: sign a rotation"
            " of the current key (GET /v1/devices/{id} gives key_ledger_index)",
        )
    message = identity.rotation_message(device_id, new_key, cose.key_id(bytes(row[0])), current)
    identity.check_es256(bytes(row[0]), message, request["old_sig"], "old_sig")
    identity.check_es256(new_key, message, request["new_sig"], "new_sig")
    kid = cose.key_id(new_key)
    if db.execute("SELECT 1 FROM devices WHERE kid = ?", (kid,)).fetchone():
        raise Problem("already-enrolled", "new_public_key", "this key is already in use")
    idx = ledger.append(db, "rotate", device_id, {"device_id": device_id, **request})
    db.execute("UPDATE devices SET public_key = ?, kid = ? WHERE device_id = ?", (new_key, kid, device_id))
    return idx


# -- what the API shows of devices -----------------------------------------------------------


def _shown(db: Connection, row: Any) -> dict[str, Any]:
    return {
        "device_id": row["device_id"],
        "role": row["role"],
        "status": row["status"],
        "flagged": bool(row["flagged"]),
        "fingerprint": identity.fingerprint(bytes(row["public_key"])),
        "key_id": bytes(row["kid"]).hex(),
        "enrolled_ledger_index": int(row["enrolled_idx"]),
        "key_ledger_index": key_index(db, row["device_id"]),
        **json.loads(row["attributes"]),
    }


_COLUMNS = "device_id, role, status, flagged, public_key, kid, enrolled_idx, attributes"


def exists(db: Connection, device_id: str) -> bool:
    return db.execute("SELECT 1 FROM devices WHERE device_id = ?", (device_id,)).fetchone() is not None


def describe(db: Connection, device_id: str) -> dict[str, Any]:
    """A device as the API shows it; LookupError if it was never enrolled."""
    row = db.execute(f"SELECT {_COLUMNS} FROM devices WHERE device_id = ?", (device_id,)).fetchone()
    if row is None:
        raise LookupError(f"no device {device_id}")
    return _shown(db, row)


def page(db: Connection, after: str | None, limit: int) -> tuple[list[dict[str, Any]], str | None]:
    """Devices in id order after the cursor, and the next page's cursor (None at the end)."""
    rows = db.execute(
        f"SELECT {_COLUMNS} FROM devices WHERE device_id > ? ORDER BY device_id LIMIT ?", (after or "", limit + 1)
    ).fetchall()
    out = [_shown(db, r) for r in rows[:limit]]
    return out, (out[-1]["device_id"] if len(rows) > limit else None)


def packet_summary(db: Connection, device_id: str) -> dict[str, Any]:
    """How many packets the device has in the ledger, and the last one's sequence number."""
    count, last = db.execute("SELECT COUNT(*), MAX(seq) FROM packets WHERE device_id = ?", (device_id,)).fetchone()
    return {"packets": int(count), "last_seq": None if last is None else int(last)}


def census(db: Connection) -> dict[str, dict[str, int]]:
    """How many devices of each role are in each state: active, revoked, and flagged (an
    equivocation under review) counted apart from the active ones."""
    out: dict[str, dict[str, int]] = {}
    for role, status, flagged, n in db.execute(
        "SELECT role, status, flagged, COUNT(*) FROM devices GROUP BY role, status, flagged"
    ):
        state = "flagged" if flagged and status == "active" else str(status)
        counts = out.setdefault(str(role), {"active": 0, "flagged": 0, "revoked": 0})
        counts[state] = counts.get(state, 0) + int(n)
    return out


def history(db: Connection, device_id: str) -> list[dict[str, Any]]:
    """The device's own ledger entries about the device itself, in order: its enrollment, key
    rotations, account, communities, revocation, flags (not its packets or issuances)."""
    return [{"index": idx, "kind": kind} for idx, kind in ledger.kinds_of_device(db, device_id, ("packet", "issuance"))]


def packets(db: Connection, device_id: str, before: int | None, limit: int) -> list[dict[str, Any]]:
    """The device's packets, newest first, before seq (None: from the last)."""
    rows = db.execute(
        "SELECT seq, ledger_idx, reading_count, first_ts, last_ts, received_at FROM packets"
        " WHERE device_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?",
        (device_id, 2**62 if before is None else before, limit),
    ).fetchall()
    return [
        {"seq": int(r[0]), "ledger_index": int(r[1]), "readings": int(r[2]), "first_ts": int(r[3]),
         "last_ts": int(r[4]), "received_at": int(r[5])}
        for r in rows
    ]  # fmt: skip


def public_key(db: Connection, device_id: str) -> bytes:
    """A device's current public key (a P-256 point, or a third-party charger's SPKI)."""
    row = db.execute("SELECT public_key FROM devices WHERE device_id = ?", (device_id,)).fetchone()
    if row is None:
        raise LookupError(f"no device {device_id}")
    return bytes(row[0])


def role_and_status(db: Connection, device_id: str) -> tuple[str, str] | None:
    """A device's role and status (active, revoked), or None if it was never enrolled."""
    row = db.execute("SELECT role, status FROM devices WHERE device_id = ?", (device_id,)).fetchone()
    return None if row is None else (str(row[0]), str(row[1]))


def role_of(db: Connection, device_id: str) -> str | None:
    """A device's role, or None if it was never enrolled."""
    found = role_and_status(db, device_id)
    return None if found is None else found[0]


def roles_of(db: Connection, device_ids: Sequence[str]) -> dict[str, str]:
    """The roles of these devices, by id (those never enrolled left out), a few hundred a query."""
    out: dict[str, str] = {}
    ids = list(device_ids)
    for at in range(0, len(ids), 500):
        chunk = ids[at : at + 500]
        marks = ", ".join("?" * len(chunk))
        for device_id, role in db.execute(f"SELECT device_id, role FROM devices WHERE device_id IN ({marks})", chunk):
            out[str(device_id)] = str(role)
    return out


def attributes_of(db: Connection, device_id: str) -> dict[str, Any]:
    """What the devices table keeps of a device's record beside its id, key and role;
    LookupError if it was never enrolled."""
    row = db.execute("SELECT attributes FROM devices WHERE device_id = ?", (device_id,)).fetchone()
    if row is None:
        raise LookupError(f"no device {device_id}")
    found: dict[str, Any] = json.loads(row[0])
    return found


def enrolled_index(db: Connection, device_id: str) -> int:
    """The ledger entry that enrolled a device; LookupError if none did."""
    row = db.execute("SELECT enrolled_idx FROM devices WHERE device_id = ?", (device_id,)).fetchone()
    if row is None:
        raise LookupError(f"no device {device_id}")
    return int(row[0])


def active_of_roles(db: Connection, roles: Sequence[str]) -> list[str]:
    """The active devices of these roles, by id."""
    marks = ", ".join("?" * len(roles))
    rows = db.execute(
        f"SELECT device_id FROM devices WHERE role IN ({marks}) AND status = 'active' ORDER BY device_id", tuple(roles)
    ).fetchall()
    return [str(r[0]) for r in rows]


def installer_active(db: Connection, name: str) -> bool:
    """Whether an installer of this name is registered and not revoked."""
    return db.execute("SELECT 1 FROM installers WHERE name = ? AND status = 'active'", (name,)).fetchone() is not None
