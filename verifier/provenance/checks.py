"""Provenance certificates: one self-contained file that proves a reading, a packet, a
granular certificate or a charging session offline, and its verifier (docs/provenance.md).

Pure: cbor2 and cryptography only, no Flask, no database, so that `wattproof verify` runs
on an auditor's laptop. The file is JSON:

    {"format": "wattproof.org/provenance/v1", "kind": "reading" | "packet" | "certificate" | "session",
     "subject": {...what the file claims...},
     "checkpoint": "<the log's checkpoint, with witness cosignatures>",
     "entries": [{"index": N, "entry": "<base64 ledger entry>", "proof": "<c2sp.org/tlog-proof@v1>"}],
     "readings": [{"packet": N, "position": P, "raw": "<base64 reading>", "path": ["<base64 hash>"]}],
     "ocmf": "<the session's OCMF record>"}

`verify` checks every layer and returns the steps in words; the first layer that fails
raises Refused naming that layer.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from verifier.certificates import registry_map
from verifier.devices import identity
from verifier.log import note
from verifier.wire import cose, merkle, ocmf, strict_cbor, times
from verifier.wire.packet import KIND_METER, KIND_SESSION, decode_reading_strictly, verify_header
from verifier.wire.problems import PacketError, Problem

FORMAT = "wattproof.org/provenance/v1"
TLOG_PROOF = "c2sp.org/tlog-proof@v1"
KINDS = ("reading", "packet", "certificate", "session")
FIELDS = ("format", "kind", "subject", "checkpoint", "entries", "readings", "ocmf", "status", "witnessed")
# What each kind's subject names: exactly these, each proven by the file (layer "subject").
SUBJECT_FIELDS = {
    "reading": ("device_id", "reading"),
    "packet": ("device_id", "seq"),
    "certificate": ("issuance_ledger_index", "issuance_id"),
    "session": ("device_id", "session_id"),
}
MAX_ITEMS = 100_000  # entries, readings or status leaves in one file (a 2 MiB file holds far fewer)
MAX_PATH = 64  # hashes in a Merkle path: trees of up to 2^64 leaves


class Refused(ValueError):
    """The file does not prove what it claims; layer names the check that failed."""

    def __init__(self, layer: str, why: str) -> None:
        super().__init__(f"{layer}: {why}")
        self.layer, self.why = layer, why


# -- C2SP tlog-proof ---------------------------------------------------------------------


def tlog_proof(index: int, proof: Sequence[bytes], checkpoint: bytes) -> str:
    lines = [TLOG_PROOF, f"index {index}", *(base64.b64encode(h).decode() for h in proof)]
    return "\n".join(lines) + "\n\n" + checkpoint.decode()


def parse_tlog_proof(text: str) -> tuple[int, list[bytes], str]:
    """(index, inclusion proof, checkpoint text with its signatures)."""
    head, sep, checkpoint = text.partition("\n\n")
    lines = head.split("\n")
    if not sep or lines[0] != TLOG_PROOF:
        raise ValueError(f"not a {TLOG_PROOF} proof")
    rest = lines[1:]
    if rest and rest[0].startswith("extra "):
        rest = rest[1:]
    if not rest or not rest[0].startswith("index ") or not (rest[0][6:].isascii() and rest[0][6:].isdecimal()):
        raise ValueError("a tlog-proof needs its index line")
    index = int(rest[0][6:])
    if str(index) != rest[0][6:]:
        raise ValueError("the index has leading zeros")
    try:
        hashes = [base64.b64decode(line, validate=True) for line in rest[1:]]
    except ValueError:  # binascii.Error, or a non-ASCII character
        raise ValueError("an inclusion proof line is not base64") from None
    if any(len(h) != merkle.HASH_SIZE for h in hashes):
        raise ValueError("an inclusion proof line is not a 32-byte hash")
    return index, hashes, checkpoint


# -- verification ------------------------------------------------------------------------


def _when(ts: int) -> str:
    return times.strftime(ts, "%Y-%m-%d %H:%M:%S UTC")


def _b64(value: Any, layer: str) -> bytes:
    try:
        return base64.b64decode(str(value), validate=True)
    except ValueError:  # binascii.Error, or a non-ASCII character
        raise Refused(layer, "a field that should be base64 is not") from None


@dataclass
class Report:
    kind: str
    steps: list[str] = field(default_factory=list)
    subject: dict[str, Any] = field(default_factory=dict)
    witnesses: list[str] = field(default_factory=list)
    verdict: str = ""  # the subject in words: what VERIFIED is about
    tree_size: int = 0  # the file's checkpoint's size

    def json(self) -> dict[str, Any]:
        return {"verified": True, "kind": self.kind, "verdict": self.verdict, "subject": self.subject,
                "witnesses": self.witnesses, "steps": self.steps}  # fmt: skip


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63


def _shape(doc: Any) -> None:
    """The file's shape, before anything in it is used: every field of the type docs/provenance.md
    gives it, nothing else. Raises Refused("file", ...)."""

    def need(ok: bool, why: str) -> None:
        if not ok:
            raise Refused("file", why)

    def strings(value: Any, most: int) -> bool:
        return isinstance(value, list) and len(value) <= most and all(isinstance(x, str) for x in value)

    need(isinstance(doc, dict), f"not a {FORMAT} file: not a JSON object")
    need(doc.get("format") == FORMAT and doc.get("kind") in KINDS, f"not a {FORMAT} file")
    unknown = sorted(set(doc) - set(FIELDS))
    need(not unknown, f"unknown field {unknown[0] if unknown else ''!r}")
    need(isinstance(doc.get("subject"), dict), "subject is not a JSON object")
    need(isinstance(doc.get("checkpoint"), str), "checkpoint is not text")
    entries, readings = doc.get("entries", []), doc.get("readings", [])
    need(isinstance(entries, list) and len(entries) <= MAX_ITEMS, "entries is not a list")
    for e in entries:
        need(isinstance(e, dict) and set(e) == {"index", "entry", "proof"} and _is_int(e["index"])
             and isinstance(e["entry"], str) and isinstance(e["proof"], str),
             "an entry is {index: integer, entry: base64, proof: text}")  # fmt: skip
    need(isinstance(readings, list) and len(readings) <= MAX_ITEMS, "readings is not a list")
    for r in readings:
        need(isinstance(r, dict) and set(r) == {"packet", "position", "raw", "path"} and _is_int(r["packet"])
             and _is_int(r["position"]) and isinstance(r["raw"], str) and strings(r["path"], MAX_PATH),
             "a reading is {packet: integer, position: integer, raw: base64, path: [base64]}")  # fmt: skip
    need(doc.get("ocmf") is None or isinstance(doc["ocmf"], str), "ocmf is not text")
    status = doc.get("status")
    need(status is None or isinstance(status, list) and len(status) <= MAX_ITEMS, "status is not a list")
    for s in status or []:
        need(isinstance(s, dict) and set(s) == {"position", "leaf", "path"} and _is_int(s["position"])
             and isinstance(s["leaf"], str) and strings(s["path"], MAX_PATH),
             "a status leaf is {position: integer, leaf: base64, path: [base64]}")  # fmt: skip
    w = doc.get("witnessed")
    need(w is None or isinstance(w, dict) and set(w) == {"checkpoint", "consistency"}
         and isinstance(w["checkpoint"], str) and strings(w["consistency"], MAX_PATH),
         "witnessed is {checkpoint: text, consistency: [base64]}")  # fmt: skip


@dataclass
class _Device:
    device_id: str
    record: dict[str, Any]
    keys: list[tuple[int, bytes]]  # (ledger index from which it signs, key)
    revoked_at: int | None = None

    def key_at(self, index: int) -> bytes:
        key = self.keys[0][1]
        for since, k in self.keys:
            if since < index:
                key = k
        return key


def parse_consistency(text: str | bytes) -> tuple[int | None, int | None, list[bytes]]:
    """A consistency proof as `GET /v1/ledger/proof/consistency` answers it (JSON: from, to,
    hex hashes), or one hash a line (hex or base64). Returns (from, to, hashes); the sizes
    are None when the text does not say them. Raises Refused("consistency", ...)."""
    text = text.decode() if isinstance(text, bytes) else text
    start, end, lines = None, None, text.split()
    if text.lstrip().startswith("{"):
        try:
            doc = json.loads(text)
            start, end, lines = doc.get("from"), doc.get("to"), doc["proof"]
        except (ValueError, KeyError, AttributeError):
            raise Refused("consistency", "the consistency proof is not the JSON the log serves") from None
        if not isinstance(lines, list) or not all(isinstance(x, str) for x in lines):
            raise Refused("consistency", "the consistency proof's 'proof' is not a list of hashes")
    hashes = []
    for line in lines:
        try:
            h = bytes.fromhex(line) if len(line) == 2 * merkle.HASH_SIZE else base64.b64decode(line, validate=True)
        except ValueError:  # binascii.Error too
            raise Refused("consistency", f"{line[:20]!r} is neither a hex nor a base64 hash") from None
        if len(h) != merkle.HASH_SIZE:
            raise Refused("consistency", "a consistency proof line is not a 32-byte hash")
        hashes.append(h)
    return start, end, hashes


def _open_checkpoint(
    text: bytes, log_key: note.Verifier, witnesses: Sequence[note.Verifier], layer: str
) -> tuple[note.SignedNote, note.Checkpoint]:
    """A checkpoint signed by the log key, its cosignatures checked; layer names it in refusals."""
    try:
        opened = note.open_note(text, [log_key, *witnesses])
    except note.NoteError as err:
        raise Refused("cosignature" if "witness" in str(err) else layer, str(err)) from None
    if log_key.name not in opened.verified_by:
        raise Refused(layer, f"the checkpoint is not signed by the log key {log_key.name}")
    try:
        cp = note.Checkpoint.parse(opened.text)
    except note.NoteError as err:
        raise Refused(layer, str(err)) from None
    if cp.origin != log_key.name:
        raise Refused(layer, f"the checkpoint is of log {cp.origin!r}, not {log_key.name!r}")
    return opened, cp


def _cosigned(report: Report, opened: note.SignedNote, need: int, state: str) -> None:
    cosigned = dict(opened.cosigned)
    for name, when in sorted(cosigned.items()):
        report.steps.append(f"Witness {name} cosigned {state} at {_when(when)}: it saw no other history.")
    report.witnesses = sorted(cosigned)
    if len(cosigned) < need:
        raise Refused("cosignature", f"{len(cosigned)} witness cosignatures, the quorum is {need}")


def verify(
    data: bytes | str,
    log_key: note.Verifier,
    witnesses: Sequence[note.Verifier] = (),
    quorum: int | None = None,
    newer: bytes | None = None,
    consistency: str | bytes = "",
) -> Report:
    """Checks a provenance file offline with the log's key and the witnesses' keys; quorum
    (default: every witness given) cosignatures are required. With newer (a later checkpoint
    of the log) and the consistency proof from the file's checkpoint to it (the text
    parse_consistency reads), the quorum is asked of the newer checkpoint, which must extend
    the file's (a file may carry them itself: "witnessed"). Raises Refused, never another error."""
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        raise Refused("file", "not JSON: not a provenance certificate") from None
    _shape(doc)
    if newer is None and doc.get("witnessed") is not None:
        newer = doc["witnessed"]["checkpoint"].encode()
        consistency = "\n".join(doc["witnessed"]["consistency"])
    try:
        return _verify(doc, log_key, witnesses, quorum, newer, consistency)
    except Refused:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError, RecursionError) as e:
        # A well-formed file whose contents are not what they should be, in a way no layer
        # names: never a traceback, never a VERIFIED.
        raise Refused("file", f"the file's contents are malformed ({type(e).__name__}: {str(e)[:80]})") from None


