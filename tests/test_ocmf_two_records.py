"""OCMF sessions as many chargers sign them: the begin and the end in two records (OCPP's
Transaction.Begin and Transaction.End, the S.A.F.E. container's two values of one
transactionId). The end record closes the charger's open begin record it pairs with (same
meter, register and identification, never going back); its ledger entry names the begin's;
the session is one, with the begin record's id, its energy from the two registers, its CDR
carrying both signed values and its provenance file both entries. An end without a begin is
refused (ocmf-unpaired), a begin is closed once, and a begin alone is an active session.
Also KEBA's multi-register records in bulk, as in the S.A.F.E. software's keba_test.xml
(100 records of one charger, a second register without a time or a reason, 1970 times)."""

from __future__ import annotations

import base64
import time
from typing import Any

import pyocmf
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from ocpi_types import v2_2_1

from tests.conftest import Database
from tests.enroll import api_key
from tests.test_ocpi import CHARGE_POINT
from verifier import settings, storage
from verifier.app import create_app
from verifier.audit import replay
from verifier.charging import ocmf_chargers
from verifier.log import ledger
from verifier.provenance import checks
from verifier.wire import ocmf
from verifier.wire.problems import TYPE_BASE

T0 = 1_790_000_000


class Charger:
    """An Eichrecht charger that signs the begin and the end of a session apart."""

    def __init__(self, serial: str) -> None:
        self.serial = serial
        self.key = ec.generate_private_key(ec.SECP256R1())
        spki = self.key.public_key().public_bytes(serialization.Encoding.DER,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo)  # fmt: skip
        self.key_hex = spki.hex().upper()
        self.page = 0

    def signed(self, readings: list[str], ident: str = "", meter: str = "M-1") -> str:
        self.page += 1
        payload = (f'{{"FV":"1.0","GI":"ACME_WB","GS":"{self.serial}","PG":"T{self.page}","MS":"{meter}",'
                   f'"IS":{"true" if ident else "false"},"IT":"{"ISO14443" if ident else "NONE"}","ID":"{ident}",'
                   f'"RD":[{",".join(readings)}]}}')  # fmt: skip
        der = self.key.sign(payload.encode(), ec.ECDSA(hashes.SHA256()))
        return f'OCMF|{payload}|{{"SA":"ECDSA-secp256r1-SHA256","SD":"{der.hex().upper()}"}}'

    @staticmethod
    def reading(t: int, tx: str, kwh: str, sync: str = "S", register: str = "1-b:1.8.0") -> str:
        tm = time.strftime("%Y-%m-%dT%H:%M:%S,000+0000", time.gmtime(t))
        return f'{{"TM":"{tm} {sync}","TX":"{tx}","RV":{kwh},"RI":"{register}","RU":"kWh","ST":"G"}}'

    def begin(self, t: int, kwh: str, **kw: Any) -> str:
        return self.signed([self.reading(t, "B", kwh)], **kw)

    def end(self, t: int, kwh: str, samples: tuple[tuple[int, str], ...] = (), **kw: Any) -> str:
        return self.signed([*(self.reading(ts, "T", v) for ts, v in samples), self.reading(t, "E", kwh, "R")], **kw)


@pytest.fixture
def world(database: Database) -> dict[str, Any]:
    app = create_app(database.config(CERTIFICATE_INTERVAL_S=0, CHECKPOINT_INTERVAL_S=0, OCMF_KEEP_IDENTIFICATION=True))
    admin = {"Authorization": f"Bearer {api_key(database.target, 'admin')}"}
    return {"app": app, "client": app.test_client(), "admin": admin, "database": database}


def _enroll(world: dict[str, Any], device_id: str, charger: Charger) -> None:
    body = {"device_id": device_id, "public_key": charger.key_hex, "gateway_serial": charger.serial,
            "gateway_id": "ACME_WB", "charge_point": CHARGE_POINT, "location": [48_856_600, 2_352_200]}  # fmt: skip
    r = world["client"].post("/v1/ocmf/chargers", json=body, headers=world["admin"])
    assert r.status_code == 201, r.get_json()


