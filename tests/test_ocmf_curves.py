"""OCMF from chargers as they are: the curves OCMF names that cryptography verifies
(secp256k1, secp384r1, brainpoolP256r1, secp521r1), signatures in base64 (SE) as well as
hex, records carrying further registers beside the billing one, and an algorithm that is not
checked refused with a problem type of its own (not malformed-ocmf). Each record is signed
here with a key of that curve and checked with pyocmf as well."""

from __future__ import annotations

import base64
import time
from typing import Any

import pyocmf
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.conftest import Database
from tests.enroll import api_key
from verifier import settings, storage
from verifier.app import create_app
from verifier.audit import replay
from verifier.provenance import checks
from verifier.wire import ocmf
from verifier.wire.problems import TYPE_BASE

T0 = 1_790_000_000
CURVES: dict[str, Any] = {"secp256k1": ec.SECP256K1, "secp384r1": ec.SECP384R1, "brainpoolP256r1": ec.BrainpoolP256R1,
          "secp521r1": ec.SECP521R1, "secp256r1": ec.SECP256R1}  # fmt: skip


class Charger:
    def __init__(self, curve: str, serial: str) -> None:
        self.curve, self.serial = curve, serial
        self.key = ec.generate_private_key(CURVES[curve]())
        spki = self.key.public_key().public_bytes(serialization.Encoding.DER,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo)  # fmt: skip
        self.key_hex = spki.hex().upper()

    def record(self, t0: int, begin: str, end: str, encoding: str = "hex", extra: bool = False,
               sa: str | None = None, digest: str = "SHA256") -> str:  # fmt: skip
        tm = time.strftime("%Y-%m-%dT%H:%M:%S,000+0000 S", time.gmtime(t0))
        tm2 = time.strftime("%Y-%m-%dT%H:%M:%S,000+0000 S", time.gmtime(t0 + 3600))
        readings = [f'{{"TM":"{tm}","TX":"B","RV":{begin},"RI":"1-b:1.8.0","RU":"kWh","ST":"G"}}']
        if extra:  # the charger's other registers beside the billing one (export, a total counter)
            readings += [f'{{"TM":"{tm}","TX":"T","RV":0.000,"RI":"1-b:2.8.0","RU":"kWh","ST":"G"}}',
                         f'{{"TM":"{tm2}","TX":"T","RV":0.000,"RI":"1-b:2.8.0","RU":"kWh","ST":"G"}}']  # fmt: skip
        readings.append(f'{{"TM":"{tm2}","TX":"E","RV":{end},"RI":"1-b:1.8.0","RU":"kWh","ST":"G"}}')
        payload = (f'{{"FV":"1.0","GI":"ACME_WB","GS":"{self.serial}","PG":"T{t0 % 1000}","IS":false,"IT":"NONE",'
                   f'"ID":"","RD":[{",".join(readings)}]}}')  # fmt: skip
        hashing = hashes.SHA256() if digest == "SHA256" else hashes.SHA512()
        der = self.key.sign(payload.encode(), ec.ECDSA(hashing))
        sd = der.hex().upper() if encoding == "hex" else base64.b64encode(der).decode()
        algorithm = sa or f"ECDSA-{self.curve}-{digest}"
        return f'OCMF|{payload}|{{"SA":"{algorithm}","SE":"{encoding}","SD":"{sd}"}}'


@pytest.fixture
def world(database: Database) -> dict[str, Any]:
    app = create_app(database.config(CERTIFICATE_INTERVAL_S=0, CHECKPOINT_INTERVAL_S=0))
    admin = {"Authorization": f"Bearer {api_key(database.target, 'admin')}"}
    return {"app": app, "client": app.test_client(), "admin": admin, "database": database}


def _enroll(world: dict[str, Any], device_id: str, charger: Charger) -> Any:
    body = {"device_id": device_id, "public_key": charger.key_hex, "gateway_serial": charger.serial,
            "gateway_id": "ACME_WB"}  # fmt: skip
    return world["client"].post("/v1/ocmf/chargers", json=body, headers=world["admin"])