def _verify(
    doc: dict[str, Any],
    log_key: note.Verifier,
    witnesses: Sequence[note.Verifier],
    quorum: int | None,
    newer: bytes | None,
    consistency: str | bytes,
) -> Report:
    report = Report(str(doc["kind"]))
    need = len(witnesses) if quorum is None else quorum
    fields = SUBJECT_FIELDS[report.kind]
    if set(doc["subject"]) != set(fields):
        raise Refused("subject", f"a {report.kind} file's subject names {', '.join(fields)}, this one"
                      f" {', '.join(sorted(map(str, doc['subject']))) or 'nothing'}")  # fmt: skip

    # 1. The checkpoint: signed by the log, cosigned by enough witnesses (or a newer
    # checkpoint that is, and extends it).
    opened, cp = _open_checkpoint(str(doc.get("checkpoint", "")).encode(), log_key, witnesses, "checkpoint signature")
    report.tree_size = cp.size
    report.steps.append(f"The log {cp.origin} signed its state at {cp.size:,} entries (root {cp.root.hex()[:16]}…).")
    if newer is None:
        _cosigned(report, opened, need, "that state")
    else:
        later, ncp = _open_checkpoint(newer, log_key, witnesses, "newer checkpoint")
        start, end, hashes = parse_consistency(consistency)
        if (start, end) != (None, None) and (start, end) != (cp.size, ncp.size):
            raise Refused("consistency", f"the proof is from {start} to {end} entries, the checkpoints are of"
                          f" {cp.size} and {ncp.size}")  # fmt: skip
        try:
            merkle.verify_consistency(cp.size, ncp.size, cp.root, ncp.root, hashes)
        except merkle.ProofError as err:
            raise Refused(
                "consistency", f"the state at {ncp.size:,} entries does not extend the file's: {err}"
            ) from None
        report.steps.append(
            f"The log's newer state at {ncp.size:,} entries (root {ncp.root.hex()[:16]}…) holds that state unchanged:"
            f" the consistency proof shows no entry was altered or removed since."
        )
        _cosigned(report, later, need, "the newer state")

    # 2. Every ledger entry the file uses is in that tree.
    entries: dict[int, dict[str, Any]] = {}
    raws: dict[int, bytes] = {}
    for item in doc.get("entries", []):
        raw = _b64(item.get("entry"), "ledger entry")
        try:
            index, path, proof_cp = parse_tlog_proof(str(item.get("proof", "")))
        except ValueError as err:
            raise Refused("ledger inclusion", str(err)) from None
        # The proof's checkpoint must be the file's tree head (the signatures were checked on
        # the file's own copy; a proof may carry fewer or more cosignatures of the same head).
        if index != item.get("index") or proof_cp[: proof_cp.find("\n\n") + 1] != opened.text:
            raise Refused("ledger inclusion", f"the proof of entry {index} is not to the file's checkpoint")
        try:
            merkle.verify_inclusion(index, cp.size, merkle.leaf_hash(raw), path, cp.root)
        except merkle.ProofError as err:
            raise Refused("ledger inclusion", f"entry {index} is not in the log: {err}") from None
        try:
            entries[index] = strict_cbor.loads(raw)
        except ValueError:
            raise Refused("ledger entry", f"entry {index} is not deterministic CBOR") from None
        raws[index] = raw
    if entries:
        report.steps.append(
            f"{len(entries)} ledger entries are in that state ({', '.join(map(str, sorted(entries)))})."
        )

    # 3. Devices: enrolled by a registered installer, keys rotated, revoked.
    installers = {str(e["name"]): bytes(e["public_key"]) for e in entries.values() if e.get("kind") == "installer"}
    devices: dict[str, _Device] = {}
    for index in sorted(entries):
        e = entries[index]
        kind = e.get("kind")
        if kind == "enroll":
            record = e["device"]
            device_id, point = str(record["device_id"]), bytes(record["public_key"])
            installer = installers.get(str(e["installer"]))
            if installer is None:
                raise Refused(
                    "enrollment",
                    f"{device_id} was enrolled by {e['installer']!r}, whose registration is not in the file",
                )
            try:
                identity.check_es256(point, identity.pop_message(record, e["challenge"]), e["pop"], "pop")
                identity.check_installer_sig(installer, record, e["challenge"], e["pop"], e["installer_sig"])
            except Problem as p:
                raise Refused("enrollment", f"{device_id}: {p.detail}") from None
            devices[device_id] = _Device(device_id, record, [(index, point)])
            report.steps.append(
                f"Device {device_id} ({record.get('role')}, meter {record.get('meter_model')}"
                f" {record.get('meter_serial')})"
                f" was enrolled at entry {index}: installer {e['installer']} vouched for it and the board proved it"
                f" holds key {identity.fingerprint(point)}."
            )
        elif kind == "rotate":
            d = devices.get(str(e["device_id"]))
            if d is None:
                raise Refused("key rotation", f"a rotation of {e['device_id']} comes before its enrollment")
            old, new = d.keys[-1][1], bytes(e["new_public_key"])
            message = identity.rotation_message(d.device_id, new, cose.key_id(old), d.keys[-1][0])
            try:
                identity.check_es256(old, message, e["old_sig"], "old_sig")
                identity.check_es256(new, message, e["new_sig"], "new_sig")
            except Problem as p:
                raise Refused("key rotation", f"{d.device_id} at entry {index}: {p.detail}") from None
            d.keys.append((index, new))
            report.steps.append(
                f"Device {d.device_id} rotated its key at entry {index} to {identity.fingerprint(new)}."
            )
        elif kind == "ocmf-enroll":
            record = e["device"]
            device_id, point = str(record["device_id"]), bytes(record["public_key"])
            devices[device_id] = _Device(device_id, record, [(index, point)])
            report.steps.append(
                f"Third-party charger {device_id} ({record.get('meter_model')} {record.get('meter_serial')}, gateway"
                f" {record.get('gateway_serial')}) was enrolled at entry {index} by its OCMF key"
                f" {identity.fingerprint(point)}."
            )
        elif kind == "revoke" and str(e["device_id"]) in devices:
            devices[str(e["device_id"])].revoked_at = index
            report.steps.append(f"Device {e['device_id']} was revoked at entry {index}: {e.get('reason')}.")

    # 4. Packets: each header signed by its device's key at the time.
    headers = {}
    for index in sorted(entries):
        e = entries[index]
        if e.get("kind") != "packet":
            continue
        d = devices.get(str(e["device_id"]))
        if d is None:
            raise Refused(
                "enrollment", f"the packet at entry {index} is of {e['device_id']}, whose enrollment is not in the file"
            )
        if d.revoked_at is not None and d.revoked_at < index:
            raise Refused(
                "device key", f"{d.device_id} was revoked at entry {d.revoked_at}, before its packet at {index}"
            )
        try:
            h = verify_header(bytes(e["header"]), d.key_at(index))
        except PacketError as p:
            raise Refused("header signature", f"packet at entry {index}: {p.detail} (the device's key then: "
                          f"{identity.fingerprint(d.key_at(index))})") from None  # fmt: skip
        if h.device_id != d.device_id or h.seq != e.get("seq"):
            raise Refused("header signature", f"entry {index} names another packet than its header")
        headers[index] = h
        report.steps.append(
            f"Packet {h.seq} of {h.device_id} ({h.count} readings, {_when(h.first_ts)} to {_when(h.last_ts)}) is signed"
            f" by the device's key and its header is ledger entry {index}."
        )

    # 5. Readings: each hashes, by its Merkle path, to its packet's signed root.
    readings = []
    seen: set[tuple[int, int]] = set()
    for item in doc.get("readings", []):
        index, position = item.get("packet"), item.get("position")
        found = headers.get(index) if isinstance(index, int) else None
        if found is None or not isinstance(position, int) or not 0 <= position < found.count:
            raise Refused("merkle path", f"a reading names packet entry {index}, position {position}, not in the file")
        if (index, position) in seen:
            raise Refused("file", f"reading {position} of the packet at entry {index} is in the file twice")
        seen.add((index, position))
        h = found
        raw = _b64(item.get("raw"), "reading bytes")
        path = [_b64(x, "merkle path") for x in item.get("path", [])]
        try:
            merkle.verify_inclusion(position, h.count, merkle.leaf_hash(raw), path, h.root)
        except merkle.ProofError as err:
            raise Refused("merkle path", f"reading {position} of packet {h.seq}: {err}") from None
        try:
            r = decode_reading_strictly(raw)
        except PacketError as p:
            raise Refused("reading bytes", p.detail) from None
        readings.append((h, r))
    if readings:
        report.steps.append(f"{len(readings)} readings hash to their packets' signed Merkle roots, byte for byte.")

    _SUBJECTS[report.kind](doc, report, entries, devices, headers, readings)
    _check_subject(doc["subject"], report)
    return report


