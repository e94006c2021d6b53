"""OCMF from chargers that are not ours: a KEBA KCP30 (the S.A.F.E. transparency software's
own test record, in ../shared/interop/ocmf) enrolled by its OCMF public key, its record
posted plain and in the XML container, verified, in the ledger once, a session with a CDR;
its tampered copy refused. Records signed here stand in for other chargers to reach the
rules a real record cannot: overlapping registers, users named in the clear, all or none.
On SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyocmf
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask
from flask.testing import FlaskClient
from ocpi_types import v2_2_1

from tests import forge
from tests.conftest import Database
from tests.enroll import api_key
from tests.test_ocpi import CHARGE_POINT
from verifier import settings, storage
from verifier.app import create_app
from verifier.audit import replay
from verifier.charging import ocpi
from verifier.wire import cose, ocmf
from verifier.wire.problems import TYPE_BASE

KEBA_SERIAL = "17619300"


@pytest.fixture
def app(database: Database) -> Iterator[Flask]:
    yield create_app(database.config(RATE_BURST=100000))


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def admin(database: Database) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key(database.target, 'admin')}"}


def _keba(interop: Path, name: str = "keba_kcp30_valid.txt") -> tuple[str, str]:
    record, key = (interop / "ocmf" / name).read_text().splitlines()[:2]
    return record, key


def _enroll(
    client: FlaskClient, headers: dict[str, str], device_id: str, key_hex: str, serial: str, **extra: Any
) -> Any:
    body = {"device_id": device_id, "public_key": key_hex, "gateway_serial": serial, **extra}
    return client.post("/v1/ocmf/chargers", json=body, headers=headers)


def _post(client: FlaskClient, headers: dict[str, str], body: str, kind: str = "text/plain") -> Any:
    return client.post("/v1/ocmf", data=body.encode(), content_type=kind, headers=headers)


def _size(database: Database) -> int:
    conn = storage.connect(database.target)
    try:
        return int(conn.execute("SELECT size FROM ledger_head").fetchone()[0])
    finally:
        conn.close()


def _audit(database: Database) -> replay.Report:
    conn = storage.connect(database.target)
    try:
        key = settings.log_signer({**settings.DEFAULTS, **database.config()}, create=False).verifier()
        return replay.audit(conn, key)
    finally:
        conn.close()


def test_the_keba_record_imports_once_as_a_session_with_its_cdr_and_its_tampered_copy_is_refused(
    client: FlaskClient, database: Database, admin: dict[str, str], interop: Path
) -> None:
    text, key_hex = _keba(interop)
    r = _enroll(client, admin, "keba-1", key_hex, KEBA_SERIAL, gateway_id="KEBA_KCP30",
                charge_point=CHARGE_POINT, location=[48_856_600, 2_352_200])  # fmt: skip
    assert r.status_code == 201, r.get_json()
    assert r.get_json()["fingerprint"] and r.get_json()["inclusion_proof"] is not None
    assert _enroll(client, admin, "keba-1", key_hex, KEBA_SERIAL, gateway_id="KEBA_KCP30",
                   charge_point=CHARGE_POINT, location=[48_856_600, 2_352_200]).status_code == 200  # fmt: skip

    size = _size(database)
    tampered, _ = _keba(interop, "keba_kcp30_tampered_invalid.txt")
    r = _post(client, admin, f"{tampered}\n{key_hex}\n")
    assert r.status_code == 422 and r.mimetype == "application/problem+json"
    assert r.get_json()["type"] == TYPE_BASE + "bad-ocmf-signature" and r.get_json()["field"] == "records[0]"
    assert _size(database) == size  # nothing appended

    r = _post(client, admin, f"{text}\n{key_hex}\n")  # the two-line form a driver pastes
    assert r.status_code == 201, r.get_json()
    (done,) = r.get_json()["records"]
    assert done["device_id"] == "keba-1" and not done["duplicate"] and _size(database) == size + 1
    again = _post(client, admin, ocmf.safe_xml([(text, ocmf.point_of(key_hex))]), "application/xml")
    assert again.status_code == 200 and again.get_json()["records"][0] == {**done, "duplicate": True}
    assert _size(database) == size + 1  # once, however often and in whatever form it comes

    utility = {"Authorization": f"Bearer {api_key(database.target, 'utility')}"}
    (s,) = client.get("/v1/devices/keba-1/sessions", headers=utility).get_json()["sessions"]
    assert (s["session_id"], s["source"], s["state"], s["ocmf_verified"]) == (done["session_id"], "ocmf",
                                                                            "completed", True)  # fmt: skip
    assert s["start"]["time"] == "2019-08-13T10:03:15Z" and s["stop"]["time"] == "2019-08-13T10:03:36Z"
    assert (s["start"]["register_wh"], s["stop"]["register_wh"], s["energy_wh"]) == (259, 259, 0)  # 0.1 Wh: below 1
    assert s["duration_s"] == 21 and s["pagination"] == "T32" and s["ledger_index"] == done["ledger_index"]
    assert s["token"] == "none"
    exported = client.get(f"/v1/devices/keba-1/sessions/{s['session_id']}/ocmf", headers=utility).get_data(True)
    assert exported == f"{text}\n{key_hex}\n"  # byte for byte as the charger signed it
    assert pyocmf.OCMF.from_string(exported.splitlines()[0]).verify_signature(key_hex)

    token = {"Authorization": "Token " + base64.b64encode(utility["Authorization"][7:].encode()).decode()}
    (cdr,) = client.get("/ocpi/2.2.1/cdrs", headers=token).get_json()["data"]
    v2_2_1.Cdr.from_dict(cdr)
    assert ocpi.field_errors(cdr) == [] and cdr["total_energy"] == 0.0 and cdr["session_id"] == s["session_id"]
    (signed,) = cdr["signed_data"]["signed_values"]
    assert signed["signed_data"] == text and signed["plain_data"] == text.split("|")[1]
    spki = base64.b64decode(cdr["signed_data"]["public_key"]).hex().upper()
    assert spki == key_hex and pyocmf.OCMF.from_string(signed["signed_data"]).verify_signature(spki)

    report = _audit(database)
    assert report.ok and report.ocmf_records == 1, report.problem


def test_who_may_enroll_and_what_an_enrollment_must_say(
    client: FlaskClient, database: Database, admin: dict[str, str], interop: Path
) -> None:
    _, key_hex = _keba(interop)
    utility = {"Authorization": f"Bearer {api_key(database.target, 'utility')}"}
    assert _enroll(client, utility, "keba-1", key_hex, KEBA_SERIAL).status_code == 403
    installer = {"Authorization": f"Bearer {api_key(database.target, 'installer')}"}
    for bad, field in (
        ({"public_key": "04" + "00" * 64}, "public_key"),
        ({"public_key": "3059"}, "public_key"),
        ({"device_id": "Keba 1"}, "device_id"),
        ({"gateway_serial": ""}, "gateway_serial"),
        ({"location": [1, 2, 3]}, "location"),
        ({"colour": "red"}, "colour"),
    ):
        body = {"device_id": "keba-1", "public_key": key_hex, "gateway_serial": KEBA_SERIAL, **bad}
        r = client.post("/v1/ocmf/chargers", json=body, headers=installer)
        assert r.status_code in (400, 422) and r.get_json()["field"] == field, (bad, r.get_json())
    assert _enroll(client, installer, "keba-1", key_hex, KEBA_SERIAL).status_code == 201
    r = _enroll(client, admin, "keba-2", key_hex, "other")
    assert r.status_code == 409 and r.get_json()["field"] == "public_key"  # one key, one device
    r = _enroll(client, admin, "keba-2", cose.spki_der(forge.point(forge.new_key())).hex(), KEBA_SERIAL)
    assert r.status_code == 409 and r.get_json()["field"] == "gateway_serial"
    shown = client.get("/v1/devices/keba-1", headers=admin)
    assert shown.status_code == 200 and shown.get_json()["role"] == "ocmf-charger", shown.get_json()
    # it never sends packets: a packet under its id is refused whoever signed it
    r = client.post(
        "/v1/packets", data=forge.simple(forge.new_key(), device_id="keba-1"), content_type="application/cbor"
    )
    assert r.status_code == 403 and "POST /v1/ocmf" in r.get_json()["detail"]


class OtherCharger:
    """A third-party charger of a make we have no record of: its records signed here."""

    def __init__(self, serial: str) -> None:
        self.key = forge.new_key()
        self.serial = serial
        self.key_hex = cose.spki_der(forge.point(self.key)).hex().upper()

    def record(self, t0: int, begin: str, end: str, ident: str = "") -> str:
        tm = time.strftime("%Y-%m-%dT%H:%M:%S,000+0000 S", time.gmtime(t0))
        tm2 = time.strftime("%Y-%m-%dT%H:%M:%S,000+0000 S", time.gmtime(t0 + 3600))
        identified = (
            f'"IS":true,"IL":"VERIFIED","IF":["RFID_PLAIN"],"IT":"ISO14443","ID":"{ident}"'
            if ident
            else ('"IS":false,"IT":"NONE","ID":""')
        )
        payload = (
            f'{{"FV":"1.0","GI":"ACME_WB","GS":"{self.serial}","PG":"T{t0 % 1000}",{identified},"RD":['
            f'{{"TM":"{tm}","TX":"B","RV":{begin},"RI":"1-b:1.8.0","RU":"kWh","ST":"G"}},'
            f'{{"TM":"{tm2}","TX":"E","RV":{end},"RI":"1-b:1.8.0","RU":"kWh","ST":"G"}}]}}'
        )
        der = self.key.sign(payload.encode(), ec.ECDSA(hashes.SHA256()))
        return f'OCMF|{payload}|{{"SA":"ECDSA-secp256r1-SHA256","SD":"{der.hex().upper()}"}}'


def test_no_energy_twice_all_or_none_and_no_user_in_the_clear(
    client: FlaskClient, database: Database, admin: dict[str, str]
) -> None:
    other = OtherCharger("WB-0042")
    assert _enroll(client, admin, "acme-1", other.key_hex, other.serial, gateway_id="ACME_WB").status_code == 201
    t0 = 1_790_000_000
    first = other.record(t0, "10.000", "12.500")
    assert _post(client, admin, first).status_code == 201  # without its key line: found by GS and GI
    size = _size(database)
    overlapping = other.record(t0 + 7200, "12.000", "13.000")  # counts 12.0 to 12.5 kWh again
    r = _post(client, admin, overlapping)
    assert r.status_code == 409 and r.get_json()["type"] == TYPE_BASE + "ocmf-overlap"
    good, wrong_key = other.record(t0 + 7200, "12.500", "13.000"), OtherCharger("WB-0042")
    r = _post(client, admin, f"{good}\n{wrong_key.record(t0 + 9000, '13.0', '14.0')}\n")
    assert r.status_code == 422 and r.get_json()["field"] == "records[1]"
    assert r.get_json()["type"] == TYPE_BASE + "bad-ocmf-signature"
    assert _size(database) == size  # the good record before it was not kept either: all or none
    r = _post(client, admin, f"{good}\n{other.record(t0 + 9000, '13.0', '14.0')}\n")
    assert r.status_code == 201 and len(r.get_json()["records"]) == 2 and _size(database) == size + 2
    unknown = OtherCharger("WB-9999")
    r = _post(client, admin, unknown.record(t0, "1", "2"))
    assert r.status_code == 422 and r.get_json()["type"] == TYPE_BASE + "unknown-charger"
    r = _post(client, admin, f"{other.record(t0 + 20000, '20', '21')}\n{unknown.key_hex}\n")
    assert r.status_code == 422 and "not the one" in r.get_json()["detail"]  # a key that is not the enrolled one
    named = other.record(t0 + 30000, "30", "31", ident="04A2B3C4D5E6F7")
    r = _post(client, admin, named)
    assert r.status_code == 422 and r.get_json()["type"] == TYPE_BASE + "ocmf-identification"
    for body, kind in (("", "text/plain"), ("OCMF|{}|{}", "text/plain"), ("<values/>", "application/xml"),
                       ("not ocmf", "text/plain"), (first, "application/json")):  # fmt: skip
        r = _post(client, admin, body, kind)
        assert r.status_code in (400, 415) and r.mimetype == "application/problem+json", (body, r.get_json())
    assert _size(database) == size + 2

    utility = {"Authorization": f"Bearer {api_key(database.target, 'utility')}"}
    found = client.get("/v1/devices/acme-1/sessions", headers=utility).get_json()["sessions"]
    assert [x["energy_wh"] for x in found] == [2500, 500, 1000]  # the registers' deltas, by register
    report = _audit(database)
    assert report.ok and report.ocmf_records == 3, report.problem
    conn = storage.connect(database.target)
    conn.execute("BEGIN")
    try:
        conn.execute("UPDATE ocmf_records SET end_mwh = end_mwh + 1000 WHERE begin_mwh = 10000000")
        assert "ocmf_records" in str(replay.audit(conn, settings.log_signer(
            {**settings.DEFAULTS, **database.config()}, create=False).verifier()).problem)  # fmt: skip
    finally:
        conn.execute("ROLLBACK")
        conn.close()


def test_a_user_in_the_clear_is_kept_when_the_operator_allows_it(database: Database, admin: dict[str, str]) -> None:
    client = create_app(database.config(OCMF_KEEP_IDENTIFICATION=True)).test_client()
    other = OtherCharger("WB-7")
    assert _enroll(client, admin, "acme-7", other.key_hex, other.serial).status_code == 201
    assert _post(client, admin, other.record(1_790_000_000, "1", "2", ident="04A2B3C4D5E6F7")).status_code == 201
    utility = {"Authorization": f"Bearer {api_key(database.target, 'utility')}"}
    (s,) = client.get("/v1/devices/acme-7/sessions", headers=utility).get_json()["sessions"]
    assert s["token"] == "in the OCMF record" and _audit(database).ok
