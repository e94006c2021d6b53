"""Provenance certificates made from the verifier's database (the file: verifier/provenance/checks.py,
docs/provenance.md): for a reading, a packet, a granular certificate or a charging session,
the readings' bytes with their Merkle paths, every ledger entry they rest on (the installer's
registration, the device's enrollment, its key rotations and revocation, the packets, the
issuance and its claims) each with a C2SP tlog-proof, all to one checkpoint served with its
witness cosignatures."""

from __future__ import annotations

import base64
import json
from typing import Any

from verifier.certificates import issuance, registry, registry_map
from verifier.charging import sessions
from verifier.devices import ingest, lifecycle, records
from verifier.log import checkpoints, ledger, note
from verifier.provenance import checks
from verifier.storage import Connection
from verifier.wire import merkle
from verifier.wire.problems import Problem


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class _File:
    def __init__(self, db: Connection, kind: str, subject: dict[str, Any]) -> None:
        self.db, self.kind, self.subject = db, kind, subject
        self.entries: set[int] = set()
        self.readings: dict[tuple[str, int], tuple[int, int]] = {}  # (device, number): (seq, packet entry)
        self.devices: set[str] = set()
        self.ocmf: str | None = None
        self.status: list[dict[str, Any]] | None = None  # a certificate's registry leaves with their paths
        self.lifecycle: set[int] = set()  # the devices' rotations and revocations

    def device(self, device_id: str) -> None:
        if device_id in self.devices:
            return
        self.devices.add(device_id)
        enrolled = lifecycle.enrolled_index(self.db, device_id)
        self.entries.add(enrolled)
        name = ledger.entry(self.db, enrolled).body.get("installer")
        for e in ledger.of_kind_before(self.db, "installer", enrolled):
            if e.body.get("name") == name:
                self.entries.add(e.index)
        for e in ledger.of_device(self.db, device_id, ("rotate", "revoke")):
            self.entries.add(e.index)
            self.lifecycle.add(e.index)

    def reading(self, device_id: str, number: int) -> None:
        self.device(device_id)
        self.packet_readings(device_id, records.packet_of_reading(self.db, device_id, number), [number])

    def packet_readings(self, device_id: str, seq: int, numbers: list[int]) -> None:
        index = ingest.packet_entry(self.db, device_id, seq)
        self.entries.add(index)
        for n in numbers:
            self.readings[device_id, n] = (seq, index)

    def build(self, signer: note.Signer, cp: checkpoints.Checkpoint | None = None) -> bytes:
        """The file, every entry proven to cp (default: the latest checkpoint, published now if
        it does not hold them all yet)."""
        db = self.db
        if cp is None:
            cp = checkpoints.covering(db, max(self.entries), signer)
        else:  # the file speaks as of cp (a certificate's registry state): a device's later rotation
            # or revocation is not part of it
            self.entries -= {i for i in self.lifecycle if i >= cp.size}
        served = checkpoints.served(db, cp)
        entries = []
        for index in sorted(self.entries):
            raw = ledger.entry(db, index).raw
            # Each proof carries the log-signed checkpoint; its cosignatures are once, at the top.
            proof = checks.tlog_proof(index, ledger.inclusion_proof(db, index, cp.size), cp.note)
            entries.append({"index": index, "entry": _b64(raw), "proof": proof})
        readings = []
        packets: dict[tuple[str, int], tuple[int, list[bytes], list[bytes]]] = {}  # first number, raws, leaves
        for (device_id, number), (seq, index) in sorted(self.readings.items()):
            if (device_id, seq) not in packets:
                rows = records.packet_readings(db, device_id, seq)
                raws = [raw for _, raw in rows]
                packets[device_id, seq] = (rows[0][0], raws, [merkle.leaf_hash(r) for r in raws])
            first, raws, leaves = packets[device_id, seq]
            position = number - first
            readings.append({
                "packet": index, "position": position, "raw": _b64(raws[position]),
                "path": [_b64(h) for h in merkle.inclusion_proof(position, leaves)],
            })  # fmt: skip
        doc: dict[str, Any] = {"format": checks.FORMAT, "kind": self.kind, "subject": self.subject,
                               "checkpoint": served.decode(), "entries": entries, "readings": readings}  # fmt: skip
        if self.ocmf is not None:
            doc["ocmf"] = self.ocmf
        if self.status is not None:
            doc["status"] = self.status
        witnessed = _witnessed(db, cp)
        if witnessed is not None:
            doc["witnessed"] = witnessed
        return (json.dumps(doc, separators=(",", ":")) + "\n").encode()


def _witnessed(db: Connection, cp: checkpoints.Checkpoint) -> dict[str, Any] | None:
    """When the file's checkpoint has no cosignature (the witnesses cosign the latest one, and a
    certificate's checkpoint is the one its registry state ends), the latest cosigned
    checkpoint after it with the consistency proof from the file's: the witnesses' quorum is
    asked of that one (docs/provenance.md)."""
    if checkpoints.cosigned_by(db, cp.size):
        return None
    later = checkpoints.cosigned_after(db, cp.size)
    if later is None:
        return None
    proof = ledger.consistency_proof(db, cp.size, later.size)
    return {"checkpoint": checkpoints.served(db, later).decode(), "consistency": [_b64(h) for h in proof]}


