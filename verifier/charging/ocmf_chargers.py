"""Chargers that are not ours: Eichrecht chargers (KEBA, ABL, Compleo ...) that sign OCMF
records with a key of their own meter or gateway. An operator enrolls one by its OCMF
public key (a ledger entry `ocmf-enroll`); every record it signed that the operator posts is
verified with that key and appended to the ledger as it was signed (`ocmf`), and the
charger's sessions and CDRs are built from those records (docs/charging.md). Plain
functions over a connection, called inside a transaction; views only parse."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from verifier.devices import identity, lifecycle
from verifier.log import ledger
from verifier.storage import Connection
from verifier.wire import ocmf
from verifier.wire.problems import Problem

MAX_RECORDS = 1000  # records of one request


def device_record(body: Any) -> dict[str, Any]:
    """The enrollment's device record from the JSON an operator sends: the public key as hex
    DER SubjectPublicKeyInfo (as the charger's display, label or OCMF export prints it)."""
    if not isinstance(body, dict):
        raise Problem("invalid-field", "charger", "expected a JSON object")
    record = dict(body)
    raw_key = record.get("public_key")
    if not isinstance(raw_key, str):
        raise Problem("invalid-field", "public_key", "hex DER SubjectPublicKeyInfo of the charger's P-256 key")
    compact = "".join(raw_key.split())
    if not compact or len(compact) % 2 or not all(c in "0123456789abcdefABCDEF" for c in compact):
        raise Problem("invalid-field", "public_key", "hex DER SubjectPublicKeyInfo of the charger's P-256 key")
    try:
        record["public_key"] = ocmf.point_of(compact)
    except ocmf.OcmfError as e:  # well-formed hex that is no P-256 key
        raise Problem("unprocessable", "public_key", str(e)) from None
    record["role"] = identity.OCMF_ROLE
    record.setdefault("meter_model", record.get("gateway_id", "ocmf"))
    record.setdefault("meter_serial", identity.UNKNOWN_SERIAL)
    return identity.check_ocmf_charger(record)


def enroll(db: Connection, device: dict[str, Any], by: str, now: int | None = None) -> tuple[int, bool]:
    """Enrolls a third-party charger; returns (ledger index, already enrolled). The same
    record again is idempotent."""
    identity.check_ocmf_charger(device)
    device_id = device["device_id"]
    known = lifecycle.row_of(db, device_id)
    if known is not None:
        if known[3] == identity.OCMF_ROLE and known[2] == "active" and known[0] == device["public_key"]:
            return known[1], True
        raise Problem("already-enrolled", "device_id", f"device id {device_id} is taken (enrolled or revoked)")
    if lifecycle.key_taken(db, device["public_key"]):
        raise Problem("already-enrolled", "public_key", "this key belongs to another device")
    for other, _, attrs, status in lifecycle.of_role(db, identity.OCMF_ROLE):
        if (
            status == "active"
            and "gateway_serial" in device
            and attrs.get("gateway_serial") == device["gateway_serial"]
        ):
            raise Problem("already-enrolled", "gateway_serial", f"charger {other} has gateway serial "
                          f"{device['gateway_serial']}: revoke it first if the charger was replaced")  # fmt: skip
    lifecycle.meter_free(db, device)
    idx = ledger.append(db, "ocmf-enroll", device_id, {"device": device, "by": by, "time": int(now or time.time())})
    lifecycle.add(db, device, attributes(device), idx)
    return idx, False


def attributes(device: dict[str, Any]) -> dict[str, Any]:
    """What the devices table keeps of the record beside its id, key and role."""
    return {k: v for k, v in device.items() if k not in ("device_id", "public_key", "role")}


# -- records ---------------------------------------------------------------------------------


def parse_body(body: bytes, content_type: str) -> list[tuple[str, str | None]]:
    """(OCMF string, public key hex or None) of each record in a request body: the S.A.F.E.
    XML container (application/xml), or text: one record a line, each optionally followed by
    its public key on the next line (the two-line form a driver pastes)."""
    try:
        if content_type in ("application/xml", "text/xml"):
            items = ocmf.from_xml(body)
        else:
            items = _lines(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise Problem("malformed-ocmf", "body", "the text is not UTF-8") from None
    except ocmf.OcmfError as e:
        raise Problem("malformed-ocmf", "body", str(e)) from None
    if not items:
        raise Problem("malformed-ocmf", "body", "no OCMF record in the body")
    if len(items) > MAX_RECORDS:
        raise Problem("malformed-ocmf", "body", f"at most {MAX_RECORDS} records a request")
    return items


def _lines(text: str) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("OCMF|") or line.upper().startswith(_HEX_OCMF):
            out.append((line, None))
        elif out and out[-1][1] is None and all(c in "0123456789abcdefABCDEF" for c in line):
            out[-1] = (out[-1][0], line)  # the public key of the record before
        else:
            raise ocmf.OcmfError(f"line {n}: an OCMF record (OCMF|...|...), or the public key after one (hex)")
    return out


_HEX_OCMF = b"OCMF|".hex().upper()


@dataclass(frozen=True)
class Imported:
    device_id: str
    ledger_index: int
    session_id: str
    duplicate: bool


def session_id(record: ocmf.Record) -> str:
    """A third-party session's id: the first 16 hex digits of its payload's SHA-256 (of its
    begin record's, when the charger signed the begin and the end in two)."""
    return ocmf.digest(record)[:8].hex()


def _charger(db: Connection, record: ocmf.Record, key_hex: str | None, where: str) -> tuple[str, bytes]:
    serial, gateway = str(record.fields.get("GS", "")), record.fields.get("GI")
    meter = str(record.fields.get("MS", ""))
    found = None
    for device_id, point, attrs, status in lifecycle.of_role(db, identity.OCMF_ROLE):
        # by its gateway serial (GS); a charger whose records carry none, by its meter's (MS)
        ours = attrs["gateway_serial"] == serial if "gateway_serial" in attrs else (
            not serial and attrs.get("meter_serial") == meter)  # fmt: skip
        if ours and attrs.get("gateway_id", gateway) == gateway:
            found = (device_id, point, status)
            if status == "active":
                break
    if found is None:
        named = f"gateway serial (GS) {serial!r}" if serial else f"no gateway serial and meter serial (MS) {meter!r}"
        also = f" and GI {gateway!r}" if gateway else ""
        raise Problem("unknown-charger", where, f"no third-party charger is enrolled with {named}{also}: enroll it"
                      " by its OCMF public key first")  # fmt: skip
    device_id, point, status = found
    if status != "active":
        raise Problem("device-revoked", where, f"charger {device_id} was revoked")
    if key_hex is not None:
        try:
            given = ocmf.point_of(key_hex)
        except ocmf.OcmfError as e:
            raise Problem("malformed-ocmf", where, f"the public key given with the record: {e}") from None
        if given != point:
            raise Problem("unknown-charger", where, f"the public key given with the record is not the one charger"
                          f" {device_id} was enrolled with")  # fmt: skip
    return device_id, point


def check(record_text: str, point: bytes, where: str, keep_identification: bool) -> ocmf.Record:
    """A record as its charger must have signed it: a session (begin, end) or one of its two
    halves (ocmf.part), the signature over the payload's bytes with the charger's key, no user
    named in the clear unless the operator allows it. The same checks the audit makes again."""
    try:
        record = ocmf.parse(record_text)
        ocmf.part(record)
    except ocmf.UnsupportedAlgorithm as e:
        raise Problem("unsupported-ocmf-algorithm", where, str(e)) from None
    except ocmf.OcmfError as e:
        raise Problem("malformed-ocmf", where, str(e)) from None
    if not ocmf.verify(record.payload, record.signature, point, record.algorithm):
        raise Problem("bad-ocmf-signature", where, "the signature (SD) does not verify over the payload as sent:"
                      " the record was changed after the charger signed it, or another key signed it")  # fmt: skip
    if ocmf.identification(record) is not None and not keep_identification:
        raise Problem("ocmf-identification", where, "the record carries its identification (ID) in the clear and"
                      " the ledger is public to auditors: configure the charger not to include it, or allow it"
                      " with OCMF_KEEP_IDENTIFICATION")  # fmt: skip
    return record


def import_records(
    db: Connection, items: list[tuple[str, str | None]], keep_identification: bool = False, now: int | None = None
) -> list[Imported]:
    """Verifies every record and appends each new one to the ledger, all or none: the first
    record that fails refuses the request, naming it (records[i])."""
    out: list[Imported] = []
    when = int(now or time.time())
    for i, (text, key_hex) in enumerate(items):
        where = f"records[{i}]"
        try:
            parsed = ocmf.parse(text)
        except ocmf.UnsupportedAlgorithm as e:
            raise Problem("unsupported-ocmf-algorithm", where, str(e)) from None
        except ocmf.OcmfError as e:
            raise Problem("malformed-ocmf", where, str(e)) from None
        device_id, point = _charger(db, parsed, key_hex, where)
        record = check(text, point, where, keep_identification)
        digest = ocmf.digest(record)
        row = db.execute(
            "SELECT ledger_idx FROM ocmf_records WHERE device_id = ? AND digest = ?", (device_id, digest)
        ).fetchone()
        if row is not None:
            out.append(Imported(device_id, int(row[0]), session_id(record), True))
            continue
        kind, begin, end = ocmf.part(record)
        fields: dict[str, Any] = {"device_id": device_id, "record": record.text, "time": when}
        begin_idx, first = None, record  # first: the record that begins the session (its id)
        if kind == ocmf.BEGIN:
            end = begin  # an open session: no energy yet
        elif kind == ocmf.END:
            begin_idx, begin, first = _begin_of(db, device_id, record, where)
            fields["begin"] = begin_idx
        clash = db.execute(
            "SELECT ledger_idx FROM ocmf_records WHERE device_id = ? AND begin_mwh < ? AND end_mwh > ? LIMIT 1",
            (device_id, end.mwh, begin.mwh),
        ).fetchone()
        if clash is not None and end.mwh > begin.mwh:
            raise Problem("ocmf-overlap", where, f"its register range {begin.mwh / 1e6}..{end.mwh / 1e6} kWh overlaps"
                          f" the record in ledger entry {clash[0]}: the same energy would count twice")  # fmt: skip
        idx = ledger.append(db, "ocmf", device_id, fields)
        db.execute(
            f"INSERT INTO ocmf_records ({', '.join(ROW_COLUMNS)}) VALUES ({', '.join('?' * len(ROW_COLUMNS))})",
            (device_id, digest, idx, begin.ts, end.ts, begin.mwh, end.mwh, kind, begin_idx),
        )
        out.append(Imported(device_id, idx, session_id(first), False))
    return out


ROW_COLUMNS = ("device_id", "digest", "ledger_idx", "begin_ts", "end_ts", "begin_mwh", "end_mwh", "part", "begin_idx")


def _record_at(db: Connection, index: int) -> ocmf.Record:
    return ocmf.parse(str(ledger.entry(db, index).body["record"]))


def _begin_of(db: Connection, device_id: str, end: ocmf.Record, where: str) -> tuple[int, ocmf.Reading, ocmf.Record]:
    """The begin record an end record closes (its entry, its begin reading, the record): of
    the latest of the charger's begin records no end has closed yet, the one it pairs with
    (ocmf.pair). Raises ocmf-unpaired."""
    rows = db.execute(
        "SELECT ledger_idx FROM ocmf_records o WHERE device_id = ? AND part = ? AND NOT EXISTS"
        " (SELECT 1 FROM ocmf_records e WHERE e.device_id = o.device_id AND e.begin_idx = o.ledger_idx)"
        " ORDER BY ledger_idx DESC",
        (device_id, ocmf.BEGIN),
    ).fetchall()
    why = "no begin record of this charger is open"
    for (index,) in rows:
        opened = _record_at(db, int(index))
        try:
            begin, _ = ocmf.pair(opened, end)
        except ocmf.OcmfError as e:
            why = f"the open begin record in ledger entry {index} does not pair with it: {e}"
            continue
        return int(index), begin, opened
    raise Problem("ocmf-unpaired", where, f"the record holds the end of a session and {why}: post the session's begin"
                  " record (TX B) first, or both in one request")  # fmt: skip


@dataclass(frozen=True)
class Signed:
    """A third-party session as its charger signed it: one record of the whole session, or a
    begin record and the end record that closes it (begin set), or a begin alone (still open)."""

    index: int  # the ledger entry of record
    record: ocmf.Record  # the whole session's, the end's, or the open begin's
    begin: tuple[int, ocmf.Record] | None = None  # the begin's entry and record, signed apart

    @property
    def first(self) -> tuple[int, ocmf.Record]:
        """The record (and its entry) that begins the session: its id is this one's."""
        return self.begin or (self.index, self.record)


def records_of(db: Connection, device_id: str) -> list[Signed]:
    """A third-party charger's sessions as signed, by their begin register."""
    rows = db.execute(
        "SELECT ledger_idx, part, begin_idx FROM ocmf_records WHERE device_id = ?"
        " ORDER BY begin_mwh, begin_ts, ledger_idx",
        (device_id,),
    ).fetchall()
    entries = ledger.bodies(db, [int(r[0]) for r in rows])
    found = {idx: ocmf.parse(str(body["record"])) for idx, body in entries.items()}
    closed = {int(r[2]) for r in rows if r[2] is not None}
    out = []
    for idx, _, begin_idx in rows:
        if int(idx) in closed:
            continue  # told with the end that closes it
        begin = None if begin_idx is None else (int(begin_idx), found[int(begin_idx)])
        out.append(Signed(int(idx), found[int(idx)], begin))
    return out
