"""Session records from a charger's readings: states, energy, the OCMF check, and the
readings that prove each session."""

from __future__ import annotations

import base64
from dataclasses import replace
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests import forge
from tests.conftest import Database
from tests.enroll import enroll, es256_signer, record
from verifier import storage
from verifier.charging import sessions
from verifier.devices import ingest
from verifier.wire import ocmf
from verifier.wire.packet import GENESIS, Reading, decode_packet, decode_reading

KEY = ec.derive_private_key(0x5A1E5A1E, ec.SECP256R1())
POINT = KEY.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
T0 = 1_764_000_000


class Charger:
    """Writes the readings a charger of ours would, signing its stops."""

    def __init__(self) -> None:
        self.readings: list[Reading] = []
        self.open: dict[bytes, tuple[int, int, int, bytes | None]] = {}
        self.key = KEY  # the device key it signs its stops with
        self.device_id, self.t0 = "charger-9", T0

    def _add(self, fields: dict[int, object]) -> Reading:
        n = len(self.readings)
        r = decode_reading(cbor2.dumps({0: fields.pop(0), 1: n, 2: self.t0 + 60 * n, 3: 2, **fields}, canonical=True))
        self.readings.append(r)
        return r

    def start(self, sid: bytes, wh: int, token: bytes | None = None) -> None:
        fields: dict[int, object] = {0: 2, 20: 1, 21: sid, 22: 1, 23: wh}
        if token is not None:
            fields[24] = token
        r = self._add(fields)
        self.open[sid] = (r.ts, r.quality, wh, token)

    def sample(self, sid: bytes, wh: int) -> None:
        self._add({0: 2, 20: 2, 21: sid, 22: 1, 23: wh})

    def power_loss(self) -> None:
        self._add({0: 3, 30: 3, 31: "running flag found"})

    def stop(self, sid: bytes, wh: int, sign: bool = True, tamper: bool = False) -> None:
        n, ts = len(self.readings), self.t0 + 60 * len(self.readings)
        start_ts, quality, start_wh, token = self.open[sid]
        text = ocmf.payload(self.device_id, n, token, (start_ts, quality, start_wh), (ts, 2, wh + (1 if tamper else 0)))
        fields: dict[int, object] = {0: 2, 20: 3, 21: sid, 22: 1, 23: wh, 25: 2}
        if sign:
            fields[26] = self.key.sign(text.encode(), ec.ECDSA(hashes.SHA256()))
        self._add(fields)


def _derive(c: Charger) -> dict[str, sessions.Session]:
    return {s.session_id: s for s in sessions.derive("charger-9", c.readings, POINT)}


def test_a_session_with_a_power_cut_is_one_session_counted_once() -> None:
    c = Charger()
    c.start(b"\x01" * 16, 1000, token=b"\xaa" * 32)
    c.sample(b"\x01" * 16, 1500)
    c.power_loss()
    c.sample(b"\x01" * 16, 2500)
    c.stop(b"\x01" * 16, 3100)
    c.start(b"\x02" * 16, 3100)
    c.stop(b"\x02" * 16, 3200)
    c.start(b"\x03" * 16, 3200)
    got = _derive(c)
    first, second, third = got["01" * 16], got["02" * 16], got["03" * 16]
    assert (first.state, first.energy_wh, first.ocmf_verified) == ("completed-after-power-loss", 2100, True)
    assert (second.state, second.energy_wh, second.ocmf_verified) == ("completed", 100, True)
    assert (third.state, third.energy_wh) == ("active", None)
    as_json = sessions.session_json(first, samples=True)
    assert as_json["stop_reason"] == "the cable was unplugged" and as_json["token"] == "hashed"
    assert as_json["readings"] == [0, 1, 3, 4] and [x["register_wh"] for x in as_json["samples"]] == [1500, 2500]
    assert as_json["duration_s"] == 4 * 60
    record = first.ocmf_record()
    assert record is not None and ocmf.verify(ocmf.parse(record).payload, ocmf.parse(record).signature, POINT)


