"""Charging sessions from a charger's session readings (docs/charging.md): one record per
session id, with its start and stop, the energy from the registers, the stop reason in
words, its samples, its state, the readings that prove it and whether the OCMF record the
charger signed at the stop verifies. A session that crosses a power cut is one session.
Derived from the readings (pure rules in `derive`), so an audit gets the same answer."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from verifier.charging import ocmf_chargers
from verifier.devices import identity, ingest, lifecycle, records
from verifier.storage import Connection, Unavailable, transaction
from verifier.wire import cose, ocmf
from verifier.wire.packet import KIND_DEVICE, KIND_SESSION, Reading, decode_stored

log = logging.getLogger("wattproof.verifier")

START, SAMPLE, STOP = 1, 2, 3
EVENT_POWER_LOSS = 3
REASONS = {1: "the vehicle stopped charging", 2: "the cable was unplugged", 3: "pilot fault"}
STATES = ("active", "completed", "completed-after-power-loss", "disputed")


@dataclass
class Session:
    device_id: str
    session_id: str  # hex, as the charger chose it
    connector: int
    start: Reading
    token_hash: bytes | None
    stop: Reading | None = None
    samples: list[Reading] = field(default_factory=list)
    interrupted: bool = False  # a power loss while it was open
    disputed: str | None = None  # why, when it is
    ocmf_verified: bool | None = None  # None: the stop carries no OCMF signature
    record: ocmf.Record | None = None  # a third-party charger's session: the record it signed
    ledger_index: int | None = None  # ... and the ledger entry that holds it
    public_key: bytes = b""  # the charger's key its OCMF record is checked with (SEC1 point)
    begin_record: tuple[int, ocmf.Record] | None = None  # its begin, where signed in a record of its own

    @property
    def state(self) -> str:
        if self.disputed:
            return "disputed"
        if self.stop is None:
            return "active"
        return "completed-after-power-loss" if self.interrupted else "completed"

    @property
    def energy_wh(self) -> int | None:
        if self.stop is None:
            return None
        return int(self.stop.values["register_wh"]) - int(self.start.values["register_wh"])

    @property
    def source(self) -> str:
        return "board" if self.record is None else "ocmf"

    def ocmf_payload(self) -> str | None:
        """The OCMF payload the charger signed at the stop (docs/protocol.md 4.1)."""
        if self.record is not None:
            return self.record.payload
        if self.stop is None or "ocmf_sig" not in self.stop.values:
            return None
        return ocmf.payload(
            self.device_id,
            self.stop.number,
            self.token_hash,
            (self.start.ts, self.start.quality, self.start.values["register_wh"]),
            (self.stop.ts, self.stop.quality, self.stop.values["register_wh"]),
        )

    def ocmf_record(self, payload: str | None = None) -> str | None:
        """The complete OCMF string; payload: ocmf_payload() when the caller has it already."""
        if self.record is not None:
            return self.record.text
        text = payload or self.ocmf_payload()
        return None if text is None or self.stop is None else ocmf.record(text, self.stop.values["ocmf_sig"])


# A charger's keys by reading: (the first reading number signed with it, the key), in order.
Keys = Sequence[tuple[int, bytes]]


# OCMF checks made before, by stop reading number: (key id of the key used, verified).
Verdicts = dict[int, tuple[bytes, bool]]


def derive(
    device_id: str, readings: Iterable[Reading], public_key: bytes | Keys, verdicts: Verdicts | None = None
) -> list[Session]:
    """The sessions of a charger's session and device readings, in reading order; a stop's
    OCMF record is checked with the key in force for its reading (public_key: the one key,
    or the keys by reading when the charger's key was rotated). verdicts: checks made
    before, taken as they are when made with the same key; the checks made now are added."""
    by_id: dict[str, Session] = {}
    keys = [(0, public_key)] if isinstance(public_key, bytes) else public_key
    _fold(by_id, device_id, readings, keys, {} if verdicts is None else verdicts)
    return list(by_id.values())


def _key(keys: Keys, number: int) -> bytes:
    key = keys[0][1]
    for first, k in keys:
        if first <= number:
            key = k
    return key


def _fold(
    by_id: dict[str, Session], device_id: str, readings: Iterable[Reading], keys: Keys, verdicts: Verdicts
) -> None:
    """derive's rules, reading by reading, onto the sessions found so far (by id, in the
    order they started); changes those sessions in place, and adds its checks to verdicts."""
    for r in readings:
        if r.kind == KIND_DEVICE and r.values["event"] == EVENT_POWER_LOSS:
            for open_session in by_id.values():
                if open_session.stop is None:
                    open_session.interrupted = True
            continue
        if r.kind != KIND_SESSION:
            continue
        sid, event, register = r.values["session_id"].hex(), r.values["event"], r.values["register_wh"]
        found = by_id.get(sid)
        if found is None:
            s = by_id[sid] = Session(device_id, sid, r.values["connector"], r, r.values.get("token_hash"))
            s.public_key = _key(keys, r.number)
            if event != START:
                s.disputed = "no start reading"
                if event == SAMPLE:
                    continue
        else:
            s = found
            if event == START:
                s.disputed = "started twice"
                continue
        if event == START:
            continue
        if s.stop is not None:
            s.disputed = "a reading after the stop"
            continue
        last = (s.samples[-1] if s.samples else s.start).values["register_wh"]
        if register < last:
            s.disputed = "the register went back during the session"
        if event == SAMPLE:
            s.samples.append(r)
            continue
        s.stop = r
        s.public_key = _key(keys, r.number)
        text = s.ocmf_payload()
        if text is not None and s.start is not r:
            kid, known = cose.key_id(s.public_key), verdicts.get(r.number)
            if known is not None and known[0] == kid:
                s.ocmf_verified = known[1]
            else:
                s.ocmf_verified = ocmf.verify(text, r.values["ocmf_sig"], s.public_key)
                verdicts[r.number] = (kid, s.ocmf_verified)
            if not s.ocmf_verified:
                s.disputed = "the OCMF signature does not verify"


_QUALITY = {"U": 0, "I": 1, "R": 1, "S": 2}  # OCMF time status: a relative time is informative


def _ocmf_reading(r: ocmf.Reading, event: int) -> Reading:
    values = {"event": event, "register_wh": r.wh, "register_mwh": r.mwh}
    return Reading(KIND_SESSION, -1, r.ts, _QUALITY[r.sync], values, b"")


def from_records(
    device_id: str, found: Iterable[ocmf_chargers.Signed], public_key: bytes, connector: int = 1
) -> list[Session]:
    """The sessions of a third-party charger: one for each session it signed (in one OCMF
    record, or in a begin and an end record), its begin and end the first and last billing
    readings, the readings between them its samples; a begin not closed yet is active."""
    out = []
    for signed in found:
        records = [r for _, r in ([signed.begin] if signed.begin else [])] + [signed.record]
        verified = all(ocmf.verify(r.payload, r.signature, public_key, r.algorithm) for r in records)
        kind, first, last = ocmf.part(records[0])
        begin, end = (first, None) if kind == ocmf.BEGIN and len(records) == 1 else (first, ocmf.part(records[-1])[2])
        samples = [x for r in records for x in ocmf.billing(r)]
        out.append(
            Session(
                device_id,
                ocmf_chargers.session_id(signed.first[1]),
                connector,
                _ocmf_reading(begin, START),
                None,
                None if end is None else _ocmf_reading(end, STOP),
                [_ocmf_reading(r, SAMPLE) for r in samples[1 : len(samples) - (end is not None)]],
                disputed=None if verified else "the OCMF signature does not verify",
                ocmf_verified=verified,
                record=signed.record,
                ledger_index=signed.index,
                public_key=public_key,
                begin_record=signed.begin,
            )
        )
    return out


def for_device(db: Connection, device_id: str) -> list[Session]:
    """Every session of one charger, from its stored readings (or, for a third-party
    charger, its OCMF records) and its enrolled key."""
    row = lifecycle.row_of(db, device_id)
    if row is None:
        return []
    if row[3] == identity.OCMF_ROLE:
        connector = lifecycle.attributes_of(db, device_id).get("charge_point", {}).get("connector_id", "1")
        return from_records(
            device_id,
            ocmf_chargers.records_of(db, device_id),
            row[0],
            int(connector) if str(connector).isdigit() else 1,
        )
    now = ingest.chain_head(db, device_id)
    if now is None:
        return []  # enrolled, nothing sent yet
    point = row[0]
    with _lock:
        kept = _derived.get(device_id)
    if kept is not None and kept.key == point and kept.head == now:
        return list(kept.by_id.values())
    by_id: dict[str, Session] = {}
    after = -1  # the readings folded so far: numbers up to this one
    if kept is not None and kept.key == point and _extends(db, device_id, kept.head):
        # The charger sent packets since: only their readings are folded in, onto copies
        # of the sessions they can change (the kept ones are shared with other requests).
        by_id, after = dict(kept.by_id), kept.last_number
    raws = records.readings_after(db, device_id, after, (KIND_SESSION, KIND_DEVICE))
    new = [decode_stored(raw) for _, raw in raws]
    if after >= 0:
        touched = {r.values["session_id"].hex() for r in new if r.kind == KIND_SESSION}
        for sid, s in by_id.items():
            if s.stop is None or sid in touched:
                by_id[sid] = replace(s, samples=list(s.samples))
    keys = kept.keys if after >= 0 and kept and kept.keys[-1][0] < _NOT_YET else _keys(db, device_id, point)
    verdicts = _verdicts(db, device_id, after)
    before = dict(verdicts)
    _fold(by_id, device_id, new, keys, verdicts)
    _keep_verdicts(db, device_id, {n: v for n, v in verdicts.items() if before.get(n) != v})
    last = int(raws[-1][0]) if raws else after
    _keep(
        _Derived(
            device_id,
            point,
            now,
            by_id,
            last,
            (kept.readings if after >= 0 and kept else 0) + len(raws),
            keys,
        )
    )
    return list(by_id.values())


def checked_again(db: Connection, device_id: str) -> Verdicts:
    """Every OCMF check of the charger's stops made again from its stored readings and its
    keys, taking nothing stored (what the audit compares the stored checks with)."""
    row = lifecycle.row_of(db, device_id)
    if row is None:
        return {}
    raws = records.readings_after(db, device_id, -1, (KIND_SESSION, KIND_DEVICE))
    made: Verdicts = {}
    _fold({}, device_id, (decode_stored(raw) for _, raw in raws), _keys(db, device_id, row[0]), made)
    return made


def _verdicts(db: Connection, device_id: str, after: int) -> Verdicts:
    """The OCMF checks stored for the charger's stops after reading number after."""
    rows = db.execute(
        "SELECT stop_number, key_id, verified FROM ocmf_verdicts WHERE device_id = ? AND stop_number > ?",
        (device_id, after),
    ).fetchall()
    return {int(n): (bytes(kid), bool(v)) for n, kid, v in rows}


