"""`wattproof ledger audit`: re-derive everything from the ledger and compare it with what is stored.

Replays the entries in order: each leaf hash, each complete-subtree node, each entry's
signatures and rules (installers, enrollments with both signatures, packets against the
device key valid at that time and the device's chain, revocations, rotations,
equivocation evidence), each packet's readings against its signed Merkle root, and each
stored checkpoint's root and signature. Then the tables derived from the ledger (devices,
installers, packets, readings) must equal the replay, every stored witness cosignature
must be of a stored checkpoint and, by a witness whose key is given, verify over it, and
every stored OCMF check of a charger's stop must be the one its readings and keys give.
The first problem is reported with the ledger index it belongs to.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from verifier.certificates import registry, registry_map
from verifier.charging import ocmf_chargers, sessions
from verifier.communities import operation
from verifier.devices import identity, records
from verifier.log import note
from verifier.storage import Connection
from verifier.wire import cose, merkle, ocmf, strict_cbor
from verifier.wire.packet import EVENT_METER_FAULT, GENESIS, KIND_DEVICE, KIND_METER, decode_header, decode_reading
from verifier.wire.problems import Problem


@dataclass
class Report:
    entries: int = 0
    packets: int = 0
    readings: int = 0
    checkpoints: int = 0
    anomalies: int = 0
    certificates: int = 0  # bundles issued
    certified_wh: int = 0
    seconds: float = 0.0
    problem: str | None = None
    index: int | None = None  # the ledger index the problem belongs to
    actions: int = 0  # registry actions: transfers, claims, withdrawals
    claimed_wh: int = 0
    registry_states: int = 0  # registry-state entries, each root recomputed
    # issuance id -> (fields, ledger index): what the certificates table must hold
    bundles: dict[str, tuple[dict[str, Any], int]] = field(default_factory=dict, repr=False)
    # the registry as the entries leave it: accounts, device owners, bundles, claims
    accounts: dict[str, tuple[str, str, int, int]] = field(default_factory=dict, repr=False)
    owners: dict[str, tuple[str, int]] = field(default_factory=dict, repr=False)
    holdings: registry.Holdings = field(default_factory=registry.Holdings, repr=False)
    claims: dict[int, tuple[Any, ...]] = field(default_factory=dict, repr=False)
    # the communities' tables as their entries leave them: table -> key -> row
    community_rows: dict[str, dict[tuple[Any, ...], tuple[Any, ...]]] = field(default_factory=dict, repr=False)
    cosignatures: int = 0  # witnesses' cosignatures checked against their keys
    ocmf_checks: int = 0  # stored OCMF checks of charger stops, made again
    cosignatures_unchecked: int = 0  # ... by witnesses whose keys the audit was not given
    ocmf_records: int = 0  # third-party chargers' records; their rows by (device, digest)
    ocmf_rows: dict[tuple[str, bytes], tuple[Any, ...]] = field(default_factory=dict, repr=False)
    # begin records signed apart, not closed yet: entry -> (charger, record)
    ocmf_open: dict[int, tuple[str, Any]] = field(default_factory=dict, repr=False)
    ocmf_spans: dict[str, list[tuple[int, int]]] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return self.problem is None


class _Bad(Exception):
    def __init__(self, index: int | None, problem: str) -> None:
        super().__init__(problem)
        self.index, self.problem = index, problem


class _EdgeDigest:
    """A device's register_edges rows folded in t order into a count and a SHA-256 (a later
    row at the same t replaces the one before it, as ingest's rows do)."""

    def __init__(self) -> None:
        self.hash = hashlib.sha256()
        self.rows = 0
        self.last: tuple[Any, ...] | None = None

    def add(self, row: tuple[Any, ...] | None) -> None:
        if self.last is not None and (row is None or row[1] != self.last[1]):
            self.hash.update(repr(tuple(int(v) for v in self.last[1:])).encode())
            self.rows += 1
            self.last = None
        if row is not None:
            self.last = row

    def count(self) -> int:
        return self.rows + (self.last is not None)

    def finish(self) -> tuple[int, str]:
        self.add(None)
        return self.rows, self.hash.hexdigest()


@dataclass
class _Device:
    key: bytes
    role: str
    attributes: dict[str, Any]
    enrolled_idx: int
    status: str = "active"
    flagged: bool = False
    seq: int = -1
    prev: bytes = GENESIS
    last_number: int = -1
    last_raw: bytes | None = None  # the last reading, the last meter reading, and whether a
    meter_raw: bytes | None = None  # meter-fault event followed it: the chain_heads row
    fault: bool = False
    packets: list[tuple[int, int]] = field(default_factory=list)  # (seq, ledger index)
    key_index: int = -1  # the entry that set the current key
    edges: _EdgeDigest = field(default_factory=lambda: _EdgeDigest())  # its register_edges rows
    unordered: bool = False

    def __post_init__(self) -> None:
        if self.key_index < 0:
            self.key_index = self.enrolled_idx


