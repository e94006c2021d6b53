"""The API's contract: real answers match /v1/openapi.json, and malformed input never causes a 500."""

from __future__ import annotations

import base64
import csv
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cbor2
import jsonschema
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provisioning.enrollment import Installer, enrollment_request
from tests import forge
from tests.conftest import ENGINES, make_database
from tests.enroll import api_key, es256_signer, record
from verifier.app import create_app
from verifier.wire import strict_cbor
from verifier.wire.packet import GENESIS, decode_packet

NOW = int(time.time()) - 86400


@pytest.fixture(scope="module", params=ENGINES)
def app(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    database = make_database(request.param, tmp_path_factory.mktemp("api"), request)
    yield create_app(database.config(RATE_BURST=100000))


@pytest.fixture(scope="module")
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture(scope="module")
def world(app: Flask, client: FlaskClient) -> dict[str, Any]:
    """An installer, an enrolled device with a dozen packets, and keys for every role."""
    db = app.config["DATABASE"]
    tokens = {role: api_key(db, role) for role in ("admin", "utility", "auditor")}
    inst = Installer.generate("contract-installer")
    client.post(
        "/v1/installers",
        headers={"Authorization": f"Bearer {tokens['admin']}"},
        json={"name": inst.name, "public_key": base64.b64encode(inst.public_key).decode()},
    )
    tokens["installer"] = api_key(db, "installer", inst.name)
    key = ec.generate_private_key(ec.SECP256R1())
    challenge = client.post("/v1/enrollments/challenge", headers={"Authorization": f"Bearer {tokens['installer']}"})
    body = enrollment_request(
        record("meter-c1", forge.point(key)), bytes.fromhex(challenge.get_json()["challenge"]), es256_signer(key), inst
    )
    receipt = client.post(
        "/v1/enrollments",
        data=body,
        content_type="application/cbor",
        headers={"Authorization": f"Bearer {tokens['installer']}"},
    )
    answers = {"enroll": receipt}
    prev = GENESIS
    for seq in range(12):
        data = forge.simple(
            key, device_id="meter-c1", seq=seq, prev=prev, count=10, first_number=10 * seq, t0=NOW + 600 * seq
        )
        answers[f"packet{seq}"] = client.post("/v1/packets", data=data, content_type="application/cbor")
        prev = decode_packet(data).header_hash
    return {"tokens": tokens, "answers": answers, "key": key}


def _check(client: FlaskClient, response: Any, path: str, method: str = "get") -> None:
    """Validates a real answer against the schema the OpenAPI document gives for it."""
    doc = client.get("/v1/openapi.json").get_json()
    op = doc["paths"][path][method]
    status = str(response.status_code)
    spec = op["responses"].get(status) or op["responses"][f"{status[0]}XX"]
    media = response.mimetype
    schema = spec["content"][media]["schema"]
    resolver_doc = {**schema, "components": doc["components"]}
    if media.endswith("json"):
        jsonschema.validate(response.get_json(), resolver_doc, cls=jsonschema.Draft202012Validator)
    else:  # text: as the document's string schema (its pattern), a CSV with one width
        text = response.data.decode("utf-8")
        jsonschema.validate(text, resolver_doc, cls=jsonschema.Draft202012Validator)
        assert text, f"{method.upper()} {path}: an empty {media} answer"
        if media == "text/csv":
            lines = text.splitlines()
            rows = list(csv.reader(lines, delimiter=";" if ";" in lines[0] else ","))
            assert len({len(r) for r in rows if r}) == 1, f"{method.upper()} {path}: the CSV's rows differ in width"


def test_the_checker_fails_on_answers_outside_the_document(client: FlaskClient) -> None:
    """_check can fail: an answer that breaks its schema (JSON or text) is caught."""

    class Fake:
        def __init__(self, status: int, mimetype: str, data: bytes) -> None:
            self.status_code, self.mimetype, self.data = status, mimetype, data

        def get_json(self) -> Any:
            import json

            return json.loads(self.data)

    with pytest.raises(jsonschema.ValidationError):
        _check(client, Fake(200, "text/plain", b"not a checkpoint\n"), "/v1/ledger/checkpoint")
    with pytest.raises(jsonschema.ValidationError):
        _check(client, Fake(200, "application/json", b'{"devices": 3}'), "/v1/devices")
    with pytest.raises((AssertionError, jsonschema.ValidationError)):
        _check(client, Fake(200, "text/plain", b""), "/v1/ledger/checkpoint")


def test_openapi_document_is_valid_openapi_31(client: FlaskClient) -> None:
    doc = client.get("/v1/openapi.json").get_json()
    assert doc["openapi"].startswith("3.1")
    for schema in doc["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)


def test_real_answers_match_the_document(client: FlaskClient, world: dict[str, Any]) -> None:
    auth = {"Authorization": f"Bearer {world['tokens']['utility']}"}
    audit_auth = {"Authorization": f"Bearer {world['tokens']['auditor']}"}
    _check(client, world["answers"]["enroll"], "/v1/enrollments", "post")
    _check(client, world["answers"]["packet3"], "/v1/packets", "post")
    duplicate = client.post(
        "/v1/packets",
        data=forge.simple(world["key"], device_id="meter-c1", t0=NOW, count=10),
        content_type="application/cbor",
    )
    _check(client, duplicate, "/v1/packets", "post")
    _check(client, client.post("/v1/packets", data=b"\xff", content_type="application/cbor"), "/v1/packets", "post")
    batch = [forge.simple(world["key"], device_id="meter-c1", t0=NOW, count=10), b"\xff"]
    _check(
        client,
        client.post("/v1/packets/batch", data=strict_cbor.dumps(batch), content_type="application/cbor"),
        "/v1/packets/batch",
        "post",
    )
    _check(
        client,
        client.post("/v1/packets/batch", data=b"\x80", content_type="application/cbor"),
        "/v1/packets/batch",
        "post",
    )
    _check(client, client.get("/v1/devices", headers=auth), "/v1/devices")
    _check(client, client.get("/v1/devices/meter-c1", headers=auth), "/v1/devices/{device_id}")
    _check(
        client, client.get("/v1/devices/meter-c1/readings?limit=7", headers=auth), "/v1/devices/{device_id}/readings"
    )
    _check(
        client,
        client.get(f"/v1/devices/meter-c1/energy?from={NOW}&to={NOW + 7200}&interval=15m", headers=auth),
        "/v1/devices/{device_id}/energy",
    )
    _check(client, client.get("/v1/packets/meter-c1/4", headers=auth), "/v1/packets/{device_id}/{seq}")
    _check(client, client.get("/v1/ledger/proof/inclusion?index=3"), "/v1/ledger/proof/inclusion")
    _check(client, client.get("/v1/ledger/proof/consistency?from=2"), "/v1/ledger/proof/consistency")
    _check(client, client.get("/v1/ledger/entries/2", headers=audit_auth), "/v1/ledger/entries/{index}")
    _check(client, client.get("/v1/ledger/entries/2"), "/v1/ledger/entries/{index}")  # public, as the tiles
    _check(client, client.get("/v1/packets/meter-c1/4/header"), "/v1/packets/{device_id}/{seq}/header")
    _check(
        client,
        client.get("/v1/packets/meter-c1/4/certificate", headers=auth),
        "/v1/packets/{device_id}/{seq}/certificate",
    )
    _check(client, client.get("/v1/packets/meter-c1/4/certificate"), "/v1/packets/{device_id}/{seq}/certificate")  # 401
    _check(client, client.get("/v1/ledger/checkpoint"), "/v1/ledger/checkpoint")


def test_readings_pagination_covers_everything_once(client: FlaskClient, world: dict[str, Any]) -> None:
    auth = {"Authorization": f"Bearer {world['tokens']['utility']}"}
    numbers, cursor, packets = [], None, set()
    while True:
        url = "/v1/devices/meter-c1/readings?limit=7" + (f"&cursor={cursor}" if cursor is not None else "")
        page = client.get(url, headers=auth).get_json()
        numbers += [r["number"] for r in page["readings"]]
        packets |= {(r["packet"]["seq"], r["packet"]["ledger_index"]) for r in page["readings"]}
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert numbers == list(range(120))
    # Every reading names the packet that holds it: the packets' own seq and ledger entries.
    assert len(packets) > 1
    for seq, index in packets:
        entry = client.get(f"/v1/ledger/entries/{index}", headers=auth).get_json()
        assert (entry["kind"], entry["device_id"]) == ("packet", "meter-c1")
        assert cbor2.loads(bytes.fromhex(entry["entry"]))["seq"] == seq
    window = client.get(f"/v1/devices/meter-c1/readings?from={NOW + 600}&to={NOW + 1200}", headers=auth).get_json()
    assert [r["number"] for r in window["readings"]] == list(range(10, 20))


FUZZ_PATHS = ["/v1/packets", "/v1/packets/batch", "/v1/enrollments", "/v1/devices/meter-c1/rotate"]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(
    path=st.sampled_from(FUZZ_PATHS),
    body=st.one_of(
        st.binary(max_size=300),
        st.recursive(
            st.none() | st.integers() | st.binary(max_size=40) | st.text(max_size=20),
            lambda inner: (
                st.lists(inner, max_size=4) | st.dictionaries(st.integers() | st.text(max_size=8), inner, max_size=4)
            ),
            max_leaves=12,
        ).map(lambda v: strict_cbor.dumps(v) if _encodable(v) else b"\xa0"),
    ),
)
def test_malformed_bodies_never_cause_a_500(client: FlaskClient, world: dict[str, Any], path: str, body: bytes) -> None:
    headers = {"Authorization": f"Bearer {world['tokens']['installer']}"}
    response = client.post(path, data=body, content_type="application/cbor", headers=headers)
    assert response.status_code < 500, response.data
    if response.status_code >= 400:
        assert response.mimetype == "application/problem+json"


def _encodable(value: object) -> bool:
    try:
        strict_cbor.dumps(value)
        return True
    except (TypeError, ValueError):
        return False


def test_a_settings_file_configures_the_service(tmp_path: Path) -> None:
    config = tmp_path / "verifier.toml"
    config.write_text(f'database = "{tmp_path / "v.sqlite"}"\nlog_origin = "grid.example/ledger"\n')
    app = create_app({"CONFIG": str(config)})
    assert app.test_client().get("/v1/ledger/key").data.decode().startswith("grid.example/ledger+")


def test_the_documents_time_pattern_admits_every_day_and_offset_the_server_takes() -> None:
    """It refused days 29 to 31 and every offset but +00:00: generated clients broke at every
    month's end."""
    import datetime
    import re

    from verifier.http import parse_time
    from verifier.http.openapi import TIME_QUERY

    pattern = re.compile(TIME_QUERY["oneOf"][1]["pattern"])
    day = datetime.date(2024, 1, 1)
    while day.year == 2024:
        for offset in ("Z", "+00:00", "+01:00", "-05:30", "+14:00"):
            text = f"{day.isoformat()}T23:59:59{offset}"
            assert pattern.fullmatch(text) and parse_time(text), text
        day += datetime.timedelta(days=1)
    assert pattern.fullmatch("9999-12-31T23:59:59Z") and not pattern.fullmatch("2024-01-01T00:00:00")


def test_from_after_to_is_refused_everywhere(client: FlaskClient, world: dict[str, Any]) -> None:
    """Every operation of the document that takes a time range refuses one that ends before it begins."""
    doc = client.get("/v1/openapi.json").get_json()
    auth = {"Authorization": f"Bearer {world['tokens']['admin']}"}
    values = {"device_id": "meter-c1", "community_id": "rue", "session_id": "00"}
    checked = []
    for path, ops in doc["paths"].items():
        op = ops.get("get")
        names = {
            p["name"]
            for p in (op or {}).get("parameters", [])
            if p.get("in") == "query" and "oneOf" in p.get("schema", {})
        }  # times (a consistency proof's from and to are sizes)
        pair = ("from", "to") if {"from", "to"} <= names else ("date_from", "date_to") if "date_from" in names else None
        if op is None or pair is None:
            continue
        url = path.format(**values) + f"?{pair[0]}=2000000&{pair[1]}=1000000"
        if path == "/v1/matching":
            url += "&device_id=meter-c1"
        r = client.get(url, headers=auth)
        assert r.status_code == 400 and r.get_json()["field"] == pair[0], (path, r.status_code, r.get_json())
        checked.append(path)
    token = base64.b64encode(world["tokens"]["utility"].encode()).decode()
    r = client.get("/ocpi/2.2.1/cdrs?date_from=2000000&date_to=1000000", headers={"Authorization": f"Token {token}"})
    assert r.status_code == 400 and r.get_json()["status_code"] == 2001
    assert len(checked) >= 6, checked


def test_a_period_widened_to_whole_intervals_says_so(client: FlaskClient, world: dict[str, Any]) -> None:
    auth = {"Authorization": f"Bearer {world['tokens']['utility']}"}
    start = NOW - NOW % 3600 + 3600
    asked = client.get(f"/v1/devices/meter-c1/energy?from={start + 600}&to={start + 4000}", headers=auth).get_json()
    assert asked["widened"] is True and (asked["from"], asked["to"]) == (start, start + 7200)
    assert (asked["asked_from"], asked["asked_to"]) == (start + 600, start + 4000)
    assert [iv["start"] for iv in asked["intervals"]] == [start, start + 3600]
    whole = client.get(f"/v1/devices/meter-c1/energy?from={start}&to={start + 3600}", headers=auth).get_json()
    assert whole["widened"] is False and (whole["from"], whole["to"]) == (start, start + 3600)


def test_every_field_of_the_document_says_what_it_is(app: Flask) -> None:
    """Every property of every schema has a description, and those of a value with a unit name
    it (Wh, W, seconds, Unix seconds, microdegrees, ISO 8601)."""
    from verifier.http import openapi

    missing, unitless = [], []

    def walk(schema: Any, where: str) -> None:
        if isinstance(schema, dict):
            for name, prop in (schema.get("properties") or {}).items():
                if not isinstance(prop, dict) or "$ref" in prop:
                    continue
                text = prop.get("description")
                if not text:
                    missing.append(f"{where}.{name}")
                elif name.endswith("_wh") and "Wh" not in text or name.endswith("_w") and " W" not in text:
                    unitless.append(f"{where}.{name}")
                elif (name.endswith("_at") or name in ("ts", "start", "end")) and "Unix seconds" not in text:
                    unitless.append(f"{where}.{name}")
                elif name.endswith("location") and "microdegrees" not in text:
                    unitless.append(f"{where}.{name}")
            for key, value in schema.items():
                walk(value, f"{where}/{key}")
        elif isinstance(schema, list):
            for value in schema:
                walk(value, where)

    walk(openapi.document(app), "")
    assert not missing, missing
    assert not unitless, unitless
