"""Schema migrations of the PostgreSQL backend: ordered, each recorded once it ran.

The same tables as the SQLite backend (storage/sqlite_schema.py), in PostgreSQL's types:
BYTEA for bytes, BIGINT for integers. PostgreSQL support began with the schema the SQLite
backend reaches at 0005, so its first migration is that schema whole; later changes are
added to both backends. Migrations run under an advisory lock, each in its own transaction
with its record: several workers starting at once run each step once.
"""

from __future__ import annotations

import time

from verifier.storage import Connection, Migration, tables

SCHEMA = """
CREATE TABLE devices (
    device_id    TEXT PRIMARY KEY,
    public_key   BYTEA NOT NULL,
    kid          BYTEA NOT NULL UNIQUE,
    role         TEXT NOT NULL,
    attributes   TEXT NOT NULL,
    status       TEXT NOT NULL,
    flagged      BIGINT NOT NULL DEFAULT 0,
    enrolled_idx BIGINT NOT NULL
);
CREATE TABLE installers (
    name       TEXT PRIMARY KEY,
    public_key BYTEA NOT NULL,
    status     TEXT NOT NULL,
    ledger_idx BIGINT NOT NULL
);
CREATE TABLE challenges (
    nonce      BYTEA PRIMARY KEY,
    created_at BIGINT NOT NULL,
    used       BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE api_keys (
    key_id       TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    role         TEXT NOT NULL,
    secret_hash  BYTEA NOT NULL,
    created_at   BIGINT NOT NULL,
    revoked      BIGINT NOT NULL DEFAULT 0,
    expires_at   BIGINT,
    last_used_at BIGINT,
    installer    TEXT
);
CREATE TABLE packets (
    device_id     TEXT NOT NULL REFERENCES devices(device_id),
    seq           BIGINT NOT NULL,
    header_hash   BYTEA NOT NULL,
    ledger_idx    BIGINT NOT NULL,
    reading_count BIGINT NOT NULL,
    first_number  BIGINT NOT NULL,
    first_ts      BIGINT NOT NULL,
    last_ts       BIGINT NOT NULL,
    received_at   BIGINT NOT NULL,
    PRIMARY KEY (device_id, seq)
);
CREATE TABLE readings (
    device_id TEXT NOT NULL,
    number    BIGINT NOT NULL,
    seq       BIGINT NOT NULL,
    kind      BIGINT NOT NULL,
    ts        BIGINT NOT NULL,
    quality   BIGINT NOT NULL,
    raw       BYTEA NOT NULL,
    PRIMARY KEY (device_id, number)
);
CREATE INDEX readings_time ON readings (device_id, ts);
CREATE TABLE anomalies (
    device_id  TEXT NOT NULL,
    number     BIGINT NOT NULL,
    check_type TEXT NOT NULL,
    detail     TEXT NOT NULL,
    ledger_idx BIGINT NOT NULL,
    PRIMARY KEY (device_id, number, check_type, detail)
);
CREATE TABLE ledger (
    idx       BIGINT PRIMARY KEY,
    kind      TEXT NOT NULL,
    device_id TEXT,
    entry     BYTEA NOT NULL,
    leaf      BYTEA NOT NULL
);
CREATE INDEX ledger_device ON ledger (device_id, idx);
CREATE INDEX ledger_equivocations ON ledger (device_id) WHERE kind = 'equivocation';
CREATE TABLE ledger_nodes (
    level BIGINT NOT NULL,
    idx   BIGINT NOT NULL,
    hash  BYTEA NOT NULL,
    PRIMARY KEY (level, idx)
);
CREATE TABLE ledger_head (
    id   BIGINT PRIMARY KEY CHECK (id = 1),
    size BIGINT NOT NULL
);
CREATE TABLE chain_heads (
    device_id   TEXT PRIMARY KEY,
    seq         BIGINT NOT NULL,
    header_hash BYTEA NOT NULL,
    reading     BYTEA NOT NULL,
    meter       BYTEA,
    fault       BIGINT NOT NULL
);
INSERT INTO ledger_head VALUES (1, 0);
CREATE TABLE checkpoints (
    size       BIGINT PRIMARY KEY,
    root       BYTEA NOT NULL,
    note       BYTEA NOT NULL,
    created_at BIGINT NOT NULL
)
"""