def audit(db: Connection, log_key: note.Verifier, witnesses: Sequence[note.Verifier] = ()) -> Report:
    """Re-derives everything from the ledger; witnesses: the cosigner keys whose stored
    cosignatures are checked (a cosignature by any other witness is counted, unchecked)."""
    report = Report()
    started = time.monotonic()
    try:
        _run(db, log_key, report)
        _check_cosignatures(db, log_key, witnesses, report)
        _check_ocmf_verdicts(db, report)
    except _Bad as e:
        report.problem, report.index = e.problem, e.index
    report.seconds = time.monotonic() - started
    return report


def _es256(point: bytes, message: bytes, signature: bytes) -> bool:
    try:
        cose.verify_es256_message(point, message, signature)
        return True
    except ValueError:
        return False


def _run(db: Connection, log_key: note.Verifier, report: Report) -> None:
    checkpoints = {
        int(r[0]): (bytes(r[1]), bytes(r[2])) for r in db.execute("SELECT size, root, note FROM checkpoints")
    }
    # Stored nodes, in the order the replay completes them: (level, i) closes with leaf (i + 1) * 2^level - 1.
    nodes = db.execute(
        "SELECT level, idx, hash FROM ledger_nodes ORDER BY ((idx + 1) << CAST(level AS INTEGER)), level"
    )
    installers: dict[str, tuple[bytes, str]] = {}
    devs: dict[str, _Device] = {}
    stack: list[tuple[bytes, int]] = []  # the compact range of the tree so far
    _check_checkpoint(0, stack, checkpoints, log_key, report)
    for row in db.execute("SELECT idx, kind, device_id, entry, leaf FROM ledger ORDER BY idx"):
        index, kind, device_id, raw, leaf = int(row[0]), row[1], row[2], bytes(row[3]), bytes(row[4])
        if index != report.entries:
            raise _Bad(report.entries, f"ledger entry {report.entries} is missing")
        if merkle.leaf_hash(raw) != leaf:
            raise _Bad(index, "stored leaf hash is not the hash of the entry")
        try:
            body = strict_cbor.loads(raw)
        except strict_cbor.CBORProfileError as e:
            raise _Bad(index, f"entry is not deterministic CBOR: {e}") from None
        if body.get("kind") != kind:
            raise _Bad(index, "kind column differs from the entry")
        _apply(db, index, kind, device_id, body, installers, devs, report)
        # Tree: fold the leaf in; every complete subtree must be stored exactly.
        h, size, level, i = leaf, 1, 0, index
        while stack and stack[-1][1] == size:
            h = merkle.node_hash(stack.pop()[0], h)
            size, level, i = size * 2, level + 1, i >> 1
            stored = nodes.fetchone()
            if stored is None or (int(stored[0]), int(stored[1]), bytes(stored[2])) != (level, i, h):
                raise _Bad(index, f"stored tree node ({level}, {i}) is wrong or missing")
        stack.append((h, size))
        report.entries += 1
        _check_checkpoint(report.entries, stack, checkpoints, log_key, report)
    if nodes.fetchone() is not None:
        raise _Bad(None, "tree nodes are stored beyond the ledger")
    if len(checkpoints) > report.checkpoints:
        raise _Bad(None, f"a checkpoint is for a size beyond the ledger's {report.entries}")
    _compare_tables(db, installers, devs, report)


def _check_checkpoint(
    size: int,
    stack: list[tuple[bytes, int]],
    checkpoints: dict[int, tuple[bytes, bytes]],
    log_key: note.Verifier,
    report: Report,
) -> None:
    if size not in checkpoints:
        return
    root = merkle.EMPTY_ROOT
    if stack:
        root = stack[-1][0]
        for h, _ in reversed(stack[:-1]):
            root = merkle.node_hash(h, root)
    stored_root, signed = checkpoints[size]
    where = size - 1 if size else None
    try:
        text = note.open_note(signed, [log_key]).text
        cp = note.Checkpoint.parse(text)
    except note.NoteError as e:
        raise _Bad(where, f"checkpoint at size {size}: {e}") from None
    if (cp.origin, cp.size, cp.root) != (log_key.name, size, root) or stored_root != root:
        raise _Bad(where, f"checkpoint at size {size} does not match the ledger")
    report.checkpoints += 1


