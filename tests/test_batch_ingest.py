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
from tests.conftest import Database, make_database, stored_readings
from tests.enroll import enroll_key
from tests.test_ingest import problem_type
from verifier import storage
from verifier.app import create_app
from verifier.devices import ingest
from verifier.storage import transaction
from verifier.wire import strict_cbor
from verifier.wire.packet import GENESIS, decode_packet, decode_reading
from verifier.wire.problems import Problem

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
    """Rows in packets, the readings they hold, rows in ledger."""
    conn = storage.connect(db, create=False)
    try:
        packets, ledger = (conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("packets", "ledger"))
        return packets, len(stored_readings(conn)), ledger
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
    assert len(stored_readings(conn)) == 3 * 4 + 3
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


def _checked(conn: Any, data: bytes) -> Any:
    """A packet's checks before the lock, as accept_batch makes them."""
    packet = decode_packet(data)
    return ingest._verified(conn, packet, None, ingest._devices(conn, {packet.header.device_id}))


def test_a_plan_on_an_old_snapshot_is_made_again_under_the_lock(app: Flask) -> None:
    """Checks run before the write lock on a snapshot of the device's chain; another request
    that moves the chain meanwhile must not let a stale decision through, either way."""
    conn = storage.connect(app.config["DATABASE"])
    packets = chain(KEY, "forge-1", 3)
    packet, capacity, _ = _checked(conn, packets[1])
    stale = ingest._plan(conn, packet, capacity, ingest._state(conn, "forge-1"))
    assert isinstance(stale.result, Problem) and stale.result.kind == "sequence-conflict"
    ingest.accept_packet(conn, packets[0])
    with transaction(conn):
        result = ingest._commit(conn, stale)
    assert isinstance(result, ingest.Outcome) and not result.duplicate
    ingest.accept_packet(conn, packets[1])  # the same packet again: a duplicate now
    packet, capacity, _ = _checked(conn, packets[2])
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


# -- another worker acts between a batch's checks and its transaction -----------------------


def _between_checks_and_write(monkeypatch: pytest.MonkeyPatch, move: Any) -> list[int]:
    """Runs move() once, right after the next batch's first planning (another worker acting
    between that batch's checks and its transaction); returns a list that counts plannings."""
    real, plannings = ingest._plan_batch, []

    def planned_then_moved(db: Any, verified: Any, limiter: Any, heads: Any = None) -> Any:
        planned = real(db, verified, limiter, heads)
        plannings.append(1)
        if len(plannings) == 1:
            move()
        return planned

    monkeypatch.setattr(ingest, "_plan_batch", planned_then_moved)
    return plannings


def _audit_clean(app: Flask) -> None:
    from verifier import settings
    from verifier.audit import replay

    conn = storage.connect(app.config["DATABASE"])
    try:
        report = replay.audit(conn, settings.log_signer(app.config, create=False).verifier())
    finally:
        conn.close()
    assert report.ok, report.problem