def _keep_verdicts(db: Connection, device_id: str, made: Verdicts) -> None:
    """Stores the checks just made, for every worker (a check never changes: its readings
    and key never do). A read inside someone's transaction, or a database that cannot take
    the write (now, or ever: a read-only copy), stores nothing: the next reader makes the
    checks again."""
    if not made or db.in_transaction:
        return
    rows = [(device_id, n, kid, int(v)) for n, (kid, v) in sorted(made.items())]
    try:
        with transaction(db):
            db.executemany(
                "INSERT INTO ocmf_verdicts (device_id, stop_number, key_id, verified) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (device_id, stop_number) DO UPDATE SET key_id = excluded.key_id,"
                " verified = excluded.verified",
                rows,
            )
    except Unavailable:
        pass
    except Exception as e:  # noqa: BLE001 - a database this role may not write to (a read-only copy)
        log.warning("OCMF checks of %s not stored (%s): every worker will make them again", device_id, e)


_NOT_YET = 2**63  # a key set after the charger's last packet: its first reading is not known


def _keys(db: Connection, device_id: str, point: bytes) -> Keys:
    """The charger's keys by reading: the readings of a packet are its key's, the key in
    force when the packet was appended (as the audit and the provenance verifier hold)."""
    history = lifecycle.keys(db, device_id)
    if len(history) <= 1:
        return [(0, point)]
    out = [(0, history[0][1])]
    for since, key in history[1:]:
        first = ingest.first_number_after(db, device_id, since)
        out.append((_NOT_YET if first is None else first, key))  # no packet since: no reading is its yet
    return out


