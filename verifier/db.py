"""The verifier's SQLite database: WAL mode, full fsync on commit, one connection per request."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from verifier import ledger

SCHEMA = """
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
    revoked     INTEGER NOT NULL DEFAULT 0,
    expires_at  INTEGER,                 -- Unix seconds; NULL: never
    last_used_at INTEGER,                -- written at most once a minute
    installer   TEXT                     -- installer keys: the installer they act for
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
"""


# Columns added since the first release, added in place to a database made before them.
_ADDED_COLUMNS = {
    "api_keys": [("expires_at", "INTEGER"), ("last_used_at", "INTEGER"), ("installer", "TEXT")],
}


# Indexes added since the first release (each statement runs on every open; IF NOT EXISTS).
_ADDED_INDEXES = [
    # equivocation evidence of a device, to record each (seq, offered header) once
    "CREATE INDEX IF NOT EXISTS ledger_equivocations ON ledger (device_id) WHERE kind = 'equivocation'",
]


def connect(path: str | Path, create: bool = True) -> sqlite3.Connection:
    """Opens (and with create, creates) the database. Commits are durable before they return.

    A new database file is made 0600 before SQLite opens it; SQLite gives its -wal and -shm
    files the database file's mode, so readings never sit in a world-readable file."""
    if str(path) != ":memory:" and not os.path.exists(path):
        if not create:
            raise FileNotFoundError(f"no database at {path}")
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            pass
    conn = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    if conn.execute("SELECT COUNT(*) FROM sqlite_master WHERE name = 'ledger'").fetchone()[0] == 0:
        conn.executescript(SCHEMA + ledger.SCHEMA)
    for table, columns in _ADDED_COLUMNS.items():
        have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        for name, kind in columns:
            if name not in have:
                try:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
                except sqlite3.OperationalError as e:  # another process added it first
                    if "duplicate column" not in str(e):
                        raise
    for statement in _ADDED_INDEXES:
        conn.execute(statement)
    return conn


# Write transactions take turns here, threads on a lock and worker processes on a file lock
# beside the database: SQLite's own busy handler would make waiters sleep in growing steps
# (a few ms to tens of ms), which shows as latency.
_WRITER = threading.Lock()
_lock_files: dict[tuple[int, str], int] = {}  # by process: a forked child must open its own


def _lock_fd(db: sqlite3.Connection) -> int | None:
    path = db.execute("PRAGMA database_list").fetchone()[2]
    if not path:
        return None  # an in-memory database has one writer anyway
    key = (os.getpid(), path)
    fd = _lock_files.get(key)
    if fd is None:
        fd = _lock_files[key] = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    return fd


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any exception: all or nothing."""
    with _WRITER:
        fd = _lock_fd(db)
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)