def test_disputed_sessions_say_why() -> None:
    c = Charger()
    c.start(b"\x01" * 16, 1000)
    c.stop(b"\x01" * 16, 1200, tamper=True)  # signed over other registers than the reading's
    c.start(b"\x02" * 16, 1200)
    c.sample(b"\x02" * 16, 1100)
    c.stop(b"\x02" * 16, 1300)
    c.start(b"\x03" * 16, 1300)
    c.stop(b"\x03" * 16, 1400, sign=False)
    c.readings.append(decode_reading(cbor2.dumps({0: 2, 1: 99, 2: T0 + 9999, 3: 2, 20: 3, 21: b"\x04", 22: 1, 23: 5})))
    got = _derive(c)
    assert got["01" * 16].disputed == "the OCMF signature does not verify"
    assert got["02" * 16].disputed == "the register went back during the session"
    assert (got["03" * 16].state, got["03" * 16].ocmf_verified) == ("completed", None)
    assert got["04"].disputed == "no start reading"


def test_the_sessions_a_worker_keeps_follow_the_chargers_new_packets(database: Database) -> None:
    """A worker keeps a charger's sessions and, after the charger's next packet, folds only
    that packet's readings in: after every packet the answer equals the sessions derived
    from all the readings so far, and an answer given before is never changed."""
    c = Charger()
    one, two, three, four = (bytes([n]) * 16 for n in (1, 2, 3, 4))
    c.start(one, 1000, token=b"\xaa" * 32)
    c.sample(one, 1500)
    c.power_loss()  # open: "one"
    c.sample(one, 2500)
    c.start(two, 100)  # two sessions open at once (two connectors)
    c.stop(one, 3100)
    c.sample(two, 150)
    c.power_loss()  # open: "two"
    c.stop(two, 300)
    c.start(three, 3100)
    c.stop(three, 3050)  # the register went back: disputed
    c.start(three, 3200)  # started twice
    c.start(four, 3200)
    c.stop(four, 3400, tamper=True)  # signed over other registers
    c.sample(four, 3500)  # a reading after the stop
    device = record("charger-9", POINT, role="charger", capacity_w=22_000)
    del device["technology"]
    conn = storage.connect(database.target)
    try:
        enroll(conn, device, es256_signer(KEY))
        sessions.forget()
        answers, prev = [], GENESIS
        for seq, n in enumerate(range(0, len(c.readings), 3)):
            part = c.readings[n : n + 3]
            raws = [r.raw for r in part]
            data = forge.packet(KEY, forge.header_map("charger-9", seq, raws, [r.ts for r in part], prev), raws)
            prev = decode_packet(data).header_hash
            assert isinstance(ingest.accept_batch(conn, [data])[0], ingest.Outcome)
            got = sessions.for_device(conn, "charger-9")
            expected = sessions.derive("charger-9", c.readings[: n + 3], POINT)
            assert [sessions.session_json(s, samples=True) for s in got] == [
                sessions.session_json(s, samples=True) for s in expected
            ]
            answers.append((got, [sessions.session_json(s, samples=True) for s in got]))
        assert sessions._derived["charger-9"].readings == len(c.readings)  # each reading read once
        for got, as_json in answers:
            assert [sessions.session_json(s, samples=True) for s in got] == as_json
        states = [s.state for s in answers[-1][0]]
        assert states == ["completed-after-power-loss", "completed-after-power-loss", "disputed", "disputed"]
        # A chain head the worker kept that the chain no longer holds (a database restored
        # from an older backup): everything is derived again.
        kept = sessions._derived["charger-9"]
        sessions._derived["charger-9"] = replace(kept, head=(kept.head[0], b"\x00" * 32), readings=0)
        again = sessions.for_device(conn, "charger-9")
        assert [s.state for s in again] == states and sessions._derived["charger-9"].readings == len(c.readings)
    finally:
        conn.close()
        sessions.forget()


