"""Provenance certificates made from the verifier's database (the file: verifier/provenance.py,
docs/provenance.md): for a reading, a packet, a granular certificate or a charging session,
the readings' bytes with their Merkle paths, every ledger entry they rest on (the installer's
registration, the device's enrollment, its key rotations and revocation, the packets, the
issuance and its claims) each with a C2SP tlog-proof, all to one checkpoint served with its
witness cosignatures."""

from __future__ import annotations

import base64
import json
from typing import Any

from verifier import checkpoints, ingest, ledger, merkle, note, provenance, sessions, strict_cbor
from verifier.packet import KIND_METER
from verifier.storage import Connection


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class _File:
    def __init__(self, db: Connection, kind: str, subject: dict[str, Any]) -> None:
        self.db, self.kind, self.subject = db, kind, subject
        self.entries: set[int] = set()
        self.readings: dict[tuple[str, int], tuple[int, int]] = {}  # (device, number): (seq, packet entry)
        self.devices: set[str] = set()
        self.ocmf: str | None = None

    def device(self, device_id: str) -> None:
        if device_id in self.devices:
            return
        self.devices.add(device_id)
        row = self.db.execute("SELECT enrolled_idx FROM devices WHERE device_id = ?", (device_id,)).fetchone()
        if row is None:
            raise LookupError(f"no device {device_id}")
        enrolled = int(row[0])
        self.entries.add(enrolled)
        name = ledger.entry(self.db, enrolled).body.get("installer")
        for idx, raw in self.db.execute(
            "SELECT idx, entry FROM ledger WHERE kind = 'installer' AND idx < ?", (enrolled,)
        ):
            if strict_cbor.loads(bytes(raw)).get("name") == name:
                self.entries.add(int(idx))
        for (idx,) in self.db.execute(
            "SELECT idx FROM ledger WHERE device_id = ? AND kind IN ('rotate', 'revoke')", (device_id,)
        ).fetchall():
            self.entries.add(int(idx))

    def reading(self, device_id: str, number: int) -> None:
        self.device(device_id)
        row = self.db.execute(
            "SELECT seq FROM readings WHERE device_id = ? AND number = ?", (device_id, number)
        ).fetchone()
        if row is None:
            raise LookupError(f"no reading {number} of {device_id}")
        self.packet_readings(device_id, int(row[0]), [number])

    def packet_readings(self, device_id: str, seq: int, numbers: list[int]) -> None:
        index = ingest.packet_entry(self.db, device_id, seq)
        self.entries.add(index)
        for n in numbers:
            self.readings[device_id, n] = (seq, index)

    def build(self, signer: note.Signer) -> bytes:
        db = self.db
        cp = checkpoints.covering(db, max(self.entries), signer)
        served = checkpoints.served(db, cp)
        entries = []
        for index in sorted(self.entries):
            raw = ledger.entry(db, index).raw
            # Each proof carries the log-signed checkpoint; its cosignatures are once, at the top.
            proof = provenance.tlog_proof(index, ledger.inclusion_proof(db, index, cp.size), cp.note)
            entries.append({"index": index, "entry": _b64(raw), "proof": proof})
        readings = []
        packets: dict[tuple[str, int], tuple[int, list[bytes], list[bytes]]] = {}  # first number, raws, leaves
        for (device_id, number), (seq, index) in sorted(self.readings.items()):
            if (device_id, seq) not in packets:
                rows = db.execute(
                    "SELECT number, raw FROM readings WHERE device_id = ? AND seq = ? ORDER BY number", (device_id, seq)
                ).fetchall()
                raws = [bytes(r[1]) for r in rows]
                packets[device_id, seq] = (int(rows[0][0]), raws, [merkle.leaf_hash(r) for r in raws])
            first, raws, leaves = packets[device_id, seq]
            position = number - first
            readings.append({
                "packet": index, "position": position, "raw": _b64(raws[position]),
                "path": [_b64(h) for h in merkle.inclusion_proof(position, leaves)],
            })  # fmt: skip
        doc: dict[str, Any] = {"format": provenance.FORMAT, "kind": self.kind, "subject": self.subject,
                               "checkpoint": served.decode(), "entries": entries, "readings": readings}  # fmt: skip
        if self.ocmf is not None:
            doc["ocmf"] = self.ocmf
        return (json.dumps(doc, separators=(",", ":")) + "\n").encode()


def for_reading(db: Connection, signer: note.Signer, device_id: str, number: int) -> bytes:
    f = _File(db, "reading", {"device_id": device_id, "reading": number})
    f.reading(device_id, number)
    return f.build(signer)


def for_packet(db: Connection, signer: note.Signer, device_id: str, seq: int) -> bytes:
    f = _File(db, "packet", {"device_id": device_id, "seq": seq})
    f.device(device_id)
    numbers = db.execute("SELECT number FROM readings WHERE device_id = ? AND seq = ?", (device_id, seq)).fetchall()
    f.packet_readings(device_id, seq, [int(r[0]) for r in numbers])
    return f.build(signer)


def for_session(db: Connection, signer: note.Signer, device_id: str, session_id: str) -> bytes:
    found = [s for s in sessions.for_device(db, device_id) if s.session_id == session_id]
    if not found or found[0].record is not None:
        raise LookupError(f"no session {session_id} of {device_id} from its own readings")
    s = found[0]
    f = _File(db, "session", {"device_id": device_id, "session_id": session_id})
    for r in [s.start, *s.samples, *([s.stop] if s.stop is not None else [])]:
        f.reading(device_id, r.number)
    f.ocmf = s.ocmf_record()
    return f.build(signer)


def for_certificate(db: Connection, signer: note.Signer, ledger_index: int) -> bytes:
    """The granular certificate issued by ledger entry ledger_index: its hour's readings
    (from the last meter reading at or before each end of the hour to the first at or after
    it), the issuance and the claims that cancelled any of it."""
    row = db.execute(
        "SELECT issuance_id, device_id, production_start FROM certificates WHERE ledger_idx = ?", (ledger_index,)
    ).fetchone()
    if row is None:
        raise LookupError(f"no certificate was issued by ledger entry {ledger_index}")
    issuance_id, device_id, start = str(row[0]), str(row[1]), int(row[2])
    f = _File(db, "certificate", {"issuance_ledger_index": ledger_index, "issuance_id": issuance_id})
    f.device(device_id)
    f.entries.add(ledger_index)
    for t in (start, start + 3600):
        before = db.execute(
            "SELECT number FROM readings WHERE device_id = ? AND kind = ? AND ts <= ? ORDER BY ts DESC, number DESC"
            " LIMIT 1", (device_id, KIND_METER, t)).fetchone()  # fmt: skip
        after = db.execute(
            "SELECT number FROM readings WHERE device_id = ? AND kind = ? AND ts >= ? ORDER BY ts, number LIMIT 1",
            (device_id, KIND_METER, t),
        ).fetchone()
        if before is None or after is None:
            raise LookupError(f"the hour of {issuance_id} is not surrounded by readings")
        for number in range(int(before[0]), int(after[0]) + 1):  # neighbours: nothing left out between
            f.reading(device_id, number)
    for (claim,) in db.execute(
        "SELECT DISTINCT claim_id FROM bundles WHERE issuance_id = ? AND claim_id IS NOT NULL", (issuance_id,)
    ).fetchall():
        f.entries.add(int(claim))
    return f.build(signer)