def _check_ocmf_verdicts(db: Connection, report: Report) -> None:
    """Every stored OCMF check of a charger's stop is the one its readings and keys give."""
    stored: dict[str, list[tuple[int, bytes, bool]]] = {}
    for device_id, n, kid, verified in db.execute(
        "SELECT device_id, stop_number, key_id, verified FROM ocmf_verdicts ORDER BY device_id, stop_number"
    ).fetchall():
        stored.setdefault(str(device_id), []).append((int(n), bytes(kid), bool(verified)))
    for device_id, rows in stored.items():
        again = sessions.checked_again(db, device_id)
        for n, kid, verified in rows:
            if again.get(n) != (kid, verified):
                raise _Bad(None, f"the stored OCMF check of {device_id}'s stop reading {n} is not what its readings"
                                 " and keys give")  # fmt: skip
            report.ocmf_checks += 1


def _check_cosignatures(
    db: Connection, log_key: note.Verifier, witnesses: Sequence[note.Verifier], report: Report
) -> None:
    """Every stored cosignature is of a stored checkpoint; those of the given witnesses verify
    over that checkpoint, with the time stored beside them."""
    keys = {w.name: w for w in witnesses}
    notes = {int(r[0]): bytes(r[1]) for r in db.execute("SELECT size, note FROM checkpoints")}
    for size, witness, line, when in db.execute(
        "SELECT size, witness, line, cosigned_at FROM cosignatures ORDER BY size, witness"
    ).fetchall():
        size, where = int(size), f"the cosignature by {witness} of size {size}"
        if size not in notes:
            raise _Bad(None, f"{where} is of no stored checkpoint")
        key = keys.get(witness)
        if key is None:
            report.cosignatures_unchecked += 1
            continue
        try:
            opened = note.open_note(notes[size] + str(line).encode(), [log_key, key])
        except note.NoteError as e:
            raise _Bad(None, f"{where}: {e}") from None
        if dict(opened.cosigned).get(witness) != int(when):
            raise _Bad(None, f"{where} is not a cosignature by that witness at the time stored")
        report.cosignatures += 1


