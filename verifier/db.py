"""The verifier's SQLite database: WAL mode, full fsync on commit, one connection per request."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from verifier import migrations


def connect(path: str | Path, create: bool = True, upgrade: bool = True) -> sqlite3.Connection:
    """Opens (and with create, creates) the database. Commits are durable before they return.

    A new database file is made 0600 before SQLite opens it; SQLite gives its -wal and -shm
    files the database file's mode, so readings never sit in a world-readable file. With
    upgrade, the schema migrations not yet run on it run first (verifier/migrations.py)."""
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
    if upgrade:
        migrations.upgrade(conn)  # a new file gets every table; an older one what it lacks
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
