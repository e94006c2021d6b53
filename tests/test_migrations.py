"""Schema migrations: a first-release database upgrades in place, loses nothing, audits clean."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from tests import forge
from tests.conftest import stored_readings
from tests.enroll import enroll, es256_signer, record
from tests.test_schema_parity import undo_readings_in_packets
from verifier import auth, settings, storage
from verifier.app import create_app
from verifier.audit import replay
from verifier.devices import ingest
from verifier.storage import migrations
from verifier.wire.packet import GENESIS, decode_packet

WATTPROOF = [sys.executable, "-m", "wattproof.cli"]
NOW = int(time.time()) - 86400


def _first_release_database(path: Path) -> tuple[str, int]:
    """A database as the first release made and filled it: its tables only, no migration
    records; an enrolled device with packets, and an API key of that release's shape. It is
    filled by today's code, then taken back to the first release's shape (what later
    migrations added is dropped), and checked against the frozen first-release schema."""
    conn = storage.connect(path)
    key = forge.new_key()
    enroll(conn, record("old-1", forge.point(key)), es256_signer(key))
    prev = GENESIS
    for seq in range(3):
        data = forge.simple(key, "old-1", seq=seq, prev=prev, first_number=3 * seq, t0=NOW + 300 * seq)
        assert isinstance(ingest.accept_packet(conn, data, now=time.time()), ingest.Outcome)
        prev = decode_packet(data).header_hash
    secret = "s3cret-of-the-first-release"
    conn.execute(
        "INSERT INTO api_keys (key_id, name, role, secret_hash, created_at, revoked) VALUES (?, ?, ?, ?, ?, 0)",
        ("0ld0ld0ld0ld", "old utility", "utility", hashlib.sha256(secret.encode()).digest(), NOW),
    )
    size = conn.execute("SELECT COUNT(*) FROM ledger").fetchone()[0]
    conn.close()
    db = storage.connect(path, upgrade=False)
    with storage.transaction(db):
        undo_readings_in_packets(db)  # 0020: the readings back in rows of their own
    db.close()
    raw = sqlite3.connect(path)
    raw.executescript(
        "DROP TABLE schema_migrations; DROP TABLE ledger_head; DROP TABLE chain_heads; DROP INDEX ledger_equivocations;"
        " DROP TABLE certificates; DROP TABLE certificate_progress; DROP TABLE meters; DROP TABLE accounts;"
        " DROP TABLE device_accounts; DROP TABLE bundles; DROP TABLE claims;"
        " DROP TABLE register_edges; DROP TABLE edges_unordered; DROP TABLE communities; DROP TABLE community_settings;"
        " DROP TABLE community_members; DROP TABLE community_coefficients; DROP TABLE ocmf_records;"
        " DROP TABLE cosignatures; DROP TABLE witness_sizes; DROP INDEX ledger_leaf; DROP TABLE ocmf_verdicts;"
        " DROP INDEX ledger_registry_state; DROP TABLE web_sessions; DROP TABLE idempotency;"
        " ALTER TABLE api_keys DROP COLUMN account_id;"
        " ALTER TABLE api_keys DROP COLUMN expires_at; ALTER TABLE api_keys DROP COLUMN last_used_at;"
        " ALTER TABLE api_keys DROP COLUMN installer;"
    )
    reference = sqlite3.connect(":memory:")
    reference.executescript(migrations.ROUND_1)
    shape = "SELECT type, name, sql FROM sqlite_master ORDER BY name"
    assert raw.execute(shape).fetchall() == reference.execute(shape).fetchall()
    raw.close()
    return f"wp_0ld0ld0ld0ld_{secret}", size


def test_a_first_release_database_upgrades_in_place(tmp_path: Path) -> None:
    db = tmp_path / "v.sqlite"
    token, size = _first_release_database(db)
    columns = {r[1] for r in sqlite3.connect(db).execute("PRAGMA table_info(api_keys)")}
    assert "expires_at" not in columns  # really the old shape
    status = subprocess.run([*WATTPROOF, "db", "status", "--db", str(db)], capture_output=True, text=True)
    assert status.returncode == 0 and "0002_api_key_lifecycle" in status.stdout, status.stderr
    later = len(migrations.MIGRATIONS) - 1  # every migration after the first release's
    assert f"{later} pending" in status.stdout and "applied (first release)" in status.stdout, status.stdout
    upgraded = subprocess.run([*WATTPROOF, "db", "upgrade", "--db", str(db)], capture_output=True, text=True)
    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    assert f"{later} migrations applied" in upgraded.stdout, upgraded.stdout
    again = subprocess.run([*WATTPROOF, "db", "upgrade", "--db", str(db)], capture_output=True, text=True)
    assert "up to date" in again.stdout
    conn = storage.connect(db, create=False)
    assert not migrations.pending(conn)
    assert conn.execute("SELECT COUNT(*) FROM ledger").fetchone()[0] == size  # nothing lost
    assert len(stored_readings(conn)) == 9
    assert auth.identify(conn, f"Bearer {token}").role == "utility"  # the old key still works
    config = {**settings.DEFAULTS, "DATABASE": str(db)}
    report = replay.audit(conn, settings.log_signer(config).verifier())
    assert report.ok, report.problem  # the chain_heads rows filled in are the ones the packets imply
    assert [tuple(r) for r in conn.execute("SELECT device_id, seq FROM chain_heads")] == [("old-1", 2)]


def test_the_server_upgrades_an_old_database_on_its_first_start(tmp_path: Path) -> None:
    db = tmp_path / "v.sqlite"
    token, _ = _first_release_database(db)
    client = create_app({"DATABASE": str(db)}).test_client()
    r = client.get("/v1/devices/old-1/readings", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and len(r.get_json()["readings"]) == 9
    assert not migrations.pending(storage.connect(db, create=False))


def test_a_new_database_records_every_migration_once(tmp_path: Path) -> None:
    db = tmp_path / "v.sqlite"
    storage.connect(db).close()
    storage.connect(db).close()
    rows = sqlite3.connect(db).execute("SELECT name FROM schema_migrations ORDER BY name").fetchall()
    assert [r[0] for r in rows] == [m.name for m in migrations.MIGRATIONS]
