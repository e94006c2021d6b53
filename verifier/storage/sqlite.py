"""The SQLite backend: one file, WAL mode, full fsync on commit, one connection per thread."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from verifier.storage import Deferred, migrations


class SQLiteConnection:
    """storage.Connection over sqlite3 (autocommit; transactions are explicit)."""

    engine = "sqlite"

    def __init__(self, raw: sqlite3.Connection, path: str) -> None:
        self.raw = raw
        self.location = path
        self.scratch: dict[str, Any] = {}
        self.deferred = Deferred()
        self.execute: Callable[..., Any] = raw.execute
        self.executemany: Callable[..., Any] = raw.executemany

    def _direct(self) -> None:
        # sqlite3's own methods, bound: no wrapper on the hot path while nothing is deferred.
        self.execute = self.raw.execute
        self.executemany = self.raw.executemany

    def _flushing_execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        self.flush()
        return self.raw.execute(sql, params)

    def _flushing_executemany(self, sql: str, params: Iterable[Sequence[Any]]) -> sqlite3.Cursor:
        self.flush()
        return self.raw.executemany(sql, params)

    def insert_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self.flush()
        self._insert(table, columns, rows)

    def _insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        # Many rows per statement: executemany steps the statement once per row, and at a
        # batch's 1,024 reading rows that stepping cost twice what the rows' own b-tree
        # inserts did. Blocks of 64, 32, 16 and 8 rows (a handful of statement shapes per
        # table, so they stay in the statement cache); what is left goes row by row.
        head = f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
        one = "(" + ", ".join("?" * len(columns)) + ")"
        start, n = 0, len(rows)
        for block in _INSERT_BLOCKS:
            if n - start < block:
                continue
            sql = head + ", ".join([one] * block)
            while n - start >= block:
                self.raw.execute(sql, [value for row in rows[start : start + block] for value in row])
                start += block
        if start < n:
            self.raw.executemany(head + one, rows[start:])

    def defer_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self.deferred.add_rows(table, columns, rows)
        self.execute = self._flushing_execute
        self.executemany = self._flushing_executemany

    def defer_statement(self, key: str, sql: str, params: Sequence[Any]) -> None:
        self.deferred.statements[key] = (sql, params)
        self.execute = self._flushing_execute
        self.executemany = self._flushing_executemany

    def flush(self) -> None:
        """Runs the deferred writes now."""
        if not self.deferred:
            return
        self._direct()
        rows, statements = self.deferred.take()
        for table, columns, r in rows:
            self._insert(table, columns, r)
        for sql, params in statements:
            self.raw.execute(sql, params)

    def tree_nodes(self, nodes: Collection[tuple[int, int]]) -> list[tuple[int, int, bytes]]:
        # One indexed query per level: "level = ? AND idx IN (...)" searches the primary key
        # (a row-value IN over (level, idx) scans the table), and the few statement shapes
        # stay in the statement cache. Local calls cost microseconds, so levels are not joined.
        self.flush()
        by_level: dict[int, list[int]] = {}
        for level, i in nodes:
            by_level.setdefault(level, []).append(i)
        found: list[tuple[int, int, bytes]] = []
        for level, ids in by_level.items():
            for chunk in range(0, len(ids), 500):
                part = ids[chunk : chunk + 500]
                marks = ",".join("?" * len(part))
                if level == 0:
                    rows = self.raw.execute(f"SELECT idx, leaf FROM ledger WHERE idx IN ({marks})", part)
                else:
                    rows = self.raw.execute(
                        f"SELECT idx, hash FROM ledger_nodes WHERE level = ? AND idx IN ({marks})", [level, *part]
                    )
                found.extend((level, int(i), bytes(h)) for i, h in rows)
        return found

    @property
    def in_transaction(self) -> bool:
        return self.raw.in_transaction

    def healthy(self) -> bool:
        return True

    def rollback_if_open(self) -> None:
        if self.raw.in_transaction:
            self.raw.execute("ROLLBACK")

    def close(self) -> None:
        self.raw.close()

    @contextmanager
    def transaction(self) -> Iterator[SQLiteConnection]:
        """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any exception: all or nothing."""
        with _WRITER:
            fd = self._lock_fd()
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                self.raw.execute("BEGIN IMMEDIATE")
                self.scratch = {}
                try:
                    yield self
                    self.flush()
                except BaseException:
                    self.deferred.take()
                    self._direct()
                    self.raw.execute("ROLLBACK")
                    raise
                self.raw.execute("COMMIT")
            finally:
                if fd is not None:
                    fcntl.flock(fd, fcntl.LOCK_UN)

    def publishing(self) -> Any:
        """The checkpoint publisher's lock: one writer at a time is lock enough here."""
        return self.transaction()

    def take_publish_lock(self) -> None:
        pass  # held already: every transaction is the one writer

    def _lock_fd(self) -> int | None:
        if self.location == ":memory:":
            return None  # an in-memory database has one writer anyway
        key = (os.getpid(), self.location)
        fd = _lock_files.get(key)
        if fd is None:
            fd = _lock_files[key] = os.open(self.location + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        return fd

    # -- inspection, for the schema module ---------------------------------------------------

    def table_exists(self, name: str) -> bool:
        row = self.raw.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone()
        return row is not None

    def columns(self, table: str) -> set[str]:
        return {str(row[1]) for row in self.raw.execute(f"PRAGMA table_info({table})")}

    def space(self) -> list[tuple[str, str, int]]:
        """(table, table or index name, bytes in the file) for every table and index."""
        owner = dict(self.raw.execute("SELECT name, tbl_name FROM sqlite_master WHERE type IN ('table', 'index')"))
        rows = self.raw.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").fetchall()
        return [(str(owner.get(name, name)), str(name), int(size)) for name, size in rows]


def connect(path: str | Path, create: bool = True, upgrade: bool = True) -> SQLiteConnection:
    """Opens (and with create, creates) the database. Commits are durable before they return.

    A new database file is made 0600 before SQLite opens it; SQLite gives its -wal and -shm
    files the database file's mode, so readings never sit in a world-readable file. With
    upgrade, the schema migrations not yet run on it run first (storage/migrations.py)."""
    if str(path) != ":memory:" and not os.path.exists(path):
        if not create:
            raise FileNotFoundError(f"no database at {path}")
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            pass
    raw = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
    raw.row_factory = sqlite3.Row
    raw.execute("PRAGMA journal_mode=WAL")
    raw.execute("PRAGMA synchronous=FULL")
    raw.execute("PRAGMA foreign_keys=ON")
    raw.execute("PRAGMA cache_size=-32768")  # 32 MiB of pages per connection (a year of a device's edges is ~1 MiB)
    location = raw.execute("PRAGMA database_list").fetchone()[2] or ":memory:"
    conn = SQLiteConnection(raw, location)
    if upgrade:
        migrations.upgrade(conn)  # a new file gets every table; an older one what it lacks
    return conn


# Write transactions take turns here, threads on a lock and worker processes on a file lock
# beside the database: SQLite's own busy handler would make waiters sleep in growing steps
# (a few ms to tens of ms), which shows as latency.
_WRITER = threading.Lock()
_INSERT_BLOCKS = (64, 32, 16, 8)  # rows per INSERT statement, largest first
_lock_files: dict[tuple[int, str], int] = {}  # by process: a forked child must open its own