def _post(world: dict[str, Any], data: str, mimetype: str = "text/plain") -> Any:
    return world["client"].post("/v1/ocmf", data=data, content_type=mimetype, headers=world["admin"])


def _sessions(world: dict[str, Any], device_id: str) -> list[dict[str, Any]]:
    r = world["client"].get(f"/v1/devices/{device_id}/sessions", headers=world["admin"])
    return list(r.get_json()["sessions"])


def _audit(world: dict[str, Any]) -> replay.Report:
    db = world["database"]
    conn = storage.connect(db.target)
    try:
        key = settings.log_signer({**settings.DEFAULTS, **db.config()}, create=False).verifier()
        return replay.audit(conn, key)
    finally:
        conn.close()


def test_a_session_signed_in_two_records_is_one_session(world: dict[str, Any]) -> None:
    charger = Charger("WB-TWO")
    _enroll(world, "two-1", charger)
    begin = charger.begin(T0, "100.000", ident="04A1B2C3")
    end = charger.end(T0 + 3600, "107.250", samples=((T0 + 1800, "103.500"),), ident="04A1B2C3")
    for text in (begin, end):  # each verifies with another verifier on its own
        assert pyocmf.OCMF.from_string(text).verify_signature(charger.key_hex)

    lonely = charger.end(T0 - 7200, "99.000")
    r = _post(world, f"{lonely}\n")
    assert r.status_code == 409 and r.get_json()["type"] == TYPE_BASE + "ocmf-unpaired", r.get_json()
    assert r.get_json()["field"] == "records[0]"

    r = _post(world, f"{begin}\n")  # the charger sends the begin when charging starts
    assert r.status_code == 201, r.get_json()
    (opened,) = r.get_json()["records"]
    (s,) = _sessions(world, "two-1")
    assert (s["session_id"], s["state"], s["energy_wh"], s["stop"]) == (opened["session_id"], "active", None, None)
    cert = world["client"].get(f"/v1/devices/two-1/sessions/{s['session_id']}/certificate", headers=world["admin"])
    assert cert.status_code == 409 and cert.get_json()["type"] == TYPE_BASE + "session-open"

    other_meter = charger.end(T0 + 3600, "107.250", meter="M-2")
    r = _post(world, f"{other_meter}\n")
    assert r.status_code == 409 and "meter" in r.get_json()["detail"], r.get_json()

    r = _post(world, f"{end}\n")  # ... and the end when it stops
    assert r.status_code == 201, r.get_json()
    (closed,) = r.get_json()["records"]
    assert closed["session_id"] == opened["session_id"] and closed["ledger_index"] > opened["ledger_index"]
    conn = storage.connect(world["database"].target)
    try:
        assert ledger.entry(conn, closed["ledger_index"]).body["begin"] == opened["ledger_index"]
    finally:
        conn.close()
    assert _post(world, f"{end}\n").get_json()["records"][0]["duplicate"] is True  # once, however often

    (s,) = _sessions(world, "two-1")
    assert (s["state"], s["energy_wh"], s["ocmf_verified"], s["sample_count"]) == ("completed", 7250, True, 1)
    assert s["start"]["register_wh"] == 100_000 and s["stop"]["register_wh"] == 107_250
    assert s["duration_s"] == 3600 and s["ledger_index"] == closed["ledger_index"]

    # a second end for the same begin finds no open begin: the begin is closed once
    again = charger.end(T0 + 7200, "108.000")
    r = _post(world, f"{again}\n")
    assert r.status_code == 409 and r.get_json()["type"] == TYPE_BASE + "ocmf-unpaired"

    # the export gives both records, the begin first, as S.A.F.E.'s software reads them
    exported = world["client"].get(f"/v1/devices/two-1/sessions/{s['session_id']}/ocmf", headers=world["admin"])
    assert exported.get_data(True) == f"{begin}\n{charger.key_hex}\n{end}\n{charger.key_hex}\n"
    xml = world["client"].get(f"/v1/devices/two-1/sessions/{s['session_id']}/ocmf?format=xml", headers=world["admin"])
    assert 'context="Transaction.Begin"' in xml.get_data(True)
    assert [t for t, _ in ocmf.from_xml(xml.data)] == [begin, end]

    # the CDR carries both signed values, each verifying
    utility = {"Authorization": f"Bearer {api_key(world['database'].target, 'utility')}"}
    token = {"Authorization": "Token " + base64.b64encode(utility["Authorization"][7:].encode()).decode()}
    (cdr,) = world["client"].get("/ocpi/2.2.1/cdrs", headers=token).get_json()["data"]
    v2_2_1.Cdr.from_dict(cdr)
    assert cdr["total_energy"] == 7.25
    values = cdr["signed_data"]["signed_values"]
    assert [v["nature"] for v in values] == ["Start", "End"]
    assert [v["signed_data"] for v in values] == [begin, end]
    assert all(pyocmf.OCMF.from_string(v["signed_data"]).verify_signature(charger.key_hex) for v in values)

    # the provenance file holds both entries and verifies offline
    data = world["client"].get(f"/v1/devices/two-1/sessions/{s['session_id']}/certificate", headers=world["admin"]).data
    log = world["app"].extensions["wattproof.log_signer"]
    report = checks.verify(data, log.verifier(), (), 0)
    assert report.subject["energy_wh"] == 7250 and report.subject["session_id"] == s["session_id"]
    assert any("two records" in step for step in report.steps)

    checked = _audit(world)
    assert checked.ok and checked.ocmf_records == 2, checked.problem