def _apply(
    db: Connection,
    index: int,
    kind: str,
    device_id: str | None,
    body: dict[str, Any],
    installers: dict[str, tuple[bytes, str]],
    devs: dict[str, _Device],
    report: Report,
) -> None:
    if kind == "installer":
        if body["name"] in installers:
            raise _Bad(index, "installer registered twice")
        installers[body["name"]] = (body["public_key"], "active")
    elif kind == "installer-revoke":
        if installers.get(body["name"], (b"", ""))[1] != "active":
            raise _Bad(index, "revokes an installer that is not active")
        installers[body["name"]] = (installers[body["name"]][0], "revoked")
    elif kind == "enroll":
        device = body["device"]
        key, status = installers.get(body["installer"], (b"", ""))
        if status != "active":
            raise _Bad(index, "enrolled by an installer that was not active")
        try:
            message = identity.installer_message(device, body["challenge"], body["pop"])
            Ed25519PublicKey.from_public_bytes(key).verify(body["installer_sig"], message)
        except (InvalidSignature, ValueError):
            raise _Bad(index, "installer signature does not verify") from None
        if not _es256(device["public_key"], identity.pop_message(device, body["challenge"]), body["pop"]):
            raise _Bad(index, "proof of possession does not verify")
        if device["device_id"] in devs or device_id != device["device_id"]:
            raise _Bad(index, "device enrolled twice, or under another id")
        attributes = {k: v for k, v in device.items() if k not in ("device_id", "public_key", "role")}
        devs[device["device_id"]] = _Device(device["public_key"], device["role"], attributes, index)
    elif kind == "packet":
        _apply_packet(db, index, body, devs, report)
    elif kind == "revoke":
        dev = _device(devs, body["device_id"], index)
        dev.status = "revoked"
    elif kind == "rotate":
        dev = _device(devs, body["device_id"], index)
        if "key_index" in body:
            if body["key_index"] != dev.key_index:
                raise _Bad(index, "key rotation not bound to the entry that set the device's key")
            message = identity.rotation_message(
                body["device_id"], body["new_public_key"], cose.key_id(dev.key), dev.key_index
            )
        else:  # entries of the first release
            message = identity.legacy_rotation_message(body["device_id"], body["new_public_key"])
        if not (_es256(dev.key, message, body["old_sig"]) and _es256(body["new_public_key"], message, body["new_sig"])):
            raise _Bad(index, "key rotation signatures do not verify")
        dev.key, dev.key_index = body["new_public_key"], index
    elif kind == "equivocation":
        dev = _device(devs, body["device_id"], index)
        accepted, offered = body["accepted"], body["offered"]
        if accepted == offered or decode_header(accepted).seq != decode_header(offered).seq != body["seq"]:
            raise _Bad(index, "equivocation evidence is not two headers for one seq")
        dev.flagged = True
    elif kind == "issuance":
        _apply_issuance(db, index, device_id, body, devs, report)
    elif kind == "account":
        if body["account_id"] in report.accounts or not registry.ACCOUNT_ID.fullmatch(body["account_id"]):
            raise _Bad(index, f"account {body['account_id']!r} created twice, or with a malformed id")
        if body["account_kind"] not in registry.ACCOUNT_KINDS:
            raise _Bad(index, "an account of an unknown kind")
        report.accounts[body["account_id"]] = (body["name"], body["account_kind"], body["time"], index)
    elif kind == "account-device":
        _device(devs, body["device_id"], index)
        if device_id != body["device_id"] or body["account_id"] not in report.accounts:
            raise _Bad(index, "a device assigned to an account that does not exist")
        report.owners[body["device_id"]] = (body["account_id"], index)
    elif kind in registry.ACTIONS:
        _apply_action(index, kind, body, devs, report)
    elif kind in operation.ENTRY_KINDS:
        _apply_community(index, kind, body, devs, report)
    elif kind == "ocmf-enroll":
        try:
            device = identity.check_ocmf_charger(dict(body["device"]))
        except (Problem, KeyError, TypeError) as e:
            raise _Bad(index, f"a third-party charger's enrollment is not valid: {e}") from None
        if device["device_id"] in devs or device_id != device["device_id"]:
            raise _Bad(index, "device enrolled twice, or under another id")
        devs[device["device_id"]] = _Device(
            device["public_key"], device["role"], ocmf_chargers.attributes(device), index
        )
    elif kind == "ocmf":
        _apply_ocmf(index, device_id, body, devs, report)
    elif kind == "flag-clear":
        dev = _device(devs, body["device_id"], index)
        if not dev.flagged:
            raise _Bad(index, "clears the flag of a device that was not flagged")
        dev.flagged = False
    elif kind == registry_map.ENTRY_KIND:
        # The registry's state as committed: the root of every bundle as the entries before it
        # leave them (a certificate file's status proof rests on it).
        leaves = [registry_map.leaf_of(b) for _, b in sorted(report.holdings.by_start.items())]
        if body.get("bundles") != len(leaves) or body.get("root") != registry_map.root(leaves):
            raise _Bad(index, "a registry-state entry that is not the registry's state at that point of the log")
        report.registry_states += 1
    else:
        raise _Bad(index, f"unknown entry kind {kind!r}")


def _apply_ocmf(
    index: int, device_id: str | None, body: dict[str, Any], devs: dict[str, _Device], report: Report
) -> None:
    """A third-party charger's OCMF record: of an active OCMF charger, signed with its key,
    a session, not appended before, on register energy no earlier record counts."""
    charger = str(body.get("device_id"))
    dev = _device(devs, charger, index)
    if dev.role != identity.OCMF_ROLE or dev.status != "active" or device_id != charger:
        raise _Bad(index, "an OCMF record of a device that is not an active third-party charger")
    try:
        record = ocmf_chargers.check(body["record"], dev.key, "record", keep_identification=True)
    except Problem as e:
        raise _Bad(index, f"OCMF record: {e.detail}") from None
    key = (charger, ocmf.digest(record))
    if key in report.ocmf_rows:
        raise _Bad(index, "an OCMF record appended twice")
    kind, begin, end = ocmf.part(record)
    begin_idx = body.get("begin")
    if kind == ocmf.BEGIN:
        end = begin
        report.ocmf_open[index] = (charger, record)
    elif kind == ocmf.END:
        # closes the begin record it names: of the same charger, open until now, paired by
        # the rule the import applied (ocmf.pair)
        opened = report.ocmf_open.pop(begin_idx, None) if isinstance(begin_idx, int) else None
        if opened is None or opened[0] != charger:
            raise _Bad(index, "an OCMF end record that names no open begin record of its charger")
        try:
            begin, end = ocmf.pair(opened[1], record)
        except ocmf.OcmfError as e:
            raise _Bad(index, f"an OCMF end record that does not pair with its begin: {e}") from None
    if (kind == ocmf.END) != ("begin" in body):
        raise _Bad(index, "only an OCMF end record names a begin record")
    spans = report.ocmf_spans.setdefault(charger, [])
    at = bisect.bisect_left(spans, (begin.mwh, end.mwh))
    neighbours = spans[max(0, at - 1) : at + 1]
    if end.mwh > begin.mwh and any(b < end.mwh and e > begin.mwh for b, e in neighbours):
        raise _Bad(index, "an OCMF record counts register energy an earlier record counts")
    spans.insert(at, (begin.mwh, end.mwh))
    report.ocmf_rows[key] = (index, begin.ts, end.ts, begin.mwh, end.mwh, kind, begin_idx)
    report.ocmf_records += 1


