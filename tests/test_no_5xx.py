"""No 5xx anywhere: what an independent review found answering 500 (or a witness's 400 with a
traceback) now answers a clear 4xx with its problem type: OCMF records with bad dates, NaN,
1e999999, deep nesting or other scripts' digits; OCPI's offset and limit; the web pages'
integers and far dates; a witness request with a non-ASCII signature."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import Database
from tests.enroll import api_key
from tests.test_ocmf_import import OtherCharger, _enroll, _post
from tests.test_web import _client, site  # noqa: F401 - the fixture
from verifier.app import create_app
from verifier.http.witness import create_witness_app
from verifier.log import note, witness
from verifier.wire import merkle
from verifier.wire.problems import TYPE_BASE

T0 = 1_790_000_000


@pytest.fixture
def app(database: Database) -> Flask:
    return create_app(database.config(CERTIFICATE_INTERVAL_S=0, CHECKPOINT_INTERVAL_S=0))


def _mangled(record: str) -> dict[str, str]:
    """Malformed copies of a good record, each a class the review found answering 500."""
    begin_tm = record.split('"TM":"')[1].split('"')[0]
    arabic = begin_tm.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
    return {
        "february 30th": record.replace(begin_tm, "2026-02-30T10:00:00,000+0000 S"),
        "year 0000": record.replace(begin_tm, "0000-01-01T00:00:00,000+0000 S"),
        "past 9999": record.replace(begin_tm, "9999-12-31T23:59:59,000-0100 S"),
        "arabic-indic digits": record.replace(begin_tm, arabic),
        "NaN": record.replace('"RV":10.000', '"RV":NaN'),
        "Infinity": record.replace('"RV":10.000', '"RV":-Infinity'),
        "1e999999": record.replace('"RV":10.000', '"RV":1e999999'),
        "5,000 digits": record.replace('"RV":10.000', '"RV":' + "9" * 5000),
        "nested 7,000 deep": record.replace('"RD":[', '"X":' + "[" * 7000 + "]" * 7000 + ',"RD":['),
        "RV a list": record.replace('"RV":10.000', '"RV":[1]'),
    }


def test_malformed_ocmf_records_are_4xx(app: Flask, database: Database) -> None:
    client = app.test_client()
    admin = {"Authorization": f"Bearer {api_key(database.target, 'admin')}"}
    other = OtherCharger("WB-0042")
    assert _enroll(client, admin, "acme-1", other.key_hex, other.serial, gateway_id="ACME_WB").status_code == 201
    good = other.record(T0, "10.000", "12.500")
    for what, body in _mangled(good).items():
        assert body != good, what
        r = _post(client, admin, body)
        assert 400 <= r.status_code < 500 and r.mimetype == "application/problem+json", (what, r.status_code, r.data)
    assert _post(client, admin, good).status_code == 201  # nothing was half kept


def _ocpi(client: FlaskClient, query: str, token: str) -> Any:
    return client.get(f"/ocpi/2.2.1/cdrs{query}", headers={"Authorization": f"Token {token}"})


def test_ocpi_paging_arguments_are_client_errors_in_the_envelope(app: Flask, database: Database) -> None:
    client = app.test_client()
    token = api_key(database.target, "utility")
    assert _ocpi(client, "", token).status_code == 200
    for query in ("?offset=²", "?offset=" + "9" * 5000, "?limit=0", "?offset=٣", "?limit=-1", "?limit=1e3"):
        r = _ocpi(client, query, token)
        assert r.status_code == 400, (query, r.status_code)
        body = r.get_json()
        assert body["status_code"] == 2001 and "timestamp" in body, (query, body)
    assert _ocpi(client, "?offset=0000000000000000000000001&limit=1", token).status_code == 200


def test_web_pages_answer_far_integers_and_dates_as_pages(site: dict[str, Any]) -> None:  # noqa: F811
    client = _client(site, "admin")
    huge = "9" * 25
    paths = [
        f"/certificates/{huge}", f"/certificates/{2**63}/provenance.json", f"/claims/{huge}",
        f"/devices/x/readings/{huge}/certificate.json", f"/devices/x/packets/{2**64}/certificate.json",
        f"/ledger/entries/{huge}", "/ledger/entries/٣",
        f"/certificates?cursor={huge}", f"/ledger/consistency?from=1&to={huge}", f"/sessions?offset={huge}",
        "/matching?from=9999-12-30&to=9999-12-31", "/sessions?to=9999-12-31", "/sessions?from=10000-01-01",
        "/communities/x?day=9999-12-31", "/communities/x/settlement?month=9999-12", "/ledger/consistency?from=²",
    ]  # fmt: skip
    for device in site["conn"].execute("SELECT device_id FROM devices LIMIT 1").fetchall():
        paths += [f"/devices/{device[0]}?end=9999-12-31&days=365", f"/devices/{device[0]}?before={huge}"]
    for path in paths:
        r = client.get(path)
        assert 200 <= r.status_code < 500, (path, r.status_code)
        assert r.mimetype == "text/html", (path, r.mimetype)


def test_a_witness_request_it_cannot_read_is_a_4xx_problem() -> None:
    log = note.Signer.generate("test.example/log")
    signer = note.Signer.generate("witness.example/w1")
    with tempfile.TemporaryDirectory() as folder:
        app = create_witness_app(Path(folder) / "w.sqlite", signer, {log.name: [log.verifier()]})
        client = app.test_client()
        cp = note.sign(note.Checkpoint(log.name, 1, merkle.leaf_hash(b"x")).text(), log)
        good = witness.request_body(0, [], cp)
        mangled = good.replace(b"\n\xe2\x80\x94 ", b"\xe2\x80\x94 \xe2\x80\x94 ", 1)  # a dash in a base64 field
        mangled_sig = good[: good.rfind(b" ") + 5] + "é".encode() + good[good.rfind(b" ") + 6 :]
        for body in (mangled, mangled_sig, b"old 0\n\n\xff\xfe", "old ٣\n\n".encode()):
            r = client.post("/add-checkpoint", data=body)
            assert 400 <= r.status_code < 500, (body, r.status_code)
            assert r.mimetype == "application/problem+json"
            kind = r.get_json()["type"].removeprefix(TYPE_BASE)
            assert kind in ("malformed-witness-request", "untrusted-checkpoint"), (body, r.get_json())
        assert client.post("/add-checkpoint", data=good).status_code == 200
        app.extensions["wattproof.witness_state"].close()


def test_every_ocpi_answer_is_in_the_envelope_and_echoes_the_request_ids(app: Flask, database: Database) -> None:
    client = app.test_client()
    token = api_key(database.target, "utility")
    ids = {"X-Request-ID": "req-1234", "X-Correlation-ID": "corr-5678"}
    for path, status in (("/ocpi/2.2.1/cdrs", 200), ("/ocpi/2.2.1/nothing", 404), ("/ocpi/9.9/cdrs", 404),
                         ("/ocpi/2.2.1/cdrs?limit=0", 400)):  # fmt: skip
        r = client.get(path, headers={"Authorization": f"Token {token}", **ids})
        assert r.status_code == status, (path, r.status_code)
        body = r.get_json()
        assert {"status_code", "timestamp"} <= set(body), (path, body)
        assert body["status_code"] == (1000 if status == 200 else 2000 if status == 404 else 2001), (path, body)
        assert {k: r.headers.get(k) for k in ids} == ids, path
    r = client.get("/ocpi/2.2.1/cdrs", headers={**ids, "Authorization": "Token nope"})
    assert r.status_code == 401 and {k: r.headers.get(k) for k in ids} == ids