def test_both_records_in_one_container_and_a_begin_that_does_not_pair(world: dict[str, Any]) -> None:
    charger = Charger("WB-XML")
    _enroll(world, "two-2", charger)
    begin, end = charger.begin(T0, "5.000"), charger.end(T0 + 600, "6.000")
    point = ocmf.point_of(charger.key_hex)
    r = _post(world, ocmf.safe_xml([(begin, point), (end, point)], begin_and_end=True), "application/xml")
    assert r.status_code == 201, r.get_json()
    assert [s["energy_wh"] for s in _sessions(world, "two-2")] == [1000]
    # an end that goes back from the open begin does not pair with it, and says so
    later = charger.begin(T0 + 7200, "9.000")
    assert _post(world, f"{later}\n").status_code == 201
    r = _post(world, f"{charger.end(T0 + 9000, '8.000')}\n")
    assert r.status_code == 409 and "goes back" in r.get_json()["detail"], r.get_json()
    # the identification must be the same where both name one
    r = _post(world, f"{charger.end(T0 + 9000, '9.500', ident='OTHER')}\n")
    assert r.status_code == 201  # the begin names none: the end's own is kept
    assert sorted(s["energy_wh"] for s in _sessions(world, "two-2")) == [500, 1000]
    assert _audit(world).ok


def test_the_audit_refuses_an_end_that_names_a_begin_of_another_charger(world: dict[str, Any]) -> None:
    a, b = Charger("WB-A"), Charger("WB-B")
    _enroll(world, "two-a", a)
    _enroll(world, "two-b", b)
    r = _post(world, f"{a.begin(T0, '1.000')}\n")
    opened = r.get_json()["records"][0]["ledger_index"]
    conn = storage.connect(world["database"].target)
    try:  # what a wrong import would write: b's end closing a's begin
        with storage.transaction(conn):
            record = ocmf.parse(b.end(T0 + 60, "2.000"))
            fields = {"device_id": "two-b", "record": record.text, "time": T0, "begin": opened}
            idx = ledger.append(conn, "ocmf", "two-b", fields)
            conn.execute(
                f"INSERT INTO ocmf_records ({', '.join(ocmf_chargers.ROW_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                ("two-b", ocmf.digest(record), idx, T0, T0 + 60, 1_000_000, 2_000_000, "end", opened),
            )
    finally:
        conn.close()
    report = _audit(world)
    assert not report.ok and "names no open begin record of its charger" in str(report.problem), report.problem