def _post(world: dict[str, Any], text: str) -> Any:
    return world["client"].post("/v1/ocmf", data=text, content_type="text/plain", headers=world["admin"])


@pytest.mark.parametrize("curve", ["secp256k1", "secp384r1", "brainpoolP256r1", "secp521r1"])
def test_the_curves_ocmf_names_import_and_verify(world: dict[str, Any], curve: str) -> None:
    charger = Charger(curve, f"WB-{curve}")
    assert _enroll(world, "acme-c", charger).status_code == 201
    records = [charger.record(T0, "10.000", "12.500"), charger.record(T0 + 7200, "12.500", "13.000", "base64"),
               charger.record(T0 + 14400, "13.000", "14.250", digest="SHA512")]  # fmt: skip
    for text in records:
        parsed = pyocmf.OCMF.from_string(text)  # the record as another verifier reads it
        assert parsed.verify_signature(charger.key_hex), (curve, text[-60:])
        r = _post(world, text)
        assert r.status_code == 201, r.get_json()
    sessions = world["client"].get("/v1/devices/acme-c/sessions", headers=world["admin"]).get_json()["sessions"]
    assert [s["energy_wh"] for s in sessions] == [2500, 500, 1250]
    tampered = charger.record(T0 + 30000, "20.000", "21.000").replace('"RV":21.000', '"RV":22.000')
    r = _post(world, tampered)
    assert r.status_code == 422 and r.get_json()["type"] == TYPE_BASE + "bad-ocmf-signature"
    # a third-party session's provenance file verifies over the same record
    sid = sessions[0]["session_id"]
    data = world["client"].get(f"/v1/devices/acme-c/sessions/{sid}/certificate", headers=world["admin"]).data
    log = world["app"].extensions["wattproof.log_signer"]
    assert checks.verify(data, log.verifier(), (), 0).subject["energy_wh"] == 2500
    db = world["database"]
    conn = storage.connect(db.target)
    try:
        key = settings.log_signer({**settings.DEFAULTS, **db.config()}, create=False).verifier()
        report = replay.audit(conn, key)
        assert report.ok, report.problem
    finally:
        conn.close()


def test_a_record_with_further_registers_bills_the_session_register(world: dict[str, Any]) -> None:
    charger = Charger("secp256r1", "WB-MULTI")
    assert _enroll(world, "acme-m", charger).status_code == 201
    r = _post(world, charger.record(T0, "100.000", "103.500", extra=True))
    assert r.status_code == 201, r.get_json()
    sessions = world["client"].get("/v1/devices/acme-m/sessions", headers=world["admin"]).get_json()["sessions"]
    assert [s["energy_wh"] for s in sessions] == [3500]


def test_an_algorithm_not_checked_has_a_problem_type_of_its_own(world: dict[str, Any]) -> None:
    charger = Charger("secp256r1", "WB-192")
    assert _enroll(world, "acme-u", charger).status_code == 201
    r = _post(world, charger.record(T0, "1.000", "2.000", sa="ECDSA-secp192k1-SHA256"))
    assert r.status_code == 422 and r.get_json()["type"] == TYPE_BASE + "unsupported-ocmf-algorithm"
    assert "secp192k1" in r.get_json()["detail"]
    wrong_curve = charger.record(T0, "1.000", "2.000", sa="ECDSA-secp384r1-SHA256")  # the key is P-256
    assert _post(world, wrong_curve).get_json()["type"] == TYPE_BASE + "bad-ocmf-signature"


def test_the_record_parser_reads_every_curve_and_encoding() -> None:
    for curve in CURVES:
        charger = Charger(curve, "X")
        for encoding in ("hex", "base64"):
            record = ocmf.parse(charger.record(T0, "1.000", "2.000", encoding))
            assert ocmf.verify(record.payload, record.signature, ocmf.point_of(charger.key_hex), record.algorithm)
