"""The schema migrations: one ordered list for both engines, one numbering, one runner.

Each migration has a name, what it does, and its step on each engine (the same function
where the dialects agree: table builders in tables.py take the engine's integer and bytes
types; SQL of its own where they differ). Steps run in order, each in its own write
transaction with its record in `schema_migrations`, so that a crash between two leaves a
database at a known step and several processes starting at once run each step once
(SQLite: BEGIN IMMEDIATE; PostgreSQL: an advisory lock). Migrations never import live
domain code: what they run is frozen here, in tables.py and in frozen.py. Never edit a
migration that shipped: add one.

PostgreSQL support began with the schema the SQLite backend reaches at 0005: on PostgreSQL
the first step makes that schema whole and 0002 to 0005 have nothing left to do. A
PostgreSQL database made before the one numbering recorded its steps under their own names
(0001_schema, 0002_certificates, ...): they are read as the steps they were, and the first
upgrade records them under the one numbering.

A SQLite database made before migrations were recorded (the first release: tables, no
`schema_migrations`) is recognised by its tables and counted as having run the first step.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from verifier.storage import Connection, tables

Step = Callable[[Connection], None]


@dataclass(frozen=True)
class Migration:
    name: str
    what: str
    sqlite: Step
    postgres: Step | None  # None: on PostgreSQL, made whole by the first step
    postgres_was: str | None = None  # its name in PostgreSQL databases made before the one numbering

    def run(self, db: Connection) -> None:
        step = self.sqlite if db.engine == "sqlite" else self.postgres
        if step is not None:
            step(db)


# The first release's schema, as it shipped (frozen: later changes are migrations below).
ROUND_1 = """
CREATE TABLE IF NOT EXISTS devices (
    device_id    TEXT PRIMARY KEY,
    public_key   BLOB NOT NULL,          -- current key: uncompressed SEC1 P-256 point
    kid          BLOB NOT NULL UNIQUE,   -- COSE key id of public_key
    role         TEXT NOT NULL,          -- producer, consumer, charger
    attributes   TEXT NOT NULL,          -- JSON: technology, capacity_w, location, grid_area, meter ...
    status       TEXT NOT NULL,          -- active, revoked
    flagged      INTEGER NOT NULL DEFAULT 0,  -- 1 after an equivocation
    enrolled_idx INTEGER NOT NULL        -- the ledger entry that enrolled it
);
CREATE TABLE IF NOT EXISTS installers (
    name       TEXT PRIMARY KEY,
    public_key BLOB NOT NULL,            -- Ed25519
    status     TEXT NOT NULL,            -- active, revoked
    ledger_idx INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS challenges (
    nonce      BLOB PRIMARY KEY,
    created_at INTEGER NOT NULL,
    used       INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS api_keys (
    key_id      TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    role        TEXT NOT NULL,           -- admin, installer, utility, auditor
    secret_hash BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked     INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS packets (
    device_id     TEXT NOT NULL REFERENCES devices(device_id),
    seq           INTEGER NOT NULL,
    header_hash   BLOB NOT NULL,         -- chain link: SHA-256 of the COSE_Sign1 bytes
    ledger_idx    INTEGER NOT NULL,      -- the ledger entry holding the header
    reading_count INTEGER NOT NULL,
    first_number  INTEGER NOT NULL,
    first_ts      INTEGER NOT NULL,
    last_ts       INTEGER NOT NULL,
    received_at   INTEGER NOT NULL,
    PRIMARY KEY (device_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS readings (
    device_id TEXT NOT NULL,
    number    INTEGER NOT NULL,
    seq       INTEGER NOT NULL,          -- the packet that carried it
    kind      INTEGER NOT NULL,
    ts        INTEGER NOT NULL,
    quality   INTEGER NOT NULL,
    raw       BLOB NOT NULL,             -- the exact CBOR bytes the board hashed
    PRIMARY KEY (device_id, number)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS readings_time ON readings (device_id, ts);
CREATE TABLE IF NOT EXISTS anomalies (
    device_id  TEXT NOT NULL,
    number     INTEGER NOT NULL,         -- the reading
    check_type TEXT NOT NULL,            -- a problem slug: register-decreased, implausible-energy
    detail     TEXT NOT NULL,
    ledger_idx INTEGER NOT NULL,         -- the packet entry that records it
    PRIMARY KEY (device_id, number, check_type, detail)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ledger (
    idx       INTEGER PRIMARY KEY,   -- leaf index, from 0
    kind      TEXT NOT NULL,         -- installer, enroll, packet, revoke, rotate, equivocation
    device_id TEXT,
    entry     BLOB NOT NULL,         -- deterministic CBOR of the entry
    leaf      BLOB NOT NULL          -- SHA-256(0x00 || entry)
);
CREATE INDEX IF NOT EXISTS ledger_device ON ledger (device_id, idx);
CREATE TABLE IF NOT EXISTS ledger_nodes (
    level INTEGER NOT NULL,          -- a complete subtree of 2^level leaves
    idx   INTEGER NOT NULL,          -- its position among subtrees of that level
    hash  BLOB NOT NULL,
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints (
    size       INTEGER PRIMARY KEY,
    root       BLOB NOT NULL,
    note       BLOB NOT NULL,        -- the signed note, byte for byte as served
    created_at INTEGER NOT NULL
);
"""


def _round_1(db: Connection) -> None:
    tables.run_script(db, ROUND_1)


def _api_key_lifecycle(db: Connection) -> None:
    have = db.columns("api_keys")  # a pre-release build had some
    for column, kind in (("expires_at", "INTEGER"), ("last_used_at", "INTEGER"), ("installer", "TEXT")):
        if column not in have:
            db.execute(f"ALTER TABLE api_keys ADD COLUMN {column} {kind}")


def _equivocation_index(db: Connection) -> None:
    db.execute("CREATE INDEX IF NOT EXISTS ledger_equivocations ON ledger (device_id) WHERE kind = 'equivocation'")


def _ledger_head(db: Connection) -> None:
    # The ledger's size as one row: the next index is read and advanced under the write
    # lock, never derived from MAX(idx) (the PostgreSQL backend locks the same row's role).
    db.execute("CREATE TABLE ledger_head (id INTEGER PRIMARY KEY CHECK (id = 1), size INTEGER NOT NULL)")
    db.execute("INSERT INTO ledger_head SELECT 1, COALESCE(MAX(idx) + 1, 0) FROM ledger")


CHAIN_HEADS = """
CREATE TABLE chain_heads (
    device_id   TEXT PRIMARY KEY,
    seq         INTEGER NOT NULL,      -- the device's last accepted packet
    header_hash BLOB NOT NULL,         -- its header's SHA-256: the next packet's prev
    reading     BLOB NOT NULL,         -- the raw bytes of the device's last reading
    meter       BLOB,                  -- ... of its last meter reading (none yet: NULL)
    fault       INTEGER NOT NULL       -- 1: a meter-fault event followed that meter reading
)"""


def _chain_heads(db: Connection) -> None:
    # What ingest checks a packet against, one row per device (it was searched for in the
    # readings, a cost that grew with history and hung on the planner's statistics).
    from verifier.wire.packet import EVENT_METER_FAULT, KIND_DEVICE, KIND_METER, decode_reading

    db.execute(CHAIN_HEADS)
    heads = db.execute(
        "SELECT p.device_id, p.seq, p.header_hash FROM packets p"
        " WHERE p.seq = (SELECT MAX(seq) FROM packets q WHERE q.device_id = p.device_id)"
    ).fetchall()
    for device_id, seq, header_hash in heads:
        last = db.execute(
            "SELECT raw FROM readings WHERE device_id = ? ORDER BY number DESC LIMIT 1", (device_id,)
        ).fetchone()
        meter = db.execute(
            "SELECT number, raw FROM readings WHERE device_id = ? AND kind = ? ORDER BY number DESC LIMIT 1",
            (device_id, KIND_METER),
        ).fetchone()
        fault = meter is not None and any(
            decode_reading(bytes(raw)).values["event"] == EVENT_METER_FAULT
            for (raw,) in db.execute(
                "SELECT raw FROM readings WHERE device_id = ? AND kind = ? AND number > ?",
                (device_id, KIND_DEVICE, meter[0]),
            )
        )
        db.execute(
            "INSERT INTO chain_heads VALUES (?, ?, ?, ?, ?, ?)",
            (device_id, seq, header_hash, last[0], None if meter is None else meter[1], int(fault)),
        )


# PostgreSQL support began with the schema SQLite reaches at 0005: its first step makes it whole.
POSTGRES_0005 = """
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


def _postgres_0005(db: Connection) -> None:
    tables.run_script(db, POSTGRES_0005)


def _types(db: Connection) -> tuple[str, str]:
    """The engine's integer and bytes column types."""
    return ("INTEGER", "BLOB") if db.engine == "sqlite" else ("BIGINT", "BYTEA")


def _certificates(db: Connection) -> None:
    tables.certificates(db, _types(db)[0])


def _registry(db: Connection) -> None:
    tables.registry(db, _types(db)[0])


def _register_edges(db: Connection) -> None:
    tables.register_edges(db, _types(db)[0])


def _communities(db: Connection) -> None:
    tables.communities(db, _types(db)[0])


def _ocmf_records(db: Connection) -> None:
    tables.ocmf_records(db, *_types(db))


def _witnesses(db: Connection) -> None:
    tables.witnesses(db, _types(db)[0])


def _ocmf_verdicts(db: Connection) -> None:
    tables.ocmf_verdicts(db, *_types(db))


def _web_sessions(db: Connection) -> None:
    tables.web_sessions(db, _types(db)[0])


def _idempotency(db: Connection) -> None:
    tables.idempotency(db, *_types(db))


def _ocmf_parts(db: Connection) -> None:
    tables.ocmf_parts(db, _types(db)[0])


def _readings_in_packets(db: Connection) -> None:
    tables.readings_in_packets(db, *_types(db))


def _nothing(db: Connection) -> None:
    """A step with nothing to do on this engine."""


def _ledger_device_index(db: Connection) -> None:
    # Most entries are packets, found through the packets table: the device index (lifecycle,
    # equivocations, issuance) does without them.
    db.execute("DROP INDEX ledger_device")
    db.execute("CREATE INDEX ledger_device ON ledger (device_id, idx) WHERE kind <> 'packet'")


def _small_nodes(db: Connection) -> None:
    # Subtrees of 2 to 8 leaves are folded again from their leaves when a proof needs them
    # (merkle.STORED_FROM_LEVEL): seven stored nodes in eight go.
    db.execute("DELETE FROM ledger_nodes WHERE level < 4")


def _ledger_leaf_hash(db: Connection) -> None:
    # Leaf hashes are random: a B-tree of them is pages a third empty and 33-byte keys; a hash
    # index answers the one question asked (which entry has this leaf) in a fraction of it.
    db.execute("DROP INDEX ledger_leaf")
    db.execute("CREATE INDEX ledger_leaf ON ledger USING hash (leaf)")


MIGRATIONS = [
    Migration("0001_round_1", "the first release's tables", _round_1, _postgres_0005, "0001_schema"),
    Migration("0002_api_key_lifecycle", "API keys: expiry, last use, the installer they act for", _api_key_lifecycle,
              None),
    Migration("0003_equivocation_index", "an index of each device's equivocation evidence", _equivocation_index, None),
    Migration("0004_ledger_head", "the ledger's size as a row of its own (next index under the lock)", _ledger_head,
              None),
    Migration("0005_chain_heads", "each device's chain head and last readings, as a row of its own", _chain_heads,
              None),
    Migration("0006_certificates", "granular certificates and each producer's issuance progress", _certificates,
              _certificates, "0002_certificates"),
    Migration("0007_meters", "each meter an active device measures with: one device per meter",
              tables.meters_of_active_devices, tables.meters_of_active_devices, "0003_meters"),
    Migration("0008_registry", "accounts, bundles as they move, claims; API keys acting for an account", _registry,
              _registry, "0004_registry"),
    Migration("0009_register_edges", "the meter readings around every quarter hour, for energy by interval",
              _register_edges, _register_edges, "0005_register_edges"),
    Migration("0010_communities", "energy communities: settings with history, members, per-step coefficients",
              _communities, _communities, "0006_communities"),
    Migration("0011_ocmf_records", "third-party chargers' OCMF records: one a payload, no energy twice", _ocmf_records,
              _ocmf_records, "0007_ocmf_records"),
    Migration("0012_witnesses", "witnesses' cosignatures of each checkpoint, and the size each last cosigned",
              _witnesses, _witnesses, "0008_witnesses"),
    Migration("0013_ledger_leaf_index", "ledger entries by their leaf hash", tables.ledger_leaf_index,
              tables.ledger_leaf_index, "0009_ledger_leaf_index"),
    Migration("0014_ocmf_verdicts", "each charger stop's OCMF check, kept once made", _ocmf_verdicts, _ocmf_verdicts,
              "0010_ocmf_verdicts"),
    Migration("0015_times_in_range", "community times past the end of 9999 bounded to it", tables.times_in_range,
              tables.times_in_range, "0011_times_in_range"),
    Migration("0016_registry_state_index", "the registry-state entries, found by index", tables.registry_state_index,
              tables.registry_state_index, "0012_registry_state_index"),
    Migration("0017_web_sessions", "web sign-ins, ended on the server by sign-out", _web_sessions, _web_sessions,
              "0013_web_sessions"),
    Migration("0018_idempotency", "registry actions' answers by Idempotency-Key, kept 24 hours", _idempotency,
              _idempotency, "0014_idempotency"),
    Migration("0019_ocmf_parts", "OCMF records holding only a session's begin or its end, paired", _ocmf_parts,
              _ocmf_parts, "0015_ocmf_parts"),
    Migration("0020_readings_in_packets", "each packet's readings in its row; PostgreSQL: packets by month",
              _readings_in_packets, _readings_in_packets),
    Migration("0021_ledger_leaf_hash", "PostgreSQL: the ledger's leaf hashes in a hash index", _nothing,
              _ledger_leaf_hash),
    Migration("0022_ledger_device_index", "the ledger's device index without packet entries",
              _ledger_device_index, _ledger_device_index),
    Migration("0023_tree_nodes_from_level_4", "the ledger's tree nodes of 16 leaves and more only", _small_nodes,
              _small_nodes),
]  # fmt: skip


NAMES = {m.name for m in MIGRATIONS}
# What PostgreSQL databases made before the one numbering recorded instead.
OLD_NAMES = {m.postgres_was for m in MIGRATIONS if m.postgres_was} - NAMES


def _stored(db: Connection) -> dict[str, int]:
    """schema_migrations as it stands: name -> when (a first-release SQLite database, which
    has tables and no record: its first step, at an unknown time, 0)."""
    if not db.table_exists("schema_migrations"):
        return {MIGRATIONS[0].name: 0} if db.engine == "sqlite" and db.table_exists("ledger") else {}
    return {str(n): int(t) for n, t in db.execute("SELECT name, applied_at FROM schema_migrations")}


def _as_steps(db: Connection, stored: dict[str, int]) -> dict[str, int]:
    """The steps run, by their one-numbering names: a PostgreSQL database's names from before
    read as the steps they were (its first covers 0001 to 0005)."""
    done = dict(stored)
    if db.engine != "sqlite":
        for m in MIGRATIONS:
            if m.postgres_was in done and m.name not in done:
                done[m.name] = done.pop(m.postgres_was)
        first = done.get(MIGRATIONS[0].name)
        if first is not None:
            for m in MIGRATIONS[1:]:
                if m.postgres is None:
                    done.setdefault(m.name, first)
    return done


def applied(db: Connection) -> dict[str, int | None]:
    """Every migration by name: when it ran (Unix seconds; 0: a first-release SQLite
    database's first step, at an unknown time), or None while pending."""
    done = _as_steps(db, _stored(db))
    return {m.name: done.get(m.name) for m in MIGRATIONS}


def pending(db: Connection) -> list[Migration]:
    state = applied(db)
    return [m for m in MIGRATIONS if state[m.name] is None]


@contextmanager
def _exclusive(db: Connection) -> Iterator[None]:
    """One migrating process at a time, in a transaction of its own."""
    if db.engine == "sqlite":
        db.execute("BEGIN IMMEDIATE")  # one writer at a time; the checks inside see the truth
        try:
            yield
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    else:
        from verifier.storage.postgres import MIGRATE_LOCK, PostgresConnection

        assert isinstance(db, PostgresConnection)
        with db.locked(MIGRATE_LOCK):
            yield


def _renumber(db: Connection) -> None:
    """Inside _exclusive: schema_migrations made, and its rows under the one numbering."""
    integer = "INTEGER" if db.engine == "sqlite" else "BIGINT"
    first_release = db.engine == "sqlite" and not db.table_exists("schema_migrations") and db.table_exists("ledger")
    db.execute(f"CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at {integer} NOT NULL)")
    if first_release:
        db.execute("INSERT INTO schema_migrations VALUES (?, 0)", (MIGRATIONS[0].name,))
    stored = _stored(db)
    for name, when in _as_steps(db, stored).items():
        if name not in stored:
            db.execute("INSERT INTO schema_migrations VALUES (?, ?)", (name, when))
    old = sorted(set(stored) & OLD_NAMES)
    if old:
        db.executemany("DELETE FROM schema_migrations WHERE name = ?", [(n,) for n in old])


def upgrade(db: Connection) -> list[str]:
    """Runs every pending migration, in order; returns the names of those this call ran."""
    ran: list[str] = []
    stored = _stored(db)  # the one read when there is nothing to do (every start-up)
    if NAMES <= set(_as_steps(db, stored)) and not set(stored) & OLD_NAMES:
        keep_partitions(db)
        return ran
    with _exclusive(db):
        _renumber(db)
    for migration in MIGRATIONS:
        with _exclusive(db):
            if db.execute("SELECT 1 FROM schema_migrations WHERE name = ?", (migration.name,)).fetchone() is None:
                migration.run(db)
                db.execute("INSERT INTO schema_migrations VALUES (?, ?)", (migration.name, int(time.time())))
                ran.append(migration.name)
    keep_partitions(db)
    return ran


def keep_partitions(db: Connection, now: int | None = None) -> list[str]:
    """PostgreSQL: the packets' monthly partitions up to tables.MONTHS_AHEAD months ahead, made
    where missing (every start-up and `wattproof db upgrade` looks; one process makes them)."""
    if db.engine == "sqlite" or not tables.missing_months(db, now):
        return []
    with _exclusive(db):
        return tables.ensure_months(db, now=now)