def _keba_like(charger: Charger, n: int) -> str:
    """A KEBA KCP30's session record as keba_test.xml holds them: the billing register's begin
    and end, then a second register with neither a time nor a reason (both inherited)."""
    tm = "1970-01-01T01:01:49,000+0100"
    charger.page += 1
    payload = (f'{{"FV":"1.0","GI":"ACME_WB","GS":"{charger.serial}","GV":"2080000","PG":"T{46668 + n}","IS":false,'
               f'"IF":[],"ID":"","RD":[{{"TM":"{tm} U","TX":"B","EF":"","ST":"G","RV":1234.56,"RI":"1-b:1.8.0",'
               f'"RU":"kWh"}},{{"TM":"{tm} R","TX":"E","EF":"","ST":"G","RV":1234.56,"RI":"1-b:1.8.0","RU":"kWh"}},'
               f'{{"RV":0.00,"RI":"1-b:1.9.0","RU":"kWh"}}]}}')  # fmt: skip
    der = charger.key.sign(payload.encode(), ec.ECDSA(hashes.SHA256()))
    return f'OCMF|{payload}|{{"SD":"{der.hex().upper()}"}}'


def test_a_hundred_keba_records_with_a_second_register_import_in_one_container(world: dict[str, Any]) -> None:
    charger = Charger("16913115")
    _enroll(world, "keba-100", charger)
    point = ocmf.point_of(charger.key_hex)
    texts = [_keba_like(charger, n) for n in range(1, 101)]
    assert pyocmf.OCMF.from_string(texts[0]).verify_signature(charger.key_hex)
    r = _post(world, ocmf.safe_xml([(t, point) for t in texts]), "application/xml")
    assert r.status_code == 201, r.get_json()
    assert len(r.get_json()["records"]) == 100
    found = _sessions(world, "keba-100")
    assert len(found) == 100 and {s["energy_wh"] for s in found} == {0} and all(s["ocmf_verified"] for s in found)
    assert _audit(world).ocmf_records == 100


def test_a_pair_is_a_begin_and_an_end() -> None:
    charger = Charger("WB-ID")
    begin = ocmf.parse(charger.begin(T0, "1.000"))
    assert ocmf_chargers.session_id(begin) == ocmf.digest(begin)[:8].hex()
    with pytest.raises(ocmf.OcmfError, match="a begin record and an end record"):
        ocmf.pair(begin, begin)
    with pytest.raises(ocmf.OcmfError, match="whole"):
        ocmf.session_span(begin)


def test_a_charger_whose_records_carry_no_gateway_serial_is_known_by_its_meter(world: dict[str, Any]) -> None:
    """As an eBee's records in S.A.F.E.'s samples (test_ocmf_ebee_01.xml): GS empty, the meter's
    serial in MS, the begin and the end in two records. It is enrolled by its meter serial."""
    charger = Charger("")
    body = {"device_id": "ebee-1", "public_key": charger.key_hex, "gateway_id": "ACME_WB"}
    r = world["client"].post("/v1/ocmf/chargers", json=body, headers=world["admin"])
    assert r.status_code == 400 and r.get_json()["field"] == "gateway_serial", r.get_json()  # says what to give
    r = world["client"].post("/v1/ocmf/chargers", json={**body, "meter_serial": "000033022620"},
                             headers=world["admin"])  # fmt: skip
    assert r.status_code == 201, r.get_json()
    begin = charger.begin(T0, "7.753", meter="000033022620", ident="7bcf78ad")
    end = charger.end(T0 + 5, "7.753", meter="000033022620", ident="7bcf78ad")
    other_meter = charger.begin(T0, "1.000", meter="000099999999")
    r = _post(world, f"{other_meter}\n")
    assert r.status_code == 422 and r.get_json()["type"] == TYPE_BASE + "unknown-charger", r.get_json()
    assert "meter serial (MS) '000099999999'" in r.get_json()["detail"]
    point = ocmf.point_of(charger.key_hex)
    r = _post(world, ocmf.safe_xml([(begin, point), (end, point)], begin_and_end=True), "application/xml")
    assert r.status_code == 201, r.get_json()
    (s,) = _sessions(world, "ebee-1")
    assert (s["state"], s["energy_wh"], s["duration_s"]) == ("completed", 0, 5)
    assert _audit(world).ok