def test_a_session_signed_before_a_key_rotation_keeps_its_key(database: Database) -> None:
    """The charger's key is rotated between two sessions: each stop's OCMF record is checked
    with the key in force for its packet (as the audit and the offline verifier do), and the
    CDR and the OCMF export carry that key, not the current one."""
    from verifier import settings
    from verifier.charging import ocpi
    from verifier.devices import identity, lifecycle
    from verifier.wire import cose

    c = Charger()
    new = ec.generate_private_key(ec.SECP256R1())
    c.start(b"\x01" * 16, 1000)
    c.stop(b"\x01" * 16, 1500)
    c.start(b"\x02" * 16, 1500)  # open across the rotation: its stop is the new key's
    device = record("charger-9", POINT, role="charger", capacity_w=22_000)
    del device["technology"]
    conn = storage.connect(database.target)

    def send(seq: int, part: list[Reading], key: ec.EllipticCurvePrivateKey, prev: bytes) -> bytes:
        raws = [r.raw for r in part]
        data = forge.packet(key, forge.header_map("charger-9", seq, raws, [r.ts for r in part], prev), raws)
        assert isinstance(ingest.accept_batch(conn, [data])[0], ingest.Outcome)
        return decode_packet(data).header_hash

    try:
        enroll(conn, device, es256_signer(KEY))
        sessions.forget()
        prev = send(0, c.readings[:3], KEY, GENESIS)
        assert [s.ocmf_verified for s in sessions.for_device(conn, "charger-9")] == [True, None]
        index = lifecycle.key_index(conn, "charger-9")
        message = identity.rotation_message("charger-9", forge.point(new), cose.key_id(POINT), index)
        with storage.transaction(conn):
            lifecycle.rotate(conn, "charger-9", {"new_public_key": forge.point(new), "key_index": index,
                           "old_sig": es256_signer(KEY)(message), "new_sig": es256_signer(new)(message)})  # fmt: skip
        c.key = new
        c.stop(b"\x02" * 16, 1700)
        c.start(b"\x03" * 16, 1700)
        c.stop(b"\x03" * 16, 1800)
        send(1, c.readings[3:], new, prev)
        got = sessions.for_device(conn, "charger-9")
        assert [(s.state, s.ocmf_verified) for s in got] == [("completed", True)] * 3
        assert [s.public_key for s in got] == [POINT, forge.point(new), forge.point(new)]
        party, tariff = ocpi.Party("FR", "WTP"), ocpi.Tariff.from_settings(settings.DEFAULTS)
        point = {"location_id": "L1", "address": "1 rue", "city": "Paris", "country": "FRA", "evse_uid": "E1",
                 "evse_id": "FR*WTP*E1", "connector_id": "1", "connector_standard": "IEC_62196_T2",
                 "connector_format": "SOCKET", "power_type": "AC_3_PHASE"}  # fmt: skip
        attrs = {"charge_point": point, "location": [48_856_600, 2_352_200]}
        first = ocpi.cdr(got[0], attrs, forge.point(new), party, tariff, None)  # the current key given: not used
        assert first["signed_data"]["public_key"] == base64.b64encode(cose.spki_der(POINT)).decode()
    finally:
        conn.close()
        sessions.forget()


def _enroll_and_send(conn: storage.Connection, c: Charger) -> None:
    """Enrolls the charger c writes for (with its key) and sends all its readings as packet 0."""
    device = record(c.device_id, forge.point(c.key), role="charger", capacity_w=22_000)
    del device["technology"]
    enroll(conn, device, es256_signer(c.key))
    raws = [r.raw for r in c.readings]
    data = forge.packet(c.key, forge.header_map(c.device_id, 0, raws, [r.ts for r in c.readings]), raws)
    assert isinstance(ingest.accept_batch(conn, [data])[0], ingest.Outcome)


