"""POST /v1/packets/batch: many packets per request, each with the outcome it would get alone."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests import forge
from tests.conftest import Database, make_database
from tests.enroll import enroll_key
from tests.test_ingest import problem_type
from verifier import ingest, storage, strict_cbor
from verifier.http.app import create_app
from verifier.packet import GENESIS, decode_packet
from verifier.problems import Problem
from verifier.storage import transaction

KEY = forge.new_key()
OTHER = forge.new_key()
HUGE = ingest.MAX_BATCH_BYTES


@pytest.fixture
def app(database: Database) -> Iterator[Flask]:
    app = create_app(database.config(TESTING=True, RATE_BURST=10000))
    enroll_key(app.config["DATABASE"], "forge-1", KEY)
    enroll_key(app.config["DATABASE"], "forge-2", OTHER)
    yield app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def chain(key: Any, device_id: str, n: int, count: int = 4, start: int = 0) -> list[bytes]:
    """n consecutive packets of a device, each of count readings."""
    out, prev = [], GENESIS
    for seq in range(n):
        data = forge.simple(
            key, device_id=device_id, seq=seq, prev=prev, count=count, first_number=count * seq,
            t0=1790000000 + 60 * count * seq,
        )  # fmt: skip
        out.append(data)
        prev = decode_packet(data).header_hash
    return out[start:]


def post_batch(client: FlaskClient, packets: list[bytes]) -> tuple[int, dict[str, Any]]:
    response = client.post("/v1/packets/batch", data=strict_cbor.dumps(packets), content_type="application/cbor")
    if response.status_code >= 400:
        assert response.mimetype == "application/problem+json"
    return response.status_code, response.get_json()


def counts(db: str) -> tuple[int, ...]:
    """Rows in packets, readings and ledger."""
    conn = storage.connect(db, create=False)
    try:
        return tuple(conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("packets", "readings", "ledger"))
    finally:
        conn.close()


def test_a_batch_is_accepted_in_order_and_a_resend_is_all_duplicates(client: FlaskClient, app: Flask) -> None:
    packets = chain(KEY, "forge-1", 6) + chain(OTHER, "forge-2", 3)
    status, body = post_batch(client, packets)
    assert status == 200
    assert (body["accepted"], body["duplicate"], body["refused"]) == (9, 0, 0)
    assert [r["seq"] for r in body["results"]] == [0, 1, 2, 3, 4, 5, 0, 1, 2]
    indexes = [r["ledger_index"] for r in body["results"]]
    assert indexes == sorted(indexes) and len(set(indexes)) == 9
    before = counts(app.config["DATABASE"])
    assert before[:2] == (9, 36)
    status, again = post_batch(client, packets)
    assert status == 200 and again["duplicate"] == 9
    assert [r["ledger_index"] for r in again["results"]] == indexes
    assert counts(app.config["DATABASE"]) == before


def test_each_packet_gets_the_answer_it_would_get_alone(
    client: FlaskClient, app: Flask, database: Database, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    good = chain(KEY, "forge-1", 4)
    forged = bytearray(good[1])
    forged[-3] ^= 1  # inside the last reading: the signed root no longer matches
    equivocating = forge.simple(OTHER, device_id="forge-2", t0=1795000007)
    batch = [
        good[0],
        bytes(forged),  # refused: merkle-root-mismatch
        good[2],  # refused: packet 1 is missing
        forge.simple(OTHER, device_id="forge-2"),
        equivocating,  # refused: equivocation, recorded with evidence
        forge.simple(KEY, device_id="stranger-9"),  # refused: unknown-device
        b"\xff",  # refused: malformed-cbor
        good[1],
        good[2],  # now it continues the chain
    ]
    status, body = post_batch(client, batch)
    assert status == 200
    got = [r["status"] if r["status"] != "refused" else problem_type(r["problem"]) for r in body["results"]]
    assert got == [
        "accepted",
        "merkle-root-mismatch",
        "sequence-conflict",
        "accepted",
        "equivocation",
        "unknown-device",
        "malformed-cbor",
        "accepted",
        "accepted",
    ]
    assert body["results"][2]["problem"]["expected_seq"] == 1
    assert (body["accepted"], body["duplicate"], body["refused"]) == (4, 0, 5)
    conn = storage.connect(app.config["DATABASE"])
    assert conn.execute("SELECT COUNT(*) FROM readings").fetchone()[0] == 3 * 4 + 3
    assert conn.execute("SELECT flagged FROM devices WHERE device_id = 'forge-2'").fetchone()[0] == 1
    kinds = [k for (k,) in conn.execute("SELECT kind FROM ledger WHERE device_id IS NOT NULL ORDER BY idx")]
    assert kinds.count("equivocation") == 1 and kinds.count("packet") == 4
    # The same packets one by one give the same answers.
    (tmp_path / "single").mkdir()
    single = create_app(make_database(database.engine, tmp_path / "single", request).config(TESTING=True))
    enroll_key(single.config["DATABASE"], "forge-1", KEY)
    enroll_key(single.config["DATABASE"], "forge-2", OTHER)
    alone = []
    for data in batch:
        response = single.test_client().post("/v1/packets", data=data, content_type="application/cbor")
        answer = response.get_json()
        alone.append(answer["status"] if response.status_code < 400 else problem_type(answer))
    assert alone == got


def test_a_crash_inside_a_batch_commits_none_of_it(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    packets = chain(KEY, "forge-1", 5)
    real = ingest._append
    calls = []

    def failing(db: storage.Connection, plan: Any) -> Any:
        calls.append(plan.packet.header.seq)
        if len(calls) == 4:
            if db.engine == "sqlite":
                raise sqlite3.OperationalError("disk I/O error")  # as a dying disk would
            raise storage.Unavailable("server closed the connection unexpectedly")
        return real(db, plan)

    monkeypatch.setattr(ingest, "_append", failing)
    client = app.test_client()
    failed = client.post("/v1/packets/batch", data=strict_cbor.dumps(packets), content_type="application/cbor")
    assert failed.status_code == 503 and failed.mimetype == "application/problem+json"
    assert problem_type(failed.get_json()) == "storage-unavailable" and failed.headers["Retry-After"] == "5"
    assert counts(app.config["DATABASE"])[:2] == (0, 0)
    monkeypatch.setattr(ingest, "_append", real)
    status, body = post_batch(client, packets)
    assert (status, body["accepted"]) == (200, 5)


@pytest.mark.parametrize(
    ("body", "status", "slug"),
    [
        (strict_cbor.dumps({"packets": []}), 400, "invalid-field"),
        (strict_cbor.dumps([]), 400, "invalid-field"),
        (strict_cbor.dumps([1, 2]), 400, "invalid-field"),
        (b"\x9f\x41\x00\xff", 400, "malformed-cbor"),  # indefinite length
        (b"\x98\x01\x41\x00", 400, "malformed-cbor"),  # non-shortest head
        (strict_cbor.dumps([b"\x00"] * (ingest.MAX_BATCH_PACKETS + 1)), 413, "batch-too-large"),
        (b"\x81\x5a" + HUGE.to_bytes(4, "big") + bytes(HUGE), 413, "packet-too-large"),
    ],
)  # fmt: skip
def test_a_malformed_batch_is_refused_whole(
    client: FlaskClient, app: Flask, body: bytes, status: int, slug: str
) -> None:
    response = client.post("/v1/packets/batch", data=body, content_type="application/cbor")
    assert response.mimetype == "application/problem+json"
    assert (response.status_code, problem_type(response.get_json())) == (status, slug)
    assert counts(app.config["DATABASE"])[:2] == (0, 0)


def test_a_batch_needs_cbor(client: FlaskClient) -> None:
    response = client.post("/v1/packets/batch", data=b"[]", content_type="application/json")
    assert (response.status_code, problem_type(response.get_json())) == (415, "unsupported-media-type")


def test_a_large_legal_batch_passes_the_single_packet_size_limit(client: FlaskClient) -> None:
    packets = chain(KEY, "forge-1", 40, count=200)
    assert sum(map(len, packets)) > 2 * 65536
    status, body = post_batch(client, packets)
    assert (status, body["accepted"]) == (200, 40)


def test_a_plan_on_an_old_snapshot_is_made_again_under_the_lock(app: Flask) -> None:
    """Checks run before the write lock on a snapshot of the device's chain; another request
    that moves the chain meanwhile must not let a stale decision through, either way."""
    conn = storage.connect(app.config["DATABASE"])
    packets = chain(KEY, "forge-1", 3)
    packet, capacity, _ = ingest._verified(conn, packets[1], None)
    stale = ingest._plan(conn, packet, capacity, ingest._state(conn, "forge-1"))
    assert isinstance(stale.result, Problem) and stale.result.kind == "sequence-conflict"
    ingest.accept_packet(conn, packets[0])
    with transaction(conn):
        result = ingest._commit(conn, stale)
    assert isinstance(result, ingest.Outcome) and not result.duplicate
    ingest.accept_packet(conn, packets[1])  # the same packet again: a duplicate now
    packet, capacity, _ = ingest._verified(conn, packets[2], None)
    plan = ingest._plan(conn, packet, capacity, ingest._state(conn, "forge-1"))
    assert plan.result is None and plan.entry
    rival = forge.simple(
        KEY, device_id="forge-1", seq=2, prev=decode_packet(packets[1]).header_hash, count=4, first_number=8,
        t0=1790000000 + 60 * 4 * 2 + 1,
    )  # fmt: skip
    ingest.accept_packet(conn, rival)
    with transaction(conn):
        result = ingest._commit(conn, plan)
    assert isinstance(result, Problem) and result.kind == "equivocation"
    assert conn.execute("SELECT flagged FROM devices WHERE device_id = 'forge-1'").fetchone()[0] == 1
    assert conn.execute("SELECT COUNT(*) FROM packets").fetchone()[0] == 3