def for_reading(db: Connection, signer: note.Signer, device_id: str, number: int) -> bytes:
    f = _File(db, "reading", {"device_id": device_id, "reading": number})
    f.reading(device_id, number)
    return f.build(signer)


def for_packet(db: Connection, signer: note.Signer, device_id: str, seq: int) -> bytes:
    f = _File(db, "packet", {"device_id": device_id, "seq": seq})
    f.device(device_id)
    f.packet_readings(device_id, seq, [number for number, _ in records.packet_readings(db, device_id, seq)])
    return f.build(signer)


def for_session(db: Connection, signer: note.Signer, device_id: str, session_id: str) -> bytes:
    found = [s for s in sessions.for_device(db, device_id) if s.session_id == session_id]
    if not found:
        raise LookupError(f"no session {session_id} of {device_id}")
    s = found[0]
    if s.record is not None:
        return _for_ocmf_session(db, signer, s)
    if s.stop is None:
        raise Problem("session-open", "session_id", f"session {session_id} of {device_id} has not stopped yet:"
                      " its certificate proves its stop, ask again once it has")  # fmt: skip
    f = _File(db, "session", {"device_id": device_id, "session_id": session_id})
    for r in [s.start, *s.samples, *([s.stop] if s.stop is not None else [])]:
        f.reading(device_id, r.number)
    f.ocmf = s.ocmf_record()
    return f.build(signer)


def _for_ocmf_session(db: Connection, signer: note.Signer, s: sessions.Session) -> bytes:
    """A third-party charger's session: its enrollment by its OCMF key and the ledger entry
    holding the OCMF record it signed (verified over the payload as sent), or the two entries
    of its begin and end records where it signed them apart (ocmf the end's)."""
    f = _File(db, "session", {"device_id": s.device_id, "session_id": s.session_id})
    if s.stop is None:
        raise Problem("session-open", "session_id", f"session {s.session_id} of {s.device_id} has not stopped yet:"
                      " its certificate proves its end record, ask again once the charger has signed it")  # fmt: skip
    f.device(s.device_id)
    assert s.ledger_index is not None and s.record is not None
    f.entries.add(s.ledger_index)
    if s.begin_record is not None:  # signed in two records: the begin's entry too
        f.entries.add(s.begin_record[0])
    f.ocmf = s.record.text
    return f.build(signer)


def for_certificate(db: Connection, signer: note.Signer, ledger_index: int) -> bytes:
    """The granular certificate issued by ledger entry ledger_index: its hour's readings
    (from the last meter reading at or before each end of the hour to the first at or after
    it), the issuance and the claims that cancelled any of it."""
    found = issuance.issued_by(db, ledger_index)
    if found is None:
        raise LookupError(f"no certificate was issued by ledger entry {ledger_index}")
    issuance_id, device_id, start = found
    state_index, cp, leaves = _current_state(db, signer)
    f = _File(db, "certificate", {"issuance_ledger_index": ledger_index, "issuance_id": issuance_id})
    f.device(device_id)
    f.entries.add(ledger_index)
    for t in (start, start + 3600):
        around = records.meter_readings_around(db, device_id, t)
        if around is None:
            raise LookupError(f"the hour of {issuance_id} is not surrounded by readings")
        for number in range(around[0], around[1] + 1):  # neighbours: nothing left out between
            f.reading(device_id, number)
    # The status: the registry leaves that hold the certificate's ids, in the state committed
    # by the checkpoint's last entry; the claims and withdrawals they name.
    issued = ledger.entry(db, ledger_index).body
    first, last = registry_map.covering(
        leaves, int(issued["bundle_id_range_start"]), int(issued["bundle_id_range_end"])
    )
    hashes = registry_map.hashes(leaves)
    f.entries.add(state_index)
    f.status = []
    for position in range(first, last + 1):
        leaf = leaves[position]
        if leaf.claim is not None:
            f.entries.add(leaf.claim)
        if leaf.status == registry.WITHDRAWN:
            f.entries.add(leaf.changed_at)
        path = merkle.inclusion_proof(position, hashes)
        f.status.append({"position": position, "leaf": _b64(leaf.encode()), "path": [_b64(h) for h in path]})
    return f.build(signer, cp)


def _current_state(db: Connection, signer: note.Signer) -> tuple[int, checkpoints.Checkpoint, list[registry_map.Leaf]]:
    """The registry-state entry current now, its checkpoint and the leaves it commits to (read
    again until they are the committed ones: an action may land between the two reads)."""
    for _ in range(5):
        index, cp = registry.state_checkpoint(db, signer)
        leaves = registry.state_leaves(db)
        body = ledger.entry(db, index).body
        if body["root"] == registry_map.root(leaves) and body["bundles"] == len(leaves):
            return index, cp, leaves
    raise RuntimeError("the registry changed under every try to read its committed state")