def _extends(db: Connection, device_id: str, head: tuple[int, bytes]) -> bool:
    """Whether the device's chain still holds the packet head (seq, header hash): its chain
    only grows, so the readings derived before are a prefix of its readings now (a database
    restored from an older backup is not, and everything is derived again)."""
    return ingest.packet_hash(db, device_id, head[0]) == head[1]


@dataclass(frozen=True)
class _Derived:
    """A charger's sessions as derived from its readings up to its chain head then."""

    device_id: str
    key: bytes  # the device's key in force then
    head: tuple[int, bytes]  # (seq, header hash) of its last packet then
    by_id: dict[str, Session]  # in the order they started
    last_number: int  # the last session or device reading folded in
    readings: int  # how many readings they came from (what keeping them costs)
    keys: Keys  # the charger's keys by reading (_keys), all but the current one final


# Sessions derived before, one entry per charger: the next request after the charger's next
# packet folds only that packet's readings in. Bounded by the readings they came from.
_derived: dict[str, _Derived] = {}
_DERIVED_READINGS = 500_000
_lock = threading.Lock()


def _keep(entry: _Derived) -> None:
    with _lock:
        _derived.pop(entry.device_id, None)
        while _derived and sum(d.readings for d in _derived.values()) + entry.readings > _DERIVED_READINGS:
            del _derived[next(iter(_derived))]  # oldest first
        if entry.readings <= _DERIVED_READINGS:
            _derived[entry.device_id] = entry