def _apply_issuance(
    db: Connection, index: int, device_id: str | None, body: dict[str, Any], devs: dict[str, _Device], report: Report
) -> None:
    """An issued bundle: of an active producer, for an hour not issued before, with the next
    certificate ids, and exactly the Wh its readings support (derived again here)."""
    from verifier.certificates import issuance

    fields = {k: v for k, v in body.items() if k != "kind"}
    dev = _device(devs, str(fields.get("device_id")), index)
    if device_id is None or device_id != fields["device_id"] or dev.role != "producer" or dev.status != "active":
        raise _Bad(index, "a bundle issued for a device that is not an active producer")
    start, quantity = fields["production_starting_interval"], fields["bundle_quantity"]
    key = issuance.hour_key(device_id, start)
    if fields["issuance_id"] != key or key in report.bundles:
        raise _Bad(index, f"hour {start} of {device_id} issued twice, or under another id")
    if fields["bundle_id_range_start"] != report.certified_wh + 1:
        raise _Bad(index, "bundle ids do not follow the previous bundle's")
    owner = report.owners.get(device_id, (None, 0))[0]
    expected = issuance.bundle_fields(
        device_id,
        dev.attributes,
        start,
        quantity,
        report.certified_wh + 1,
        fields["issuance_date"],
        fields["issuing_body"],
        fields["expiry_date"] - fields["issuance_date"],
        owner,
    )
    if fields != expected:
        raise _Bad(index, "the bundle's fields are not those its device and hour give")
    supported, why = issuance.hour_quantity(db, device_id, dev.attributes, start)
    if quantity != supported:
        raise _Bad(index, f"{quantity} Wh issued for hour {start} of {device_id}; its readings support {supported}"
                   + (f" ({why})" if why else ""))  # fmt: skip
    report.bundles[key] = (fields, index)
    report.certificates += 1
    report.certified_wh += quantity
    first = fields["bundle_id_range_start"]
    report.holdings.replace(
        [],
        [
            registry.Bundle(first, first + quantity - 1, key, device_id, start, owner, registry.ACTIVE,
                            fields["expiry_date"], None, index)
        ],
    )  # fmt: skip


def _apply_action(index: int, kind: str, body: dict[str, Any], devs: dict[str, _Device], report: Report) -> None:
    """A transfer, claim or withdrawal: the registry's own rules (registry.plan) applied to
    the bundles as the entries before it left them."""
    fields = {k: v for k, v in body.items() if k != "kind"}
    try:
        removed, added = registry.plan(
            report.holdings.containing,
            kind,
            fields,
            index,
            lambda a: a in report.accounts,
            lambda d: devs[d].role if d in devs else None,
        )
    except (Problem, KeyError, TypeError) as e:
        raise _Bad(index, f"{kind} the registry's rules refuse: {e}") from None
    report.holdings.replace(removed, added)
    report.actions += 1
    if kind == "claim":
        quantity = sum(e - s + 1 for s, e in fields["ranges"])
        report.claims[index] = (
            fields.get("holder"), fields["beneficiary"], fields.get("consumer_device"), fields["period_start"],
            fields["period_end"], quantity, fields["time"],
        )  # fmt: skip
        report.claimed_wh += quantity


def _device(devs: dict[str, _Device], device_id: str, index: int) -> _Device:
    if device_id not in devs:
        raise _Bad(index, f"entry for a device never enrolled: {device_id}")
    return devs[device_id]


