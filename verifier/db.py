"""The verifier's SQLite database: WAL mode, full fsync on commit, one connection per request."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from flask import Flask, current_app, g

SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (
    device_id   TEXT PRIMARY KEY,
    public_key  BLOB NOT NULL,          -- uncompressed SEC1 P-256 point
    kid         BLOB NOT NULL UNIQUE,   -- COSE key id of public_key
    enrolled_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS packets (
    device_id     TEXT NOT NULL REFERENCES devices(device_id),
    seq           INTEGER NOT NULL,
    header_hash   BLOB NOT NULL,        -- chain link: SHA-256 of the COSE_Sign1 bytes
    header        BLOB NOT NULL,        -- the COSE_Sign1 bytes as received
    reading_count INTEGER NOT NULL,
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
"""


def connect(path: str | Path) -> sqlite3.Connection:
    """Opens (and creates) the database. Commits are durable before they return."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.executescript(SCHEMA)
    return conn


def get_db() -> sqlite3.Connection:
    if "db" not in g:
        g.db = connect(current_app.config["DATABASE"])
    db: sqlite3.Connection = g.db
    return db


def close_db(_exc: BaseException | None = None) -> None:
    db = g.pop("db", None)
    if db is not None:
        db.close()


def init_app(app: Flask) -> None:
    app.teardown_appcontext(close_db)
