"""`wattproof ledger audit`: a clean ledger passes; one changed byte in any stored row is caught."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests import forge
from tests.conftest import ENGINES, Database, make_database
from tests.enroll import enroll_key, es256_signer
from verifier import settings, storage
from verifier.app import create_app
from verifier.audit import replay
from verifier.devices import identity, lifecycle
from verifier.log import note
from verifier.wire import cose, strict_cbor
from verifier.wire.packet import GENESIS, decode_packet

NOW = int(time.time()) - 86400
# Two witnesses' cosignatures of the latest checkpoint are stored as the cosigner stores them.
WITNESSES = [note.Signer.generate(f"witness.example/{n}", note.ALG_COSIGNATURE_V1) for n in ("a", "b")]
WITNESS_KEYS = [w.verifier() for w in WITNESSES]


@pytest.fixture(scope="module", params=ENGINES)
def ledger_db(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Database:
    """A ledger with every kind of entry and several checkpoints, on each engine."""
    database = make_database(request.param, tmp_path_factory.mktemp("audit"), request)
    path = database.target
    app = create_app(database.config())
    client = app.test_client()
    keys = {name: ec.generate_private_key(ec.SECP256R1()) for name in ("forge-1", "forge-2")}
    for name, key in keys.items():
        enroll_key(path, name, key, capacity_w=5000)
    for n in range(3, 7):  # devices that send nothing: the ledger passes 16 entries, a stored tree node
        enroll_key(path, f"forge-{n}", ec.generate_private_key(ec.SECP256R1()), capacity_w=5000)

    def post(data: bytes) -> int:
        return client.post("/v1/packets", data=data, content_type="application/cbor").status_code

    prev = GENESIS
    for seq in range(6):
        data = forge.simple(keys["forge-1"], seq=seq, prev=prev, first_number=3 * seq, t0=NOW + 300 * seq)
        assert post(data) == 201
        prev = decode_packet(data).header_hash
        client.get("/v1/ledger/checkpoint")  # checkpoints at several sizes
    odd = [forge.meter(0, NOW, 10), forge.meter(1, NOW + 60, 5)]  # a register that goes back: an anomaly
    assert post(forge.packet(keys["forge-2"], forge.header_map("forge-2", 0, odd, [NOW, NOW + 60]), odd)) == 201
    new = ec.generate_private_key(ec.SECP256R1())
    key_index = lifecycle.key_index(storage.connect(app.config["DATABASE"]), "forge-1")
    message = identity.rotation_message(
        "forge-1", forge.point(new), cose.key_id(forge.point(keys["forge-1"])), key_index
    )
    rotation = {
        "new_public_key": forge.point(new),
        "old_sig": es256_signer(keys["forge-1"])(message),
        "new_sig": es256_signer(new)(message),
        "key_index": key_index,
    }
    assert (
        client.post(
            "/v1/devices/forge-1/rotate", data=strict_cbor.dumps(rotation), content_type="application/cbor"
        ).status_code
        == 200
    )
    data = forge.simple(new, seq=6, prev=prev, first_number=18, t0=NOW + 1800)
    assert post(data) == 201
    assert post(forge.simple(new, seq=6, prev=prev, first_number=18, t0=NOW + 1801)) == 409  # equivocation
    conn = storage.connect(path)
    with storage.transaction(conn):
        lifecycle.revoke(conn, "forge-2", "meter removed", "test")
    client.get("/v1/ledger/checkpoint")
    size, signed = conn.execute("SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT 1").fetchone()
    text = bytes(signed).decode()
    text = text[: text.index("\n\n") + 1]
    with storage.transaction(conn):
        for n, w in enumerate(WITNESSES):
            when = NOW + 3600 + n
            conn.execute(
                "INSERT INTO cosignatures VALUES (?, ?, ?, ?)", (size, w.name, w.signature_line(text, when), when)
            )
    conn.close()
    return database


def _log_key(db: Database) -> note.Verifier:
    return settings.log_signer({**settings.DEFAULTS, **db.config()}, create=False).verifier()


def _audit(db: Database, witnesses: list[note.Verifier] = WITNESS_KEYS) -> replay.Report:
    return replay.audit(storage.connect(db.target), _log_key(db), witnesses)


def _tampered(db: Database, statement: str, params: tuple[object, ...] = ()) -> tuple[replay.Report, object]:
    """The audit of the database with one statement applied, inside a transaction that is
    rolled back afterwards (the shared ledger stays clean); and the kind of the entry the
    audit named."""
    conn = storage.connect(db.target)
    conn.execute("BEGIN")
    try:
        conn.execute(statement, params)
        report = replay.audit(conn, _log_key(db), WITNESS_KEYS)
        kind = conn.execute("SELECT kind FROM ledger WHERE idx = ?", (report.index or 0,)).fetchone()
        return report, None if kind is None else kind[0]
    finally:
        conn.execute("ROLLBACK")
        conn.close()


def test_a_clean_ledger_passes(ledger_db: Database) -> None:
    report = _audit(ledger_db)
    assert report.ok, report.problem
    conn = storage.connect(ledger_db.target)
    kinds = {k for (k,) in conn.execute("SELECT DISTINCT kind FROM ledger")}
    assert kinds == {"installer", "enroll", "packet", "rotate", "equivocation", "revoke"}
    assert report.packets == 8 and report.readings == 23 and report.anomalies == 1 and report.checkpoints >= 7
    assert (report.cosignatures, report.cosignatures_unchecked) == (2, 0)
    one = _audit(ledger_db, WITNESS_KEYS[:1])  # a witness whose key the audit is not given: counted, not checked
    assert one.ok and (one.cosignatures, one.cosignatures_unchecked) == (1, 1)


def _flip(value: bytes | str | int) -> bytes | str | int:
    if isinstance(value, bytes):
        return value[:-1] + bytes([value[-1] ^ 0x01])
    if isinstance(value, str):
        return value[:-1] + chr(ord(value[-1]) ^ 0x01)
    return value ^ 1


# table, column, which row (SQL), the ledger index the problem must be reported at (None: tables)
TAMPERS = [
    ("ledger", "entry", "idx = 5", 5),
    ("ledger", "leaf", "idx = 3", 3),
    ("ledger", "kind", "idx = 4", 4),
    ("ledger_nodes", "hash", "level = 4 AND idx = 0", 15),
    ("checkpoints", "note", "size = (SELECT MIN(size) FROM checkpoints WHERE size > 4)", "checkpoint"),
    ("checkpoints", "root", "size = (SELECT MAX(size) FROM checkpoints)", "checkpoint"),
    ("packets", "header_hash", "seq = 2 AND device_id = 'forge-1'", "packet"),
    ("packets", "first_ts", "seq = 1 AND device_id = 'forge-1'", "packet"),
    ("packets", "readings", "seq = 1 AND device_id = 'forge-1'", "packet"),
    ("devices", "public_key", "device_id = 'forge-1'", "device"),
    ("devices", "status", "device_id = 'forge-2'", "device"),
    ("installers", "public_key", "1 = 1", None),
    ("anomalies", "detail", "1 = 1", "packet"),
    ("chain_heads", "header_hash", "device_id = 'forge-1'", "chain"),
    ("chain_heads", "reading", "device_id = 'forge-1'", "chain"),
    ("chain_heads", "seq", "device_id = 'forge-1'", "chain"),
]


@pytest.mark.parametrize(("table", "column", "where", "expect"), TAMPERS, ids=[f"{t[0]}.{t[1]}" for t in TAMPERS])
def test_one_changed_byte_in_any_stored_row_is_caught(
    ledger_db: Database, table: str, column: str, where: str, expect: object
) -> None:
    conn = storage.connect(ledger_db.target)
    (value,) = conn.execute(f"SELECT {column} FROM {table} WHERE {where}").fetchone()
    conn.close()
    changed = _flip(bytes(value) if isinstance(value, memoryview) else value)
    report, kind = _tampered(ledger_db, f"UPDATE {table} SET {column} = ? WHERE {where}", (changed,))
    assert not report.ok, f"{table}.{column} change went unnoticed"
    if isinstance(expect, int):
        assert report.index == expect, (report.index, report.problem)
    elif expect == "checkpoint":
        assert "checkpoint" in str(report.problem)
    elif expect == "packet":
        assert report.index is not None and kind == "packet", (report.index, report.problem)
    elif expect == "device":
        assert "devices row" in str(report.problem) and report.index is not None
    elif expect == "chain":
        assert "chain_heads row of forge-1" in str(report.problem) and kind == "packet", report.problem


@pytest.mark.parametrize(
    ("statement", "params"),
    [
        ("DELETE FROM ledger WHERE idx = (SELECT MAX(idx) FROM ledger)", ()),
        ("UPDATE ledger_head SET size = size - 1", ()),
        ("UPDATE chain_heads SET span = span + 1 WHERE device_id = 'forge-1'", ()),
        ("DELETE FROM chain_heads WHERE device_id = 'forge-1'", ()),
        ("UPDATE cosignatures SET cosigned_at = cosigned_at + 1 WHERE witness = 'witness.example/a'", ()),
        ("UPDATE cosignatures SET size = (SELECT MIN(size) FROM checkpoints WHERE size > 0)", ()),
        ("UPDATE cosignatures SET size = 100000 WHERE witness = 'witness.example/b'", ()),
        (
            "UPDATE cosignatures SET line = (SELECT line FROM cosignatures WHERE witness = 'witness.example/b')"
            " WHERE witness = 'witness.example/a'",
            (),
        ),
    ],
)
def test_a_removed_entry_and_an_extra_row_are_caught(
    ledger_db: Database, statement: str, params: tuple[object, ...]
) -> None:
    report, _ = _tampered(ledger_db, statement, params)
    assert not report.ok, statement


def test_cli_audit_and_key(ledger_db: Database) -> None:
    cli = [sys.executable, "-m", "wattproof.cli"]
    where = ["--db", ledger_db.target] if ledger_db.engine == "sqlite" else ["--database", ledger_db.target]
    where += ["--log-key", str(ledger_db.log_key)]
    audit_run = subprocess.run([*cli, "ledger", "audit", *where], capture_output=True, text=True, timeout=60)
    assert audit_run.returncode == 0 and "audit OK" in audit_run.stdout, audit_run.stdout + audit_run.stderr
    assert "witness cosignatures 0 (and 2 by witnesses not named)" in audit_run.stdout
    named = [arg for k in WITNESS_KEYS for arg in ("--witness", str(k))]
    audit_run = subprocess.run([*cli, "ledger", "audit", *where, *named], capture_output=True, text=True, timeout=60)
    assert audit_run.returncode == 0 and "witness cosignatures 2:" in audit_run.stdout, audit_run.stdout
    wrong = note.Signer.generate("witness.example/a", note.ALG_COSIGNATURE_V1).verifier()  # the name, not the key
    audit_run = subprocess.run([*cli, "ledger", "audit", *where, "--witness", str(wrong)], capture_output=True,
                               text=True, timeout=60)  # fmt: skip
    assert audit_run.returncode == 1 and "cosignature by witness.example/a" in audit_run.stdout, audit_run.stdout
    key = subprocess.run([*cli, "ledger", "key", *where], capture_output=True, text=True, timeout=60)
    served = create_app(ledger_db.config()).test_client().get("/v1/ledger/key").data.decode()
    assert key.returncode == 0 and key.stdout == served and key.stdout.startswith("wattproof.local/ledger+")