def _apply_packet(db: Connection, index: int, body: dict[str, Any], devs: dict[str, _Device], report: Report) -> None:
    dev = _device(devs, body["device_id"], index)
    if dev.status != "active":
        raise _Bad(index, "packet from a revoked device")
    header_bytes = body["header"]
    top = strict_cbor.loads(header_bytes, tags=(cose.TAG_SIGN1,))
    protected, _, payload, signature = top.value
    if cose.decode_protected(strict_cbor.loads(protected)) != cose.key_id(dev.key):
        raise _Bad(index, "packet signed with a key that was not the device's")
    if not _es256(dev.key, cose.to_be_signed(protected, payload), signature):
        raise _Bad(index, "packet header signature does not verify")
    h = decode_header(header_bytes)
    if h.device_id != body["device_id"] or h.seq != dev.seq + 1 or h.prev != dev.prev or h.seq != body["seq"]:
        raise _Bad(index, "packet does not continue the device's chain")
    # The packet's readings continue the device's numbers (checked below); fetched by number,
    # the primary key, since a search by seq would scan all of the device's readings.
    rows = db.execute(
        "SELECT number, raw, seq FROM readings WHERE device_id = ? AND number > ? AND number <= ? ORDER BY number",
        (h.device_id, dev.last_number, dev.last_number + h.count),
    ).fetchall()
    raws = [bytes(r[1]) for r in rows]
    if len(raws) != h.count or merkle.root([merkle.leaf_hash(r) for r in raws]) != h.root:
        raise _Bad(index, "stored readings do not hash to the packet's signed root")
    if any(r[2] != h.seq for r in rows):
        raise _Bad(index, "stored readings name another packet")
    previous_meter = None if dev.meter_raw is None else decode_reading(dev.meter_raw)
    decoded = []
    for r in rows:
        reading = decode_reading(bytes(r[1]))
        decoded.append(reading)
        if reading.number != int(r[0]) or reading.number != dev.last_number + 1:
            raise _Bad(index, "reading numbers are not consecutive")
        dev.last_number = reading.number
        dev.last_raw = reading.raw
        if reading.kind == KIND_METER:
            dev.meter_raw, dev.fault = reading.raw, False
        elif reading.kind == KIND_DEVICE and reading.values["event"] == EVENT_METER_FAULT:
            dev.fault = dev.meter_raw is not None
    stored = db.execute(
        "SELECT header_hash, ledger_idx, reading_count, first_number, first_ts, last_ts FROM packets"
        " WHERE device_id = ? AND seq = ?",
        (h.device_id, h.seq),
    ).fetchone()
    expected = (
        hashlib.sha256(header_bytes).digest(),
        index,
        h.count,
        dev.last_number - h.count + 1,
        h.first_ts,
        h.last_ts,
    )
    if stored is None or (bytes(stored[0]), *stored[1:]) != expected:
        raise _Bad(index, "packets row differs from the ledger")
    recorded = sorted(
        (int(n), c, d)
        for n, c, d in db.execute("SELECT number, check_type, detail FROM anomalies WHERE ledger_idx = ?", (index,))
    )
    if recorded != sorted((int(n), c, d) for n, c, d in body.get("anomalies", [])):
        raise _Bad(index, "anomalies table differs from the packet's ledger entry")
    report.anomalies += len(recorded)
    if not dev.unordered:
        edge_rows, dev.unordered, _ = records.edge_rows(h.device_id, previous_meter, decoded)
        for row in edge_rows:
            dev.edges.add(row)
    dev.seq, dev.prev = h.seq, hashlib.sha256(header_bytes).digest()
    dev.packets.append((h.seq, index))
    report.packets += 1
    report.readings += len(raws)


