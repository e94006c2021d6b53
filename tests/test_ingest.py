"""POST /v1/packets: each outcome, answered as JSON or RFC 9457 problem+json, on each engine
(a real SQLite file, a real PostgreSQL server)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask
from flask.testing import FlaskClient

from tests import forge
from tests.conftest import TEST_KEY_HEX, BuiltPackets, Database, stored_readings
from tests.enroll import enroll, enroll_key, es256_signer, record
from verifier import storage
from verifier.app import create_app
from verifier.wire.packet import decode_packet
from verifier.wire.problems import TYPE_BASE

KEY = forge.new_key()


@pytest.fixture
def app(database: Database) -> Iterator[Flask]:
    app = create_app(database.config(TESTING=True))
    enroll_key(app.config["DATABASE"], "forge-1", KEY)
    yield app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def post(client: FlaskClient, data: bytes, content_type: str = "application/cbor") -> tuple[int, dict[str, Any]]:
    response = client.post("/v1/packets", data=data, content_type=content_type)
    if response.status_code >= 400:
        assert response.mimetype == "application/problem+json"
    return response.status_code, response.get_json()


def problem_type(body: dict[str, Any]) -> str:
    assert body["type"].startswith(TYPE_BASE) and body["title"] and body["detail"]
    return str(body["type"])[len(TYPE_BASE) :]


def test_accept_then_duplicate_is_idempotent(client: FlaskClient, app: Flask) -> None:
    first = forge.simple(KEY)
    assert post(client, first)[0] == 201
    status, body = post(client, first)
    assert (status, body["status"]) == (200, "duplicate")
    conn = storage.connect(app.config["DATABASE"])
    assert conn.execute("SELECT COUNT(*) FROM packets").fetchone()[0] == 1
    assert len(stored_readings(conn)) == 3


def test_chain_continues_and_stores_exact_bytes(client: FlaskClient, app: Flask) -> None:
    p0 = forge.simple(KEY)
    p1 = forge.simple(KEY, seq=1, prev=decode_packet(p0).header_hash, first_number=3, t0=1795000200)
    assert post(client, p0)[0] == 201
    status, body = post(client, p1)
    assert (status, body["seq"]) == (201, 1)
    conn = storage.connect(app.config["DATABASE"])
    raws = stored_readings(conn)
    assert raws == [r.raw for r in decode_packet(p0).readings + decode_packet(p1).readings]


def test_gap_answers_conflict_with_expected_sequence(client: FlaskClient) -> None:
    p0 = forge.simple(KEY)
    post(client, p0)
    status, body = post(client, forge.simple(KEY, seq=2, prev=decode_packet(p0).header_hash, first_number=3))
    assert (status, problem_type(body), body["expected_seq"]) == (409, "sequence-conflict", 1)


def test_first_packet_must_be_sequence_zero(client: FlaskClient) -> None:
    status, body = post(client, forge.simple(KEY, seq=5))
    assert (status, problem_type(body), body["expected_seq"]) == (409, "sequence-conflict", 0)


def test_wrong_prev_is_a_conflict(client: FlaskClient) -> None:
    post(client, forge.simple(KEY))
    status, body = post(client, forge.simple(KEY, seq=1, prev=b"\x07" * 32, first_number=3))
    assert (status, problem_type(body), body["field"]) == (409, "sequence-conflict", "header.payload.prev")


def test_equivocation_same_sequence_other_content(client: FlaskClient, app: Flask) -> None:
    post(client, forge.simple(KEY))
    status, body = post(client, forge.simple(KEY, t0=1795000001))
    assert (status, problem_type(body)) == (409, "equivocation")
    conn = storage.connect(app.config["DATABASE"])
    assert conn.execute("SELECT COUNT(*) FROM packets").fetchone()[0] == 1


def test_reading_numbers_continue_across_packets(client: FlaskClient) -> None:
    p0 = forge.simple(KEY)
    post(client, p0)
    status, body = post(client, forge.simple(KEY, seq=1, prev=decode_packet(p0).header_hash, first_number=9))
    assert (status, problem_type(body), body["field"]) == (400, "reading-number-gap", "readings[0].number")


def test_unknown_device(client: FlaskClient) -> None:
    status, body = post(client, forge.simple(KEY, device_id="stranger-9"))
    assert (status, problem_type(body)) == (403, "unknown-device")


def test_bad_input_is_problem_json_and_stores_nothing(client: FlaskClient, app: Flask) -> None:
    assert problem_type(post(client, b"\xff\x00")[1]) == "malformed-cbor"
    assert post(client, forge.simple(KEY), content_type="application/json")[0] == 415
    status, body = post(client, b"\x82" + b"\0" * 70000)
    assert (status, problem_type(body)) == (413, "packet-too-large")
    response = client.get("/v1/packets")
    assert response.status_code == 405 and response.mimetype == "application/problem+json"
    response = client.get("/v1/nothing")
    assert response.status_code == 404 and problem_type(response.get_json()) == "not-found"
    conn = storage.connect(app.config["DATABASE"])
    assert conn.execute("SELECT COUNT(*) FROM packets").fetchone()[0] == 0


def test_firmware_packets_accepted_in_order(database: Database, chain: BuiltPackets) -> None:
    app = create_app(database.config())
    conn = storage.connect(app.config["DATABASE"])
    key = ec.derive_private_key(int(TEST_KEY_HEX, 16), ec.SECP256R1())  # the key the firmware was given
    enroll(conn, record("sample-meter-1", chain.public_key), es256_signer(key))
    client = app.test_client()
    for seq, data in enumerate(chain.packets):
        status, body = post(client, data)
        assert (status, body["seq"]) == (201, seq)
    assert len(stored_readings(conn)) == 64 * len(chain.packets)
    if database.engine == "sqlite":
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