def _check_subject(claimed: dict[str, Any], report: Report) -> None:
    """The file's subject must be exactly what its layers proved: a file holding reading 6
    that names reading 7 (another seq, device, issuance, session) is refused."""
    for name in SUBJECT_FIELDS[report.kind]:
        if claimed[name] != report.subject.get(name):
            raise Refused("subject", f"the subject names {name} {claimed[name]!r}; the file proves"
                          f" {report.subject.get(name)!r}")  # fmt: skip
    report.steps.append(f"The file's subject is what it proves: {report.verdict}.")


def _reading_words(r: Any) -> str:
    v = r.values
    if r.kind == KIND_METER:
        return f"import register {v['import_wh']:,} Wh, export register {v['export_wh']:,} Wh"
    if r.kind == KIND_SESSION:
        return f"session {v['session_id'].hex()[:12]}… event {v['event']} at register {v['register_wh']:,} Wh"
    return f"device event {v.get('event')}"


def _subject_reading(
    doc: dict[str, Any], report: Report, entries: Any, devices: Any, headers: Any, readings: Any
) -> None:
    if len(readings) != 1:
        raise Refused("file", "a reading certificate holds one reading")
    h, r = readings[0]
    report.subject = {"device_id": h.device_id, "reading": r.number, "ts": r.ts, "values": _plain(r.values)}
    report.steps.append(f"Reading {r.number} of {h.device_id} at {_when(r.ts)}: {_reading_words(r)}.")
    report.verdict = f"reading {r.number} of {h.device_id} at {_when(r.ts)}: {_reading_words(r)}"