def _compare_tables(
    db: Connection, installers: dict[str, tuple[bytes, str]], devs: dict[str, _Device], report: Report
) -> None:
    stored_installers = {
        r[0]: (bytes(r[1]), r[2]) for r in db.execute("SELECT name, public_key, status FROM installers")
    }
    if stored_installers != installers:
        raise _Bad(None, "installers table differs from the ledger")
    for row in db.execute(
        "SELECT device_id, public_key, kid, role, attributes, status, flagged, enrolled_idx FROM devices"
    ):
        dev = devs.get(row[0])
        if dev is None:
            raise _Bad(None, f"device {row[0]} is in the table but was never enrolled")
        stored = (bytes(row[1]), bytes(row[2]), row[3], json.loads(row[4]), row[5], bool(row[6]), int(row[7]))
        derived = (dev.key, cose.key_id(dev.key), dev.role, dev.attributes, dev.status, dev.flagged, dev.enrolled_idx)
        if stored != derived:
            raise _Bad(
                dev.packets[-1][1] if dev.packets else dev.enrolled_idx,
                f"devices row of {row[0]} differs from the ledger",
            )
    for issuance_id, raw, index, quantity, start, end in db.execute(
        "SELECT issuance_id, fields, ledger_idx, bundle_quantity, bundle_id_range_start, bundle_id_range_end"
        " FROM certificates"
    ):
        fields, entry = report.bundles.get(issuance_id, (None, None))
        kept = (json.loads(raw), int(index), int(quantity), int(start), int(end))
        if fields is None or kept != (
            fields,
            entry,
            fields["bundle_quantity"],
            fields["bundle_id_range_start"],
            fields["bundle_id_range_end"],
        ):
            raise _Bad(entry, f"certificates row {issuance_id} differs from the ledger")
    if db.execute("SELECT COUNT(*) FROM certificates").fetchone()[0] != report.certificates:
        raise _Bad(None, "a bundle issued in the ledger is missing from the certificates table")
    _compare_registry(db, report)
    _compare_edges(db, devs)
    _compare_communities(db, report)
    meters: dict[tuple[str, str], str] = {}
    for device_id, dev in devs.items():  # in enrollment order: the first device keeps a shared meter
        model, serial = dev.attributes.get("meter_model"), dev.attributes.get("meter_serial")
        if dev.status == "active" and serial != identity.UNKNOWN_SERIAL:
            meters.setdefault((str(model), str(serial)), device_id)
    stored_meters = {(r[0], r[1]): r[2] for r in db.execute("SELECT meter_model, meter_serial, device_id FROM meters")}
    if stored_meters != meters:
        raise _Bad(None, "meters table differs from the active devices' enrollments")
    if db.execute("SELECT COUNT(*) FROM devices").fetchone()[0] != len(devs):
        raise _Bad(None, "a device enrolled in the ledger is missing from the devices table")
    if db.execute("SELECT COUNT(*) FROM packets").fetchone()[0] != report.packets:
        raise _Bad(None, "the packets table holds rows the ledger does not")
    if db.execute("SELECT COUNT(*) FROM readings").fetchone()[0] != report.readings:
        raise _Bad(None, "the readings table holds rows no packet covers")
    if db.execute("SELECT COUNT(*) FROM anomalies").fetchone()[0] != report.anomalies:
        raise _Bad(None, "the anomalies table holds rows no packet entry records")
    heads = {
        r[0]: (int(r[1]), bytes(r[2]), bytes(r[3]), None if r[4] is None else bytes(r[4]), bool(r[5]))
        for r in db.execute("SELECT device_id, seq, header_hash, reading, meter, fault FROM chain_heads")
    }
    for device_id, dev in devs.items():
        chain = None if dev.last_raw is None else (dev.seq, dev.prev, dev.last_raw, dev.meter_raw, dev.fault)
        if heads.pop(device_id, None) != chain:
            raise _Bad(
                dev.packets[-1][1] if dev.packets else dev.enrolled_idx,
                f"chain_heads row of {device_id} differs from its packets",
            )
    if heads:
        raise _Bad(None, f"chain_heads holds a row for {sorted(heads)[0]}, which has no packets")
    stored_ocmf = {
        (r[0], bytes(r[1])): (*map(int, r[2:7]), str(r[7]), None if r[8] is None else int(r[8]))
        for r in db.execute(f"SELECT {', '.join(ocmf_chargers.ROW_COLUMNS)} FROM ocmf_records")
    }
    if stored_ocmf != report.ocmf_rows:
        raise _Bad(None, "the ocmf_records table differs from the ledger's OCMF records")
    head = db.execute("SELECT size FROM ledger_head WHERE id = 1").fetchone()
    if head is None or int(head[0]) != report.entries:
        raise _Bad(None, f"ledger_head says {head and head[0]} entries; the ledger holds {report.entries}")


def _apply_community(index: int, kind: str, body: dict[str, Any], devs: dict[str, _Device], report: Report) -> None:
    """A community's creation, settings, member or coefficients: valid by the rules the
    verifier applied (communities.py), its rows as operation.entry_rows makes them."""
    fields = {k: v for k, v in body.items() if k != "kind"}
    tables = report.community_rows
    for name in operation.TABLES:
        tables.setdefault(name, {})
    exists = (fields.get("community_id"),) in tables["communities"]
    try:
        if kind == "community":
            if exists or not operation.COMMUNITY_ID.fullmatch(fields["community_id"]):
                raise _Bad(index, f"community {fields['community_id']!r} created twice, or with a malformed id")
        elif not exists:
            raise _Bad(index, f"{kind} of a community that does not exist")
        elif kind == "community-settings":
            again = operation._settings_fields(
                fields["community_id"], fields["from"], fields["step_s"], fields["key"], fields.get("coefficients"),
                fields["price_per_kwh"],
            )  # fmt: skip
            if again != fields:
                raise _Bad(index, "community settings not as the verifier records them")
        elif kind == "community-member":
            dev = _device(devs, fields["device_id"], index)
            if dev.role not in ("producer", "consumer", "charger") or operation.member_role(dev.role) != fields["role"]:
                raise _Bad(index, "a community member whose role is not its device's")
            # the live path's rule (operation.check_one_community) within this community; a
            # ledger written before the rule may overlap across communities (_compare_communities)
            same = [
                (c, start, row[4])
                for (c, d, start), row in tables["community_members"].items()
                if (c, d) == (fields["community_id"], fields["device_id"])
            ]
            operation.check_one_community(
                same, fields["community_id"], fields["device_id"], (fields["from"], fields.get("until"))
            )
        elif kind == "community-member-end":
            ended = tables["community_members"].get(
                (fields["community_id"], fields["device_id"], operation._bounded(fields["from"]))
            )
            if ended is None or ended[3] != fields["role"]:
                raise _Bad(index, "the end of a membership that does not exist")
            operation.check_end(int(ended[2]), ended[4], int(fields["until"]))
        rows = operation.entry_rows(kind, fields, index)
    except (Problem, KeyError, TypeError) as e:
        raise _Bad(index, f"{kind} the community rules refuse: {e}") from None
    for table, new in rows.items():
        width = len(operation.TABLES[table][0])
        if table == "community_coefficients":
            steps = {(r[0], r[1]) for r in new}
            for key in [k for k in tables[table] if k[:2] in steps]:
                del tables[table][key]
        for row in new:
            tables[table][tuple(row[:width])] = tuple(row)