def test_ocmf_checks_are_kept_once_made_and_audited(database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker's first derivation stores each stop's OCMF check; the next worker (nothing
    kept in memory) checks no signature again. The audit makes every stored check again:
    one changed verdict or key id is caught."""
    from verifier import settings
    from verifier.audit import replay

    c = Charger()
    for n in range(3):
        c.start(bytes([n]) * 16, 1000 * n)
        c.stop(bytes([n]) * 16, 1000 * n + 500, tamper=n == 2)  # the third's signature does not verify
    conn = storage.connect(database.target)
    try:
        _enroll_and_send(conn, c)
        sessions.forget()
        first = [s.ocmf_verified for s in sessions.for_device(conn, "charger-9")]
        assert first == [True, True, False]
        stored = conn.execute("SELECT stop_number, verified FROM ocmf_verdicts ORDER BY stop_number").fetchall()
        assert [(int(n), int(v)) for n, v in stored] == [(1, 1), (3, 1), (5, 0)]
        checks: list[int] = []
        real = ocmf.verify

        def counted(*args: Any) -> bool:
            checks.append(1)
            return real(*args)

        monkeypatch.setattr(ocmf, "verify", counted)
        sessions.forget()  # another worker
        assert [s.ocmf_verified for s in sessions.for_device(conn, "charger-9")] == first and not checks

        log_key = settings.log_signer({**settings.DEFAULTS, **database.config()}).verifier()
        report = replay.audit(conn, log_key)
        assert report.ok and report.ocmf_checks == 3, report.problem
        for change in ("verified = 1 - verified", "key_id = ?"):
            conn.execute("BEGIN")
            try:
                params = (b"\x00" * 16,) if "?" in change else ()
                conn.execute(f"UPDATE ocmf_verdicts SET {change} WHERE stop_number = 5", params)
                report = replay.audit(conn, log_key)
            finally:
                conn.execute("ROLLBACK")
            assert not report.ok and "stop reading 5" in str(report.problem), report.problem
    finally:
        conn.close()
        sessions.forget()


def test_a_poll_for_what_is_new_derives_only_the_chargers_that_sent_it(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CDRs stopped since a time can only come from chargers with a reading that late:
    the others' sessions are not derived at all (a utility polls for what is new)."""
    conn = storage.connect(database.target)
    later = T0 + 30 * 86400
    try:
        for device_id, key, t0 in (
            ("charger-9", KEY, T0),
            ("charger-8", ec.generate_private_key(ec.SECP256R1()), later),
        ):
            c = Charger()
            c.device_id, c.t0, c.key = device_id, t0, key
            c.start(b"\x01" * 16, 1000)
            c.stop(b"\x01" * 16, 1500)
            _enroll_and_send(conn, c)
        derived: list[str] = []
        real = sessions.for_device

        def counted(db: Any, device_id: str) -> list[sessions.Session]:
            derived.append(device_id)
            return real(db, device_id)

        monkeypatch.setattr(sessions, "for_device", counted)
        every = [s for _, _, found in sessions.of_chargers(conn) for s in found]
        assert sorted(derived) == ["charger-8", "charger-9"] and all(s.ocmf_verified for s in every)
        derived.clear()
        new = [s for _, _, found in sessions.of_chargers(conn, stopped_since=later) for s in found]
        assert derived == ["charger-8"]
        assert new == [s for s in every if s.stop is not None and s.stop.ts >= later]
        derived.clear()
        assert [len(found) for _, _, found in sessions.of_chargers(conn, device_id="charger-9")] == [1]
        assert derived == ["charger-9"]
    finally:
        conn.close()
        sessions.forget()


def test_sessions_are_answered_from_a_database_that_takes_no_writes(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """A read-only copy (or a role that may not write): the OCMF checks are made and answered,
    not stored, and the reader is told why in the log, not with an error."""
    c = Charger()
    c.start(b"\x01" * 16, 1000)
    c.stop(b"\x01" * 16, 1500)
    conn = storage.connect(database.target)
    try:
        _enroll_and_send(conn, c)
        read_only = (
            "PRAGMA query_only = ON" if database.engine == "sqlite" else "SET default_transaction_read_only = on"
        )
        conn.execute(read_only)
        sessions.forget()
        assert [s.ocmf_verified for s in sessions.for_device(conn, "charger-9")] == [True]
        assert "OCMF checks of charger-9 not stored" in caplog.text
        assert conn.execute("SELECT COUNT(*) FROM ocmf_verdicts").fetchone()[0] == 0
    finally:
        conn.close()
        sessions.forget()