def _subject_packet(
    doc: dict[str, Any], report: Report, entries: Any, devices: Any, headers: Any, readings: Any
) -> None:
    if len(headers) != 1:
        raise Refused("file", "a packet certificate holds one packet")
    ((index, h),) = headers.items()
    if len(readings) != h.count:
        raise Refused("merkle path", f"the packet signed {h.count} readings, the file holds {len(readings)}")
    positions = sorted(item["position"] for item in doc.get("readings", []))
    if positions != list(range(h.count)):  # duplicates are refused before: this is belt and braces
        raise Refused("merkle path", f"the file does not hold each of positions 0..{h.count - 1} exactly once")
    report.subject = {"device_id": h.device_id, "seq": h.seq, "ledger_index": index, "readings": h.count}
    report.steps.append(f"Every one of the packet's {h.count} readings is in the file, each once, positions"
                        f" 0 to {h.count - 1}.")  # fmt: skip
    report.verdict = (f"packet {h.seq} of {h.device_id} (ledger entry {index}) and all {h.count} of its readings,"
                      f" {_when(h.first_ts)} to {_when(h.last_ts)}")  # fmt: skip


def _at(t: int, before: Any, after: Any, register: str) -> int:
    b, a = before.values[register], after.values[register]
    if after.ts <= before.ts:
        return int(b)
    return int(b + (a - b) * (t - before.ts) // (after.ts - before.ts))


def _register_at(t: int, meter: list[Any], numbers: set[int], register: str, layer: str) -> int:
    """The register at t: a meter reading at t, or the straight line between the two meter
    readings around t, rounded down (docs/energy.md), once the file shows they are neighbours
    (every reading number between them is in the file, none of them a meter reading)."""
    for r in meter:
        if r.ts == t:
            return int(r.values[register])
    for b, a in zip(meter, meter[1:], strict=False):
        if b.ts < t < a.ts:
            if not all(n in numbers for n in range(b.number, a.number + 1)):
                raise Refused(layer, f"readings {b.number} and {a.number} around {_when(t)} are not neighbours here")
            return _at(t, b, a, register)
    raise Refused(layer, f"no readings of the file surround {_when(t)}")


def _subject_certificate(
    doc: dict[str, Any], report: Report, entries: Any, devices: Any, headers: Any, readings: Any
) -> None:
    issued = [(i, e) for i, e in entries.items() if e.get("kind") == "issuance"]
    if len(issued) != 1:
        raise Refused("file", "a granular certificate file holds one issuance")
    index, e = issued[0]
    d = devices.get(str(e["device_id"]))
    if d is None:
        raise Refused("enrollment", f"the certificate's device {e['device_id']} is not enrolled in the file")
    register = identity.generation_register_of(str(d.record.get("meter_model", "")))
    meter = sorted(
        (r for h, r in readings if r.kind == KIND_METER and h.device_id == d.device_id), key=lambda r: r.number
    )
    start, end = int(e["production_starting_interval"]), int(e["production_ending_interval"])
    numbers = {r.number for h, r in readings if h.device_id == d.device_id}
    made = _register_at(end, meter, numbers, register, "energy") - _register_at(
        start, meter, numbers, register, "energy"
    )
    if made != int(e["bundle_quantity"]):
        raise Refused(
            "energy", f"the readings give {made} Wh for the hour, the certificate says {e['bundle_quantity']}"
        )
    report.steps.append(
        f"Certificate {e['bundle_id_range_start']}–{e['bundle_id_range_end']} (entry {index}): {made:,} Wh of"
        f" {e.get('energy_source')} from {d.device_id}, {_when(start)} to {_when(end)}; the signed registers around"
        f" the hour give exactly {made:,} Wh ({register})."
    )
    report.subject = {"device_id": d.device_id, "issuance_ledger_index": index, "issuance_id": e.get("issuance_id"),
                      "wh": made, "start": start, "end": end,
                      "bundle_id_range": [e["bundle_id_range_start"], e["bundle_id_range_end"]]}  # fmt: skip
    lo, hi = int(e["bundle_id_range_start"]), int(e["bundle_id_range_end"])
    for ci, c in sorted(entries.items()):
        if c.get("kind") != "claim":
            continue
        ranges = [(int(a), int(b)) for a, b in c.get("ranges", [])]
        if not sum(max(0, min(b, hi) - max(a, lo) + 1) for a, b in ranges):
            raise Refused("claim", f"the claim at entry {ci} names none of this certificate's Wh")
    words = _status(doc, report, entries, lo, hi)
    report.verdict = (f"certificate {lo}–{hi}: {made:,} Wh of {e.get('energy_source')} from {d.device_id},"
                      f" {_when(start)} to {_when(end)}; {words}")  # fmt: skip


def _status(doc: dict[str, Any], report: Report, entries: dict[int, dict[str, Any]], lo: int, hi: int) -> str:
    """The certificate's status at the file's checkpoint, from the registry map the log commits
    to in the checkpoint's last entry (verifier/certificates/registry_map.py): leaves consecutive in the
    map that tile ids lo..hi exactly, so no claim, transfer, withdrawal or expiry is left out."""
    states = [(i, x) for i, x in entries.items() if x.get("kind") == registry_map.ENTRY_KIND]
    if len(states) != 1:
        raise Refused("status", "a certificate file holds the one registry-state entry its checkpoint ends with")
    si, state = states[0]
    if si != report.tree_size - 1:
        raise Refused("status", f"the registry state (entry {si}) is not the last entry of the checkpoint"
                      f" ({report.tree_size:,} entries): an action after it could be left out")  # fmt: skip
    root, count, at = bytes(state["root"]), int(state["bundles"]), int(state["time"])
    items = doc.get("status") or []
    if not items:
        raise Refused("status", "the file does not show the certificate's status")
    first = items[0]["position"]
    if [s["position"] for s in items] != list(range(first, first + len(items))):
        raise Refused("status", "the status leaves are not consecutive in the registry map")
    leaves = []
    for s in items:
        raw = _b64(s["leaf"], "status")
        try:
            merkle.verify_inclusion(s["position"], count, merkle.leaf_hash(raw), [_b64(x, "status") for x in s["path"]],
                                    root)  # fmt: skip
            leaves.append(registry_map.Leaf.decode(raw))
        except (merkle.ProofError, ValueError) as err:
            raise Refused("status", f"leaf {s['position']} of the registry map: {err}") from None
    if (
        leaves[0].start != lo
        or leaves[-1].end != hi
        or any(b.start != a.end + 1 for a, b in zip(leaves, leaves[1:], strict=False))
    ):
        raise Refused("status", f"the status leaves do not cover certificate ids {lo}–{hi} exactly")
    named = {leaf.claim for leaf in leaves if leaf.claim is not None}
    held = {i for i, x in entries.items() if x.get("kind") == "claim"}
    if named - held:
        raise Refused("claim", f"the claim at entry {min(named - held)} that cancelled part of it is not in the file")
    if held - named:
        raise Refused("claim", f"the claim at entry {min(held - named)} is not one the registry's state names")
    report.steps.append(
        f"The registry's state at the checkpoint (entry {si}, {_when(at)}, the checkpoint's last entry: nothing"
        f" after it) holds the certificate's ids in {len(leaves)} range(s), each proven in its map of {count:,}:"
    )
    shown, parts = [], []
    for leaf in leaves:
        wh = leaf.end - leaf.start + 1
        item: dict[str, Any] = {"range": [leaf.start, leaf.end], "wh": wh, "holder": leaf.holder}
        if leaf.status == "Claimed":
            c = entries[int(leaf.claim or 0)]
            item.update(status="Claimed", beneficiary=c.get("beneficiary"), claim_index=leaf.claim,
                        claimed_at=c.get("time"))  # fmt: skip
            text = f"Claimed for {c.get('beneficiary')} on {_when(int(c.get('time', 0)))} (entry {leaf.claim})"
        elif leaf.status == "Withdrawn":
            w = entries.get(leaf.changed_at)
            if w is None or w.get("kind") != "withdraw":
                raise Refused("status", f"the withdrawal at entry {leaf.changed_at} is not in the file")
            item.update(status="Withdrawn", withdrawn_index=leaf.changed_at, reason=w.get("reason"))
            text = f"Withdrawn at entry {leaf.changed_at}: {w.get('reason')}"
        elif leaf.expires_at <= at:
            item.update(status="Expired", expired_at=leaf.expires_at)
            text = f"Expired on {_when(leaf.expires_at)}"
        else:
            item.update(status="Active", expires_at=leaf.expires_at)
            text = f"Active, held by {leaf.holder or 'the issuing body'} (expires {_when(leaf.expires_at)[:10]})"
        shown.append(item)
        parts.append(f"{wh:,} Wh {text}")
        report.steps.append(f"  ids {leaf.start}–{leaf.end}, {wh:,} Wh: {text}.")
    report.subject["status"] = shown
    report.subject["status_at"] = at
    report.subject["claimed_wh"] = sum(x["wh"] for x in shown if x["status"] == "Claimed")
    return f"at {_when(at)}: " + "; ".join(parts)


def _subject_session(
    doc: dict[str, Any], report: Report, entries: Any, devices: Any, headers: Any, readings: Any
) -> None:
    sid = str(doc.get("subject", {}).get("session_id", ""))
    signed = [(i, x) for i, x in entries.items() if x.get("kind") == "ocmf"]
    if signed and not readings:
        _ocmf_session(doc, report, devices, signed, sid)
        return
    mine = [(h, r) for h, r in readings if r.kind == KIND_SESSION and r.values["session_id"].hex() == sid]
    start = [r for _, r in mine if r.values["event"] == 1]
    stop = [r for _, r in mine if r.values["event"] == 3]
    if len(start) != 1 or len(stop) != 1:
        raise Refused("session", f"the file does not hold session {sid or '?'}'s start and stop readings")
    h = mine[0][0]
    d = devices[h.device_id]
    begin, end = start[0], stop[0]
    energy = int(end.values["register_wh"]) - int(begin.values["register_wh"])
    report.steps.append(
        f"Charging session {sid[:12]}… on {h.device_id}: {_when(begin.ts)} to {_when(end.ts)},"
        f" {energy:,} Wh by the signed registers ({begin.values['register_wh']:,} to {end.values['register_wh']:,} Wh)."
    )
    report.subject = {
        "device_id": h.device_id,
        "session_id": sid,
        "start": begin.ts,
        "stop": end.ts,
        "energy_wh": energy,
    }
    report.verdict = (f"charging session {sid} on {h.device_id}, {_when(begin.ts)} to {_when(end.ts)},"
                      f" {energy:,} Wh")  # fmt: skip
    if "ocmf_sig" in end.values:
        payload = ocmf.payload(
            h.device_id, end.number, begin.values.get("token_hash"),
            (begin.ts, begin.quality, begin.values["register_wh"]), (end.ts, end.quality, end.values["register_wh"]),
        )  # fmt: skip
        if doc.get("ocmf") is not None and doc["ocmf"] != ocmf.record(payload, end.values["ocmf_sig"]):
            raise Refused("ocmf", "the file's OCMF record is not the one the charger signed")
        stop_packet = next(h for h, r in mine if r is end)
        stop_index = next(i for i, packet in headers.items() if packet is stop_packet)
        if not ocmf.verify(payload, end.values["ocmf_sig"], d.key_at(stop_index)):
            raise Refused("ocmf", "the OCMF signature does not verify with the charger's key")
        report.steps.append("The OCMF record the charger signed at the stop verifies with the same device key.")
        report.subject["ocmf_verified"] = True


def _ocmf_session(doc: dict[str, Any], report: Report, devices: Any, signed: list[tuple[int, Any]], sid: str) -> None:
    """A third-party charger's session: the OCMF record in a ledger entry, signed by the key
    the charger was enrolled with, over the payload's bytes as sent (as pyocmf checks it); or
    a begin record and the end record that names its entry, each so signed, that pair."""
    if len(signed) not in (1, 2):
        raise Refused("session", "a third-party session's file holds the ledger entries of its OCMF records (one, or"
                      " its begin and its end)")  # fmt: skip
    signed = sorted(signed, key=lambda item: item[0])
    index, entry = signed[-1]
    d = devices.get(str(entry.get("device_id")))
    if d is None:
        raise Refused("enrollment", f"the OCMF record's charger {entry.get('device_id')} is not enrolled in the file")
    parsed = []
    for i, x in signed:
        if x.get("device_id") != d.device_id:
            raise Refused("session", "the file's OCMF records are of two chargers")
        try:
            record = ocmf.parse(str(x["record"]))
            ocmf.part(record)
        except ocmf.OcmfError as err:
            raise Refused("ocmf", f"the record at entry {i}: {err}") from None
        if not ocmf.verify(record.payload, record.signature, d.key_at(i), record.algorithm):
            raise Refused("ocmf", f"the OCMF signature at entry {i} does not verify with the charger's enrolled key")
        parsed.append(record)
    record = parsed[-1]
    try:
        if len(parsed) == 2:
            if entry.get("begin") != signed[0][0]:
                raise Refused("session", f"the end record at entry {index} does not name the begin record at entry"
                              f" {signed[0][0]}")  # fmt: skip
            begin, end = ocmf.pair(parsed[0], record)
        else:
            begin, end = ocmf.session_span(record)
    except ocmf.OcmfError as err:
        raise Refused("ocmf", f"the record at entry {index}: {err}") from None
    if doc.get("ocmf") is not None and doc["ocmf"] != record.text:
        raise Refused("ocmf", "the file's OCMF record is not the one in the ledger")
    made = ocmf.digest(parsed[0])[:8].hex()
    if made != sid:
        raise Refused("subject", f"the subject names session {sid!r}; the record is session {made}")
    if len(parsed) == 2:
        report.steps.append(f"The charger signed the session's begin (entry {signed[0][0]}) and its end (entry"
                            f" {index}) in two records; the end names the begin, and both verify.")  # fmt: skip
    energy = end.wh - begin.wh
    report.steps.append(
        f"The OCMF record at entry {index} verifies with {d.device_id}'s enrolled key over its payload as sent:"
        f" session {sid}, {_when(begin.ts)} to {_when(end.ts)}, {energy:,} Wh ({begin.mwh / 1e6} to"
        f" {end.mwh / 1e6} kWh on {begin.obis})."
    )
    report.subject = {"device_id": d.device_id, "session_id": sid, "start": begin.ts, "stop": end.ts,
                      "energy_wh": energy, "ocmf_verified": True}  # fmt: skip
    report.verdict = (f"charging session {sid} on third-party charger {d.device_id}, {_when(begin.ts)} to"
                      f" {_when(end.ts)}, {energy:,} Wh, signed by the charger (OCMF)")  # fmt: skip


_SUBJECTS = {"reading": _subject_reading, "packet": _subject_packet, "certificate": _subject_certificate,
             "session": _subject_session}  # fmt: skip


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.hex() if isinstance(v, bytes) else v) for k, v in values.items()}