def forget() -> None:
    """Drops the derived sessions kept (benchmarks measure the first answer with it)."""
    with _lock:
        _derived.clear()


def of_chargers(
    db: Connection, stopped_since: int | None = None, device_id: str | None = None
) -> Iterator[tuple[dict[str, Any], bytes, list[Session]]]:
    """Every charger's enrollment attributes, enrolled key and sessions, by device id.
    stopped_since: leaves out the chargers of ours with no reading that late (none of their
    sessions can have stopped since: a stop is a reading), so that a poll for what is new
    derives the active chargers only; device_id: that charger only."""
    roles = ("charger", identity.OCMF_ROLE)
    if device_id is not None:  # that one only: its row, not every charger's
        row = lifecycle.row_of(db, device_id)
        found = [] if row is None or row[3] not in roles else [
            (device_id, row[0], lifecycle.attributes_of(db, device_id), row[3])]  # fmt: skip
    else:
        found = sorted(
            ((charger, point, attributes, role) for role in roles
             for charger, point, attributes, _ in lifecycle.of_role(db, role)),
            key=lambda c: c[0],
        )  # fmt: skip
    for charger, point, attributes, role in found:
        if stopped_since is not None and role != identity.OCMF_ROLE:
            span = records.data_span(db, charger)
            if span is None or span[1] < stopped_since:
                continue
        yield attributes, point, for_device(db, charger)


def _point(r: Reading) -> dict[str, Any]:
    return {
        "reading": r.number if r.number >= 0 else None,
        "ts": r.ts,
        "time": records.iso(r.ts),
        "quality": records.QUALITIES[r.quality],
        "register_wh": r.values["register_wh"],
    }


def _identification(s: Session) -> str:
    return "in the OCMF record" if s.record is not None and ocmf.identification(s.record) else "none"


def session_json(s: Session, samples: bool = False, green: dict[str, Any] | None = None) -> dict[str, Any]:
    """The session record; green: its green share (green.Green.as_json), None when open or disputed."""
    out: dict[str, Any] = {
        "device_id": s.device_id,
        "session_id": s.session_id,
        "connector": s.connector,
        "state": s.state,
        "start": _point(s.start),
        "stop": None if s.stop is None else _point(s.stop),
        "energy_wh": s.energy_wh,
        "duration_s": None if s.stop is None else s.stop.ts - s.start.ts,
        "stop_reason": None if s.stop is None else REASONS.get(s.stop.values.get("reason", 0), "not given"),
        "token": "hashed" if s.token_hash is not None else _identification(s),
        "ocmf_verified": s.ocmf_verified,
        "disputed": s.disputed,
        "sample_count": len(s.samples),
        "source": s.source,
        "green": green,
        "readings": [s.start.number, *(x.number for x in s.samples), *([s.stop.number] if s.stop else [])],
    }
    if s.record is not None:
        out["readings"] = []
        out["ledger_index"] = s.ledger_index
        out["pagination"] = s.record.fields.get("PG")
    if samples:
        out["samples"] = [_point(x) for x in s.samples]
    return out