def _schema(db: Connection) -> None:
    tables.run_script(db, SCHEMA)


def _certificates(db: Connection) -> None:
    tables.certificates(db, "BIGINT")


def _register_edges(db: Connection) -> None:
    tables.register_edges(db, "BIGINT")


def _communities(db: Connection) -> None:
    tables.communities(db, "BIGINT")


def _registry(db: Connection) -> None:
    tables.registry(db, "BIGINT")


def _ocmf_records(db: Connection) -> None:
    tables.ocmf_records(db, "BIGINT", "BYTEA")


def _witnesses(db: Connection) -> None:
    tables.witnesses(db, "BIGINT")


def _ocmf_verdicts(db: Connection) -> None:
    tables.ocmf_verdicts(db, "BIGINT", "BYTEA")


def _ocmf_parts(db: Connection) -> None:
    tables.ocmf_parts(db, "BIGINT")


def _web_sessions(db: Connection) -> None:
    tables.web_sessions(db, "BIGINT")


def _idempotency(db: Connection) -> None:
    tables.idempotency(db, "BIGINT", "BYTEA")


MIGRATIONS = [
    Migration("0001_schema", "every table of the SQLite backend's schema 0005", _schema),
    Migration("0002_certificates", "granular certificates and each producer's issuance progress", _certificates),
    Migration(
        "0003_meters",
        "each meter an active device measures with: one device per meter",
        tables.meters_of_active_devices,
    ),
    Migration("0004_registry", "accounts, bundles as they move, claims; API keys acting for an account", _registry),
    Migration(
        "0005_register_edges", "the meter readings around every quarter hour, for energy by interval", _register_edges
    ),
    Migration(
        "0006_communities", "energy communities: settings with history, members, per-step coefficients", _communities
    ),
    Migration("0007_ocmf_records", "third-party chargers' OCMF records: one a payload, no energy twice", _ocmf_records),
    Migration(
        "0008_witnesses", "witnesses' cosignatures of each checkpoint, and the size each last cosigned", _witnesses
    ),
    Migration("0009_ledger_leaf_index", "ledger entries by their leaf hash", tables.ledger_leaf_index),
    Migration("0010_ocmf_verdicts", "each charger stop's OCMF check, kept once made", _ocmf_verdicts),
    Migration("0011_times_in_range", "community times past the end of 9999 bounded to it", tables.times_in_range),
    Migration("0012_registry_state_index", "the registry-state entries, found by index", tables.registry_state_index),
    Migration("0013_web_sessions", "web sign-ins, ended on the server by sign-out", _web_sessions),
    Migration("0014_idempotency", "registry actions' answers by Idempotency-Key, kept 24 hours", _idempotency),
    Migration("0015_ocmf_parts", "OCMF records holding only a session's begin or its end, paired", _ocmf_parts),
]


def applied(db: Connection) -> dict[str, int | None]:
    """Every migration by name: when it ran (Unix seconds), or None while pending."""
    done: dict[str, int] = {}
    if db.table_exists("schema_migrations"):
        done = {str(n): int(t) for n, t in db.execute("SELECT name, applied_at FROM schema_migrations")}
    return {m.name: done.get(m.name) for m in MIGRATIONS}


def pending(db: Connection) -> list[Migration]:
    state = applied(db)
    return [m for m in MIGRATIONS if state[m.name] is None]


def upgrade(db: Connection) -> list[str]:
    """Runs every pending migration, in order; returns the names of those this call ran."""
    from verifier.storage.postgres import MIGRATE_LOCK, PostgresConnection

    assert isinstance(db, PostgresConnection)
    ran: list[str] = []
    if not pending(db):
        return ran
    for migration in MIGRATIONS:
        with db.locked(MIGRATE_LOCK):
            db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at BIGINT NOT NULL)"
            )
            if db.execute("SELECT 1 FROM schema_migrations WHERE name = ?", (migration.name,)).fetchone() is None:
                migration.run(db)
                db.execute("INSERT INTO schema_migrations VALUES (?, ?)", (migration.name, int(time.time())))
                ran.append(migration.name)
    return ran