def test_the_same_packets_appended_by_another_worker_meanwhile_are_duplicates(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another worker appends the very same packets after this batch was checked: under the
    write lock the batch finds them appended and answers duplicates; nothing is stored twice."""
    conn, other = storage.connect(app.config["DATABASE"]), storage.connect(app.config["DATABASE"])
    packets = chain(KEY, "forge-1", 5)
    first: list[Any] = []
    plannings = _between_checks_and_write(monkeypatch, lambda: first.extend(ingest.accept_batch(other, packets)))
    results = ingest.accept_batch(conn, packets)
    assert len(plannings) == 2  # this batch once, the other worker's once
    assert all(isinstance(r, ingest.Outcome) and not r.duplicate for r in first)
    assert all(isinstance(r, ingest.Outcome) and r.duplicate for r in results)
    assert [r.ledger_index for r in results] == [r.ledger_index for r in first]  # type: ignore[union-attr]
    assert counts(app.config["DATABASE"])[:2] == (5, 20)
    conn.close()
    other.close()
    _audit_clean(app)


@pytest.mark.parametrize("move", ["equivocation", "revocation", "rotation"])
def test_a_packet_refused_under_the_lock_leaves_nothing_stored(
    app: Flask, monkeypatch: pytest.MonkeyPatch, move: str
) -> None:
    """After the batch was checked, another worker flags the device (it takes a rival of its
    accepted packet 0: an equivocation), an admin revokes it, or its key is rotated. Under the
    lock the batch's packets of that device are refused (flagged: the first by name, the
    next cannot chain; revoked, or signed by the old key: each by name), none of their
    readings is stored, and the other device's packets in the same batch are appended."""
    from tests.enroll import es256_signer
    from verifier.devices import identity, lifecycle
    from verifier.wire import cose

    conn, other = storage.connect(app.config["DATABASE"]), storage.connect(app.config["DATABASE"])
    packets = chain(KEY, "forge-1", 3)
    ingest.accept_packet(conn, packets[0])
    rival = forge.simple(KEY, device_id="forge-1", seq=0, prev=GENESIS, count=4, first_number=0, t0=1790000001)

    def act() -> None:
        if move == "equivocation":
            assert ingest.accept_batch(other, [rival])[0].kind == "equivocation"  # type: ignore[union-attr]
        elif move == "revocation":
            with transaction(other):
                lifecycle.revoke(other, "forge-1", "meter removed", "test")
        else:
            new, index = forge.new_key(), lifecycle.key_index(other, "forge-1")
            message = identity.rotation_message("forge-1", forge.point(new), cose.key_id(forge.point(KEY)), index)
            request = {"new_public_key": forge.point(new), "old_sig": es256_signer(KEY)(message),
                       "new_sig": es256_signer(new)(message), "key_index": index}  # fmt: skip
            with transaction(other):
                lifecycle.rotate(other, "forge-1", request)

    plannings = _between_checks_and_write(monkeypatch, act)
    results = ingest.accept_batch(conn, packets[1:] + chain(OTHER, "forge-2", 2))
    kinds = [r.kind if isinstance(r, Problem) else "accepted" for r in results]
    refused = {"equivocation": ["device-flagged", "sequence-conflict"], "revocation": ["device-revoked"] * 2,
               "rotation": ["unknown-key"] * 2}[move]  # fmt: skip
    assert kinds == [*refused, "accepted", "accepted"]
    assert len(plannings) == 1 + (move == "equivocation")  # this batch once (and the other worker's)
    assert counts(app.config["DATABASE"])[:2] == (3, 12)
    numbers = [decode_reading(raw).number for raw in stored_readings(conn, "forge-1")]
    assert numbers == [0, 1, 2, 3]  # packet 0's only
    conn.close()
    other.close()
    _audit_clean(app)


def test_two_workers_taking_the_same_batches_at_once_append_each_packet_once(app: Flask) -> None:
    """Two connections (two workers) get the same batches at the same moment, over and over:
    every packet is appended by exactly one of them and answered as a duplicate by the other."""
    import threading

    packets = chain(KEY, "forge-1", 40) + chain(OTHER, "forge-2", 40)
    batches = [packets[i : i + 4] + packets[40 + i : 44 + i] for i in range(0, 40, 4)]
    answers: list[list[list[Any]]] = [[], []]
    failures: list[BaseException] = []
    start = threading.Barrier(2)

    def worker(n: int) -> None:
        conn = storage.connect(app.config["DATABASE"])
        try:
            for batch in batches:
                start.wait(timeout=30)
                answers[n].append(ingest.accept_batch(conn, batch))
        except BaseException as e:  # noqa: BLE001 - reported below
            failures.append(e)
            start.abort()
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not failures, failures
    for mine, theirs in zip(answers[0], answers[1], strict=True):
        for a, b in zip(mine, theirs, strict=True):
            assert isinstance(a, ingest.Outcome) and isinstance(b, ingest.Outcome), (a, b)
            assert a.ledger_index == b.ledger_index and a.duplicate != b.duplicate
    assert counts(app.config["DATABASE"])[:2] == (80, 320)
    _audit_clean(app)


def test_a_devices_first_packet_starts_at_reading_0(client: FlaskClient, app: Flask) -> None:
    """Reading numbers run 0, 1, 2, ... across a device's packets (docs/protocol.md): a first
    packet starting elsewhere is refused, as the audit would refuse it."""
    late = forge.simple(KEY, device_id="forge-1", seq=0, prev=GENESIS, count=4, first_number=100, t0=1790000000)
    status, body = post_batch(client, [late])
    assert status == 200 and body["results"][0]["problem"]["type"].endswith("/reading-number-gap")
    assert "first reading is 0, got 100" in body["results"][0]["problem"]["detail"]
    assert counts(app.config["DATABASE"])[:2] == (0, 0)