def _compare_communities(db: Connection, report: Report) -> None:
    # One community at a time: the memberships as the entries leave them never share time
    # across communities (a ledger written before the rule may: named until one is ended).
    members = report.community_rows.get("community_members", {})
    found = operation.overlaps((row[0], row[1], int(row[2]), row[4]) for row in members.values())
    if found:
        raise _Bad(None, operation.overlap_text(found[0]) + (f" (and {len(found) - 1} more)" if found[1:] else ""))
    for table, (keys, values) in operation.TABLES.items():
        derived = report.community_rows.get(table, {})
        stored = {}
        for row in db.execute(f"SELECT {', '.join((*keys, *values))} FROM {table}"):
            stored[tuple(row[: len(keys)])] = tuple(row)
        if stored != derived:
            raise _Bad(None, f"{table} table differs from the ledger")


def _compare_edges(db: Connection, devs: dict[str, _Device]) -> None:
    derived = {d: dev.edges.finish() for d, dev in devs.items() if not dev.unordered and dev.edges.count()}
    stored: dict[str, _EdgeDigest] = {}
    for row in db.execute(f"SELECT {', '.join(records.EDGE_COLUMNS)} FROM register_edges ORDER BY device_id, t"):
        stored.setdefault(row[0], _EdgeDigest()).add(tuple(row))
    found = {d: digest.finish() for d, digest in stored.items()}
    if found != derived:
        wrong = sorted(set(found.items()) ^ set(derived.items()))[0][0]
        raise _Bad(None, f"register_edges rows of {wrong} differ from its readings")
    unordered = {str(r[0]) for r in db.execute("SELECT device_id FROM edges_unordered")}
    if unordered != {d for d, dev in devs.items() if dev.unordered}:
        raise _Bad(None, "edges_unordered differs from the devices whose meter time went back")


def _compare_registry(db: Connection, report: Report) -> None:
    stored_accounts = {
        r[0]: (r[1], r[2], int(r[3]), int(r[4]))
        for r in db.execute("SELECT account_id, name, kind, created_at, created_idx FROM accounts")
    }
    if stored_accounts != report.accounts:
        raise _Bad(None, "accounts table differs from the ledger")
    owners = {
        r[0]: (r[1], int(r[2])) for r in db.execute("SELECT device_id, account_id, ledger_idx FROM device_accounts")
    }
    if owners != report.owners:
        raise _Bad(None, "device_accounts table differs from the ledger")
    columns = ", ".join(registry.BUNDLE_COLUMNS)
    derived = report.holdings.by_start
    count = 0
    for row in db.execute(f"SELECT {columns} FROM bundles ORDER BY bundle_id_range_start"):
        stored = registry._bundle(row)
        if derived.get(stored.start) != stored:
            raise _Bad(stored.ledger_idx, f"bundle {stored.start}..{stored.end} differs from the ledger")
        count += 1
    if count != len(derived):
        raise _Bad(None, "a bundle the ledger leaves is missing from the bundles table")
    stored_claims = {
        int(r[0]): (r[1], r[2], r[3], int(r[4]), int(r[5]), int(r[6]), int(r[7]))
        for r in db.execute(
            "SELECT claim_id, holder, beneficiary, consumer_device, period_start, period_end, quantity, claimed_at"
            " FROM claims"
        )
    }
    if stored_claims != report.claims:
        raise _Bad(None, "claims table differs from the ledger")
