"""OCPI 2.2.1 CDRs from a charger's sessions: every CDR checked by the ocpi-types package
and by the spec's field rules, its OCMF record by pyocmf; the Sender interface's paging,
headers, envelope and Token authorization; the charge point of a charger's enrollment."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import pyocmf
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask
from flask.testing import FlaskClient
from ocpi_types import v2_2_1

from tests import forge
from tests.conftest import Database
from tests.enroll import api_key, enroll, es256_signer, record
from verifier import storage
from verifier.app import create_app
from verifier.charging import ocpi, tokens
from verifier.devices import charge_point
from verifier.wire import ocmf, strict_cbor
from verifier.wire.problems import Problem

CHARGE_POINT = {
    "location_id": "LOC-PARIS-11-0001",
    "name": "Rue de la Roquette",
    "address": "12 rue de la Roquette",
    "city": "Paris",
    "postal_code": "75011",
    "country": "FRA",
    "evse_uid": "EVSE-0001",
    "evse_id": "FR*WTP*E0001*1",
    "connector_id": "1",
    "connector_standard": "IEC_62196_T2",
    "connector_format": "SOCKET",
    "power_type": "AC_3_PHASE",
}
T0 = int(time.time()) - 10 * 86400


class ChargerReadings:
    """The readings a charger of ours sends: sessions with their OCMF-signed stops."""

    def __init__(self, device_id: str, key: ec.EllipticCurvePrivateKey) -> None:
        self.device_id, self.key = device_id, key
        self.raws: list[bytes] = []
        self.ts: list[int] = []

    def _add(self, fields: dict[int, Any], at: int) -> int:
        n = len(self.raws)
        self.raws.append(strict_cbor.dumps({0: 2, 1: n, 2: at, 3: 2, **fields}))
        self.ts.append(at)
        return n

    def session(self, sid: bytes, at: int, wh: tuple[int, ...], token: bytes | None = None) -> None:
        """A session starting at `at`, a reading every 10 minutes on the registers wh."""
        fields: dict[int, Any] = {20: 1, 21: sid, 22: 1, 23: wh[0]}
        if token is not None:
            fields[24] = token
        self._add(fields, at)
        for i, w in enumerate(wh[1:-1], 1):
            self._add({20: 2, 21: sid, 22: 1, 23: w}, at + 600 * i)
        stop_at, number = at + 600 * (len(wh) - 1), len(self.raws)
        text = ocmf.payload(self.device_id, number, token, (at, 2, wh[0]), (stop_at, 2, wh[-1]))
        signature = self.key.sign(text.encode(), ec.ECDSA(hashes.SHA256()))
        self._add({20: 3, 21: sid, 22: 1, 23: wh[-1], 25: 1, 26: signature}, stop_at)

    def packet(self) -> bytes:
        header = forge.header_map(self.device_id, 0, self.raws, self.ts)
        return forge.packet(self.key, header, self.raws)


def _enroll_charger(database: Database, device_id: str, **extra: Any) -> ec.EllipticCurvePrivateKey:
    key = forge.new_key()
    device = record(device_id, forge.point(key), role="charger", capacity_w=22_000, **extra)
    del device["technology"]
    conn = storage.connect(database.target)
    try:
        enroll(conn, device, es256_signer(key))
    finally:
        conn.close()
    return key


@pytest.fixture
def app(database: Database) -> Iterator[Flask]:
    yield create_app(database.config(RATE_BURST=100000, OCPI_PAGE_LIMIT=3, TARIFF_PER_HOUR="1.20"))


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def _post(client: FlaskClient, data: bytes) -> None:
    r = client.post("/v1/packets", data=data, content_type="application/cbor")
    assert r.status_code == 201, r.get_json()


def _token(database: Database, role: str = "utility") -> dict[str, str]:
    secret = api_key(database.target, role)
    return {"Authorization": "Token " + base64.b64encode(secret.encode()).decode()}


def _charger_with_sessions(client: FlaskClient, database: Database, n: int) -> ChargerReadings:
    key = _enroll_charger(database, "charger-7", charge_point=CHARGE_POINT, location=[48_856_600, 2_352_200])
    c = ChargerReadings("charger-7", key)
    for i in range(n):
        token = bytes([i]) * 32 if i % 2 == 0 else None  # every other one free charging
        c.session(bytes([i + 1]) * 16, T0 + 7200 * i, (1000 * i, 1000 * i + 400, 1000 * i + 900), token)
    _post(client, c.packet())
    return c


def _all_pages(client: FlaskClient, headers: dict[str, str], first: str) -> tuple[list[dict[str, Any]], list[Any]]:
    cdrs, answers, url = [], [], first
    while url:
        r = client.get(url, headers=headers)
        assert r.status_code == 200, r.get_json()
        body = r.get_json()
        answers.append((r.headers, body))
        assert body["status_code"] == 1000 and body["timestamp"].endswith("Z")
        cdrs += body["data"]
        link = r.headers.get("Link")
        url = ""
        if link:
            assert link.endswith('>; rel="next"')
            parts = urlsplit(link[1 : link.index(">")])
            url = f"{parts.path}?{parts.query}"
    return cdrs, answers


def test_every_cdr_passes_ocpi_types_and_the_field_rules_and_its_ocmf_verifies(
    client: FlaskClient, database: Database
) -> None:
    _charger_with_sessions(client, database, 7)
    headers = _token(database)
    cdrs, answers = _all_pages(client, headers, "/ocpi/2.2.1/cdrs")
    assert len(cdrs) == 7 and len({c["id"] for c in cdrs}) == 7
    assert [h["X-Total-Count"] for h, _ in answers] == ["7", "7", "7"]
    assert all(h["X-Limit"] == "3" for h, _ in answers) and [len(b["data"]) for _, b in answers] == [3, 3, 1]
    assert [c["last_updated"] for c in cdrs] == sorted(c["last_updated"] for c in cdrs)
    for i, c in enumerate(cdrs):
        typed = v2_2_1.Cdr.from_dict(c)  # raises on a missing field, a wrong type or an unknown enum
        assert typed.to_dict()["total_energy"] == c["total_energy"]
        assert ocpi.field_errors(c) == [], c
        assert c["total_energy"] == 0.9 and c["total_time"] == pytest.approx(1 / 3)
        assert sum(d["volume"] for p in c["charging_periods"] for d in p["dimensions"] if d["type"] == "TIME") == (
            pytest.approx(c["total_time"])
        )
        # 0.9 kWh at 0.30 and 20 minutes at 1.20 per hour: 0.27 + 0.40, VAT 20 % on top
        assert c["total_cost"] == {"excl_vat": 0.67, "incl_vat": 0.80}
        assert c["cdr_location"]["coordinates"] == {"latitude": "48.856600", "longitude": "2.352200"}
        assert c["cdr_location"]["evse_id"] == "FR*WTP*E0001*1" and c["meter_id"] == "serial-charger-7"
        (signed,) = c["signed_data"]["signed_values"]
        spki = base64.b64decode(c["signed_data"]["public_key"]).hex()
        parsed = pyocmf.OCMF.from_string(signed["signed_data"])
        assert parsed.verify_signature(spki)
        assert signed["signed_data"].split("|")[1] == signed["plain_data"]
        assert signed["nature"] == "End"  # OCPI 2.2.1's natures: Start, End, Intermediate; signed at the stop
        assert [r.RV for r in parsed.payload.RD] == [Decimal(1000 * i) / 1000, Decimal(1000 * i + 900) / 1000]
        token = c["cdr_token"]
        if i % 2 == 0:  # the uid the operator bills: the token's identification, never the token
            assert (token["type"], token["uid"]) == ("RFID", (bytes([i]) * 16).hex().upper())
            assert parsed.payload.ID == token["uid"]
        else:
            assert (token["type"], token["uid"]) == ("AD_HOC_USER", "FREE-CHARGING")


def test_cdrs_by_time_and_the_paging_at_the_edges(client: FlaskClient, database: Database) -> None:
    _charger_with_sessions(client, database, 5)
    headers = _token(database)
    everything = client.get("/ocpi/2.2.1/cdrs?limit=100", headers=headers).get_json()["data"]
    assert len(everything) == 3  # limit above the server's most: the most
    middle = everything[2]["last_updated"]
    later = client.get(f"/ocpi/2.2.1/cdrs?date_from={middle}", headers=headers)
    assert later.headers["X-Total-Count"] == "3" and later.get_json()["data"][0]["last_updated"] == middle
    earlier = client.get(f"/ocpi/2.2.1/cdrs?date_to={middle}", headers=headers)
    assert earlier.headers["X-Total-Count"] == "2" and "Link" not in earlier.headers
    past_end = client.get("/ocpi/2.2.1/cdrs?offset=50", headers=headers)
    assert past_end.get_json()["data"] == [] and past_end.headers["X-Total-Count"] == "5"
    bad = client.get("/ocpi/2.2.1/cdrs?limit=-1", headers=headers)
    assert bad.status_code == 400 and bad.get_json()["status_code"] == 2001
    assert bad.get_json()["type"].endswith("/bad-request") and bad.mimetype == "application/problem+json"


def test_versions_and_the_token_authorization(client: FlaskClient, database: Database) -> None:
    headers = _token(database)
    versions = client.get("/ocpi/versions", headers=headers).get_json()
    assert versions["status_code"] == 1000
    (v,) = versions["data"]
    assert v["version"] == "2.2.1"
    details = client.get(urlsplit(v["url"]).path, headers=headers).get_json()["data"]
    assert details["endpoints"] == [{"identifier": "cdrs", "role": "SENDER", "url": "http://localhost/ocpi/2.2.1/cdrs"}]
    raw = {"Authorization": "Token " + headers["Authorization"].split()[1]}
    raw["Authorization"] = "Token " + base64.b64decode(raw["Authorization"].split()[1]).decode()
    assert client.get("/ocpi/versions", headers=raw).status_code == 200  # OCPI 2.1.1 sent the token as is
    for bad in ({}, {"Authorization": "Token bm90LWEta2V5"}, {"Authorization": "Bearer x"}):
        r = client.get("/ocpi/2.2.1/cdrs", headers=bad)
        assert r.status_code == 401 and r.get_json()["status_code"] == 2000, r.get_json()
        assert r.get_json()["type"].endswith("/unauthorized")
    r = client.get("/ocpi/2.2.1/cdrs", headers=_token(database, "installer"))
    assert r.status_code == 403 and r.get_json()["type"].endswith("/forbidden")


def test_no_cdr_for_a_disputed_or_open_session_or_a_charger_without_its_charge_point(
    client: FlaskClient, database: Database
) -> None:
    key = _enroll_charger(database, "charger-8")  # no charge point in its enrollment
    c = ChargerReadings("charger-8", key)
    c.session(b"\x09" * 16, T0, (0, 500, 800))
    _post(client, c.packet())
    headers = _token(database)
    assert client.get("/ocpi/2.2.1/cdrs", headers=headers).get_json()["data"] == []
    key = _enroll_charger(database, "charger-9", charge_point=CHARGE_POINT, location=[48_856_600, 2_352_200])
    c = ChargerReadings("charger-9", key)
    c.session(b"\x01" * 16, T0, (0, 500, 800))
    c.session(b"\x02" * 16, T0 + 3600, (800, 700, 900))  # the register went back: disputed
    c._add({20: 1, 21: b"\x03" * 16, 22: 1, 23: 900}, T0 + 7200)  # still charging
    _post(client, c.packet())
    (only,) = client.get("/ocpi/2.2.1/cdrs", headers=headers).get_json()["data"]
    assert only["session_id"] == "01" * 16


def test_the_charge_point_of_an_enrollment_is_checked() -> None:
    assert charge_point.check_charge_point(dict(CHARGE_POINT)) == CHARGE_POINT
    for change, field in (
        ({"connector_standard": "TYPE2"}, "connector_standard"),
        ({"country": "FR"}, "country"),
        ({"address": "x" * 46}, "address"),
        ({"colour": "red"}, "colour"),
        ({"evse_id": None}, "evse_id"),
    ):
        cp = {k: v for k, v in {**CHARGE_POINT, **change}.items() if v is not None}
        with pytest.raises(Problem) as e:
            charge_point.check_charge_point(cp)
        assert e.value.field == f"device.charge_point.{field}"
    # the enums are OCPI 2.2.1's, as a package nobody here wrote has them
    assert set(charge_point.CONNECTOR_STANDARDS) == {t.value for t in v2_2_1.ConnectorType}
    assert set(charge_point.CONNECTOR_FORMATS) == {t.value for t in v2_2_1.ConnectorFormat}
    assert set(charge_point.POWER_TYPES) == {t.value for t in v2_2_1.PowerType}


def test_a_producer_cannot_carry_a_charge_point(database: Database) -> None:
    key = forge.new_key()
    conn = storage.connect(database.target)
    try:
        with pytest.raises(Problem) as e:
            enroll(conn, record("solar-9", forge.point(key), charge_point=CHARGE_POINT), es256_signer(key))
    finally:
        conn.close()
    assert e.value.field == "device.charge_point"


def test_the_operator_bills_the_real_token_and_the_ledger_holds_none(database: Database, tmp_path: Any) -> None:
    secret = bytes(range(32))
    (tmp_path / "secret.hex").write_text(secret.hex() + "\n")
    (tmp_path / "tokens.json").write_text('[{"uid": "04A2B3C4D5E6F7", "contract_id": "FR-WTP-C12345678-X"}]')
    app = create_app(
        database.config(
            RATE_BURST=100000,
            TOKEN_SECRET_FILE=str(tmp_path / "secret.hex"),
            TOKENS_FILE=str(tmp_path / "tokens.json"),
        )
    )
    client = app.test_client()
    key = _enroll_charger(database, "charger-7", charge_point=CHARGE_POINT, location=[48_856_600, 2_352_200])
    c = ChargerReadings("charger-7", key)
    token_key = tokens.charger_key(secret, "charger-7")
    known = tokens.token_hash(token_key, "04A2B3C4D5E6F7")
    stranger = tokens.token_hash(token_key, "DEADBEEF0001")  # a token not in the operator's list
    c.session(b"\x01" * 16, T0, (0, 400, 900), known)
    c.session(b"\x02" * 16, T0 + 3600, (900, 1000, 1200), stranger)
    _post(client, c.packet())
    first, second = client.get("/ocpi/2.2.1/cdrs", headers=_token(database)).get_json()["data"]
    assert (first["cdr_token"]["uid"], first["cdr_token"]["contract_id"]) == ("04A2B3C4D5E6F7", "FR-WTP-C12345678-X")
    assert second["cdr_token"]["uid"] == stranger[:16].hex().upper()  # unknown: its hash only
    assert v2_2_1.Cdr.from_dict(first) and ocpi.field_errors(first) == []
    # the same hash under another charger's key is another token: keys are per charger
    assert tokens.token_hash(tokens.charger_key(secret, "charger-8"), "04A2B3C4D5E6F7") != known
    # nothing stored and nothing public names the token
    conn = storage.connect(database.target)
    try:
        stored = b"".join(
            bytes(v) if isinstance(v, bytes | memoryview) else str(v).encode()
            for table in ("packets", "ledger", "devices")
            for row in conn.execute(f"SELECT * FROM {table}").fetchall()
            for v in row
        )
    finally:
        conn.close()
    assert b"04A2B3C4D5E6F7" not in stored and bytes.fromhex("04A2B3C4D5E6F7") not in stored
    bearer = {"Authorization": "Bearer " + base64.b64decode(_token(database)["Authorization"].split()[1]).decode()}
    public = client.get("/v1/devices/charger-7/sessions", headers=bearer)
    assert public.status_code == 200 and b"04A2B3C4D5E6F7" not in public.data
